//! Evaluation of a bound plan over one record batch, column-wise with Arrow kernels.
//!
//! A node yields a whole array, or a one-row scalar when it depends on no column; the kernels
//! take either (`Datum`), so a literal is never expanded to the batch length, and a rule made
//! only of constants costs a handful of one-row kernel calls.

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_arith::numeric::{add, div, mul, neg, sub};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Datum};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_ord::cmp;
use arrow_schema::ArrowError;
use arrow_select::zip::zip;
use arrow_string::like::{like, nlike};

use super::columns::MICROS_PER_DAY;
use super::kernels;
use super::plan::{Conv, Node, Operand};
use super::types::{ArithOp, CmpOp};
use crate::data_err;
use crate::error::{NbaError, Result};

/// An evaluated node: a batch-length array, or a one-row array standing for every row.
#[derive(Debug, Clone)]
enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    fn new(array: ArrayRef, scalar: bool) -> Self {
        if scalar {
            Value::Scalar(array)
        } else {
            Value::Array(array)
        }
    }

    fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(array) | Value::Scalar(array) => array,
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }
}

/// A node's value, with `COALESCE(head…, fill)` possibly kept in its two parts
/// ([`Evaluator::eval_split`]).
enum Split {
    Whole(Value),
    /// `head` has NULLs; `fill` is a one-row constant that is not NULL.
    Filled {
        head: ArrayRef,
        fill: ArrayRef,
    },
}

impl Split {
    /// The value itself, `COALESCE(head, fill)` made whole.
    fn join(self) -> Result<Value> {
        match self {
            Split::Whole(value) => Ok(value),
            Split::Filled { head, fill } => coalesce_step(Value::Array(head), Value::Scalar(fill)),
        }
    }
}

impl Datum for Value {
    fn get(&self) -> (&dyn Array, bool) {
        (self.array().as_ref(), self.is_scalar())
    }
}

/// Evaluates `root` (a boolean plan) over `columns`, the loaded columns of a batch of `rows`
/// rows. `source` is the rule text, quoted in messages.
pub(crate) fn evaluate(
    root: &Node,
    columns: &[ArrayRef],
    rows: usize,
    now_us: i64,
    source: &str,
) -> Result<BooleanArray> {
    let mut evaluator = Evaluator {
        columns,
        rows,
        now_us,
        source,
        converted: Vec::new(),
    };
    let value = evaluator.eval(root)?;
    evaluator.booleans(&value, rows)
}

struct Evaluator<'a> {
    columns: &'a [ArrayRef],
    rows: usize,
    now_us: i64,
    source: &'a str,
    /// Conversions of whole columns already made in this batch: `score > 0.5 AND score < 0.9`
    /// canonicalises `score` once.
    converted: Vec<(usize, Conv, Value)>,
}

impl Evaluator<'_> {
    /// A plan that binding should have ruled out; an error rather than a panic all the same.
    fn internal(&self, what: &str) -> NbaError {
        NbaError::Arrow(ArrowError::ComputeError(format!(
            "rule {:?}: internal error: {what}",
            self.source
        )))
    }

    fn eval(&mut self, node: &Node) -> Result<Value> {
        Ok(match node {
            Node::Column(slot) => Value::Array(
                self.columns
                    .get(*slot)
                    .cloned()
                    .ok_or_else(|| self.internal("column slot out of range"))?,
            ),
            Node::Literal(array) => Value::Scalar(Arc::clone(array)),
            Node::Convert(conv, inner) => {
                if let Node::Column(slot) = inner.as_ref() {
                    let cached = self
                        .converted
                        .iter()
                        .find(|(s, c, _)| s == slot && c == conv);
                    if let Some((_, _, value)) = cached {
                        return Ok(value.clone());
                    }
                    let value = self.eval(inner)?;
                    let value = self.convert(conv, value)?;
                    self.converted.push((*slot, conv.clone(), value.clone()));
                    return Ok(value);
                }
                let value = self.eval(inner)?;
                self.convert(conv, value)?
            }
            Node::Neg { operand, text } => {
                let value = self.eval(operand)?;
                let negated = neg(value.array().as_ref()).map_err(|e| self.arith_error(e, text))?;
                Value::new(negated, value.is_scalar())
            }
            Node::Arith {
                op,
                left,
                right,
                text,
            } => {
                let l = self.eval(left)?;
                let r = self.eval(right)?;
                let scalar = l.is_scalar() && r.is_scalar();
                let result = match op {
                    ArithOp::Add => add(&l, &r),
                    ArithOp::Sub => sub(&l, &r),
                    ArithOp::Mul => mul(&l, &r),
                    ArithOp::Div => return self.divide(&l, &r),
                };
                Value::new(result.map_err(|e| self.arith_error(e, text))?, scalar)
            }
            Node::Compare(op, left, right) => {
                let l = self.eval_split(left)?;
                let r = self.eval(right)?;
                match l {
                    Split::Filled { .. } if r.is_scalar() => {
                        self.map_split(l, |x| compare_values(*op, x, &r))?
                    }
                    l => compare_values(*op, &l.join()?, &r)?,
                }
            }
            Node::InList {
                expr,
                items,
                negated,
            } => {
                let x = self.eval(expr)?;
                if let Some(found) = strings_in_list(&x, items) {
                    return self.negate_if(Value::Array(Arc::new(found)), *negated);
                }
                let mut conversions = Vec::new();
                let mut any: Option<Value> = None;
                for item in items {
                    let term = self.compare_operand(CmpOp::Eq, &x, item, &mut conversions)?;
                    any = Some(match any {
                        None => term,
                        Some(acc) => self.kleene(&acc, &term, or_kleene)?,
                    });
                }
                let any = any.ok_or_else(|| self.internal("empty IN list"))?;
                self.negate_if(any, *negated)?
            }
            Node::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let x = self.eval(expr)?;
                let mut conversions = Vec::new();
                let above = self.compare_operand(CmpOp::GtEq, &x, low, &mut conversions)?;
                let below = self.compare_operand(CmpOp::LtEq, &x, high, &mut conversions)?;
                let within = self.kleene(&above, &below, and_kleene)?;
                self.negate_if(within, *negated)?
            }
            Node::And(items) => self.fold(items, and_kleene)?,
            Node::Or(items) => self.fold(items, or_kleene)?,
            Node::Not(inner) => {
                let value = self.eval(inner)?;
                self.negate_if(value, true)?
            }
            Node::IsNull { operand, negated } => {
                let value = self.eval(operand)?;
                let array = value.array().as_ref();
                let result = if *negated {
                    is_not_null(array)?
                } else {
                    is_null(array)?
                };
                Value::new(Arc::new(result), value.is_scalar())
            }
            Node::Like {
                operand,
                pattern,
                negated,
            } => {
                let value = self.eval_split(operand)?;
                let pattern = Value::Scalar(Arc::clone(pattern));
                self.map_split(value, |value| {
                    let result = if *negated {
                        nlike(value, &pattern)?
                    } else {
                        like(value, &pattern)?
                    };
                    Ok(Value::new(Arc::new(result), value.is_scalar()))
                })?
            }
            Node::Coalesce(args) => self.coalesce(args)?,
            Node::DaysSince(inner) => {
                let value = self.eval(inner)?;
                let micros = value
                    .array()
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| self.internal("days_since of a non-int64 array"))?;
                // `now - t` is an int64 difference, as the reference computes it: beyond int64
                // it is a data error, not a silently rounded float.
                let now = self.now_us;
                let days = micros
                    .try_unary::<_, Float64Type, ArrowError>(|t| {
                        now.checked_sub(t)
                            .map(|d| d as f64 / MICROS_PER_DAY as f64)
                            .ok_or_else(|| ArrowError::ComputeError("overflow".into()))
                    })
                    .map_err(|_| {
                        data_err!(
                            "rule {:?}: days_since overflows int64 microseconds",
                            self.source
                        )
                    })?;
                Value::new(Arc::new(days), value.is_scalar())
            }
        })
    }

    fn convert(&self, conv: &Conv, value: Value) -> Result<Value> {
        let scalar = value.is_scalar();
        Ok(match conv {
            Conv::Keep => value,
            Conv::Cast(data_type) => {
                Value::new(arrow_cast::cast(value.array(), data_type)?, scalar)
            }
            Conv::Canon => {
                let floats = value
                    .array()
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| self.internal("canonicalising a non-float64 array"))?;
                let canonical = floats.unary::<_, Float64Type>(|v| {
                    // `+ 0.0` turns -0.0 into 0.0 and leaves every other number alone.
                    if v.is_nan() {
                        f64::NAN
                    } else {
                        v + 0.0
                    }
                });
                Value::new(Arc::new(canonical), scalar)
            }
        })
    }

    /// `x op operand` for IN and BETWEEN, converting `x` at most once per conversion.
    fn compare_operand(
        &mut self,
        op: CmpOp,
        x: &Value,
        operand: &Operand,
        conversions: &mut Vec<(Conv, Value)>,
    ) -> Result<Value> {
        let (conv, node) = match operand {
            Operand::Null => return Ok(null_boolean()),
            Operand::Value { conv, node } => (conv, node),
        };
        let converted = match conversions.iter().find(|(c, _)| c == conv) {
            Some((_, value)) => value.clone(),
            None => {
                let value = self.convert(conv, x.clone())?;
                conversions.push((conv.clone(), value.clone()));
                value
            }
        };
        let y = self.eval(node)?;
        compare(op, &converted, &y)
    }

    /// Float division with IEEE-754 results, as DuckDB 2.0 (the arbiter) gives them:
    /// `x / 0` is ±inf and `0 / 0` is NaN. Both sides are float64 by then (the binder casts).
    fn divide(&self, l: &Value, r: &Value) -> Result<Value> {
        let scalar = l.is_scalar() && r.is_scalar();
        Ok(Value::new(div(l, r)?, scalar))
    }

    fn coalesce(&mut self, args: &[Node]) -> Result<Value> {
        let (first, rest) = args
            .split_first()
            .ok_or_else(|| self.internal("COALESCE without arguments"))?;
        let mut acc = self.eval(first)?;
        // Every argument is evaluated, as the reference does, so an overflow in a later one is
        // an error whatever the data (docs/semantics.md: nothing short-circuits).
        for arg in rest {
            let next = self.eval(arg)?;
            acc = coalesce_step(acc, next)?;
        }
        Ok(acc)
    }

    /// Evaluates `node`, keeping `COALESCE(head…, fill)` apart when `head…` is a column with
    /// NULLs and `fill` a constant that is not NULL (`COALESCE(email, '')`): the caller applies
    /// its row-wise function to each part ([`Evaluator::map_split`]) instead of to a copy of
    /// the column with its NULLs filled. The arguments are evaluated as [`Self::coalesce`]
    /// evaluates them, every one, in order.
    fn eval_split(&mut self, node: &Node) -> Result<Split> {
        if let Node::Coalesce(args) = node {
            if let Some((last, head @ [_, ..])) = args.split_last() {
                let head = self.coalesce(head)?;
                let fill = self.eval(last)?;
                return Ok(match (head, fill) {
                    (Value::Array(head), Value::Scalar(fill))
                        if head.logical_null_count() > 0 && fill.logical_null_count() == 0 =>
                    {
                        Split::Filled { head, fill }
                    }
                    (head, fill) => Split::Whole(coalesce_step(head, fill)?),
                });
            }
        }
        Ok(Split::Whole(self.eval(node)?))
    }

    /// `f`, a row-wise function to booleans, of the value: for `COALESCE(head, fill)`, `f` of
    /// `head` where `head` is not NULL and `f(fill)` where it is (the same, row by row,
    /// whatever `f` gives for a NULL).
    fn map_split(&self, split: Split, f: impl Fn(&Value) -> Result<Value>) -> Result<Value> {
        let (head, fill) = match split {
            Split::Whole(value) => return f(&value),
            Split::Filled { head, fill } => (head, fill),
        };
        let present = head
            .logical_nulls()
            .map(|nulls| nulls.into_inner())
            .unwrap_or_else(|| BooleanBuffer::new_set(head.len()));
        let on_head = f(&Value::Array(head))?;
        let on_fill = f(&Value::Scalar(fill))?;
        let (Some(on_head), Some(on_fill)) = (
            on_head
                .array()
                .as_boolean_opt()
                .filter(|_| !on_head.is_scalar()),
            on_fill.array().as_boolean_opt(),
        ) else {
            return Err(self.internal("a function of COALESCE is not boolean row by row"));
        };
        let result_valid = on_head
            .nulls()
            .map(|nulls| nulls.inner().clone())
            .unwrap_or_else(|| BooleanBuffer::new_set(on_head.len()));
        let absent = !&present;
        let (values, valid) = if on_fill.is_null(0) {
            (on_head.values() & &present, &result_valid & &present)
        } else if on_fill.value(0) {
            (on_head.values() | &absent, &result_valid | &absent)
        } else {
            (on_head.values() & &present, &result_valid | &absent)
        };
        let nulls = NullBuffer::new(valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Ok(Value::Array(Arc::new(BooleanArray::new(values, nulls))))
    }

    fn fold(
        &mut self,
        items: &[Node],
        op: fn(&BooleanArray, &BooleanArray) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value> {
        let (first, rest) = items
            .split_first()
            .ok_or_else(|| self.internal("empty AND / OR"))?;
        let mut acc = self.eval(first)?;
        for item in rest {
            let next = self.eval(item)?;
            acc = self.kleene(&acc, &next, op)?;
        }
        Ok(acc)
    }

    /// Applies a two-argument boolean kernel; those want two arrays of one length, so a scalar
    /// meeting an array is expanded first.
    fn kleene(
        &self,
        a: &Value,
        b: &Value,
        op: fn(&BooleanArray, &BooleanArray) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value> {
        let scalar = a.is_scalar() && b.is_scalar();
        let len = if scalar { 1 } else { self.rows };
        let result = op(&self.booleans(a, len)?, &self.booleans(b, len)?)?;
        Ok(Value::new(Arc::new(result), scalar))
    }

    fn negate_if(&self, value: Value, negated: bool) -> Result<Value> {
        if !negated {
            return Ok(value);
        }
        let booleans = value
            .array()
            .as_boolean_opt()
            .ok_or_else(|| self.internal("NOT of a non-boolean array"))?;
        Ok(Value::new(Arc::new(not(booleans)?), value.is_scalar()))
    }

    /// The value as a boolean array of `len` rows (a scalar repeated).
    fn booleans(&self, value: &Value, len: usize) -> Result<BooleanArray> {
        let booleans = value
            .array()
            .as_boolean_opt()
            .ok_or_else(|| self.internal("a boolean operand is not a boolean array"))?;
        Ok(match value {
            Value::Array(_) => booleans.clone(),
            Value::Scalar(_) if booleans.is_null(0) => BooleanArray::new_null(len),
            Value::Scalar(_) if booleans.value(0) => {
                BooleanArray::from(BooleanBuffer::new_set(len))
            }
            Value::Scalar(_) => BooleanArray::from(BooleanBuffer::new_unset(len)),
        })
    }

    fn arith_error(&self, err: ArrowError, text: &str) -> NbaError {
        match err {
            ArrowError::ArithmeticOverflow(_) => {
                data_err!("rule {:?}: integer overflow in {text}", self.source)
            }
            other => NbaError::Arrow(other),
        }
    }
}

/// `COALESCE(acc, next)`, two evaluated arguments.
fn coalesce_step(acc: Value, next: Value) -> Result<Value> {
    Ok(match &acc {
        // A scalar: NULL for every row (take the next argument) or for none (keep it).
        Value::Scalar(array) if array.logical_null_count() > 0 => next,
        Value::Scalar(_) => acc,
        Value::Array(array) => Value::Array(
            match &next {
                Value::Scalar(fill) => kernels::fill_nulls(array, fill.as_ref()),
                Value::Array(_) => None,
            }
            .map_or_else(|| zip(&is_not_null(array)?, &acc, &next), Ok)?,
        ),
    })
}

/// `l op r`, string equality against a constant by its own kernel.
fn compare_values(op: CmpOp, l: &Value, r: &Value) -> Result<Value> {
    Ok(match (op, string_equality(l, r)) {
        (CmpOp::Eq, Some(equal)) => Value::Array(Arc::new(equal)),
        (CmpOp::NotEq, Some(equal)) => Value::Array(Arc::new(not(&equal)?)),
        _ => compare(op, l, r)?,
    })
}

fn compare(op: CmpOp, l: &Value, r: &Value) -> Result<Value> {
    let result = match op {
        CmpOp::Eq => cmp::eq(l, r),
        CmpOp::NotEq => cmp::neq(l, r),
        CmpOp::Lt => cmp::lt(l, r),
        CmpOp::LtEq => cmp::lt_eq(l, r),
        CmpOp::Gt => cmp::gt(l, r),
        CmpOp::GtEq => cmp::gt_eq(l, r),
    }?;
    Ok(Value::new(Arc::new(result), l.is_scalar() && r.is_scalar()))
}

/// `l = r` by [`kernels::strings_in`] when one side is a string column and the other a
/// non-NULL string constant; `None` otherwise.
fn string_equality(l: &Value, r: &Value) -> Option<BooleanArray> {
    let (x, constant) = match (l, r) {
        (Value::Array(x), Value::Scalar(c)) | (Value::Scalar(c), Value::Array(x)) => (x, c),
        _ => return None,
    };
    if constant.data_type() != x.data_type() {
        return None;
    }
    kernels::strings_in(
        x.as_ref(),
        &[kernels::string_constant(constant.as_ref())?],
        false,
    )
}

/// `x IN (items)` by [`kernels::strings_in`] when `x` is a string column and every item a
/// string constant of its type, compared as it is; `None` otherwise.
fn strings_in_list(x: &Value, items: &[Operand]) -> Option<BooleanArray> {
    let Value::Array(x) = x else {
        return None;
    };
    let mut constants: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut null_item = false;
    for item in items {
        match item {
            Operand::Null => null_item = true,
            Operand::Value {
                conv: Conv::Keep,
                node,
            } => match node.as_ref() {
                Node::Literal(constant) if constant.data_type() == x.data_type() => {
                    match kernels::string_constant(constant.as_ref()) {
                        Some(bytes) => constants.push(bytes),
                        None if constant.is_null(0) => null_item = true,
                        None => return None,
                    }
                }
                _ => return None,
            },
            Operand::Value { .. } => return None,
        }
    }
    kernels::strings_in(x.as_ref(), &constants, null_item)
}

fn null_boolean() -> Value {
    Value::Scalar(Arc::new(BooleanArray::new_null(1)))
}
