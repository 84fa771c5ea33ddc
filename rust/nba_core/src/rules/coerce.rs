//! The typing rules that meet two or more operands: comparisons (with IN and BETWEEN) and
//! COALESCE, plus the small constructors of typed nodes that binding shares.
//!
//! Implicit conversions are decided here: int64 meets float64 as float64, string types meet as
//! the column's own type (literals adapt to it) or as the view type.

use std::sync::Arc;

use arrow_array::{
    new_null_array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray,
    StringArray, StringViewArray,
};
use arrow_schema::DataType;

use super::bind::{Binder, Typed};
use super::plan::{Conv, Node, Operand};
use super::types::{Expr, Literal, Type};
use crate::error::Result;

impl Binder<'_> {
    /// Plans `x <op> y`: the conversion `x` needs and the converted `y`, or `Operand::Null` when
    /// either side is the NULL literal. `x` is borrowed because IN and BETWEEN share it.
    pub(super) fn comparison(
        &self,
        x_expr: &Expr,
        x: &Typed,
        y_expr: &Expr,
        y: Typed,
    ) -> Result<Operand> {
        use Type::*;
        let to_float = |ty| match ty {
            Int => Conv::Cast(DataType::Float64),
            _ => Conv::Canon,
        };
        Ok(match (x.ty, y.ty) {
            (Null, _) | (_, Null) => Operand::Null,
            (Int, Int) | (Bool, Bool) | (Time, Time) => Operand::Value {
                conv: Conv::Keep,
                node: Box::new(y.node),
            },
            (Int | Float, Int | Float) => Operand::Value {
                conv: to_float(x.ty),
                node: Box::new(convert(to_float(y.ty), y.node)),
            },
            (Str, Str) => {
                let (x_values, y_values) = (value_type(&x.data_type), value_type(&y.data_type));
                if x_values == y_values {
                    Operand::Value {
                        conv: Conv::Keep,
                        node: Box::new(y.node),
                    }
                } else if let Expr::Literal(Literal::Str(text)) = y_expr {
                    Operand::Value {
                        conv: Conv::Keep,
                        node: Box::new(Node::Literal(string_literal(text, &x_values))),
                    }
                } else if matches!(x_expr, Expr::Literal(_)) {
                    // Casting a one-row literal is free; casting the column is not.
                    Operand::Value {
                        conv: Conv::Cast(y_values),
                        node: Box::new(y.node),
                    }
                } else {
                    // Two string columns of different Arrow types: meet at the view type, which
                    // every string type casts to without copying the bytes.
                    Operand::Value {
                        conv: Conv::Cast(DataType::Utf8View),
                        node: Box::new(convert(Conv::Cast(DataType::Utf8View), y.node)),
                    }
                }
            }
            _ => {
                return Err(self.err(format_args!(
                    "cannot compare {} with {}",
                    describe(x_expr, x.ty),
                    describe(y_expr, y.ty)
                )))
            }
        })
    }

    pub(super) fn coalesce(&mut self, args: &[Expr]) -> Result<Typed> {
        let mut present: Vec<(&Expr, Typed)> = Vec::with_capacity(args.len());
        for arg in args {
            let typed = self.bind(arg)?;
            // A NULL literal can never be the first non-NULL argument.
            if typed.ty != Type::Null {
                present.push((arg, typed));
            }
        }
        let Some((first_expr, first)) = present.first() else {
            return Ok(null_of(Type::Null));
        };
        let mut ty = first.ty;
        for (arg, typed) in &present {
            ty = match (ty, typed.ty) {
                (a, b) if a == b => a,
                (Type::Int | Type::Float, Type::Int | Type::Float) => Type::Float,
                _ => {
                    return Err(self.err(format_args!(
                        "COALESCE arguments must have one type, got {} and {}",
                        describe(first_expr, first.ty),
                        describe(arg, typed.ty)
                    )))
                }
            };
        }
        let data_type = match ty {
            Type::Str => common_string_type(&present),
            other => arrow_type(other),
        };
        let nodes: Vec<Node> = present
            .into_iter()
            .map(|(arg, typed)| match (arg, ty) {
                (Expr::Literal(Literal::Str(text)), Type::Str) => {
                    Node::Literal(string_literal(text, &data_type))
                }
                (_, Type::Str | Type::Float) if typed.data_type != data_type => {
                    convert(Conv::Cast(data_type.clone()), typed.node)
                }
                _ => typed.node,
            })
            .collect();
        let node = match <[Node; 1]>::try_from(nodes) {
            Ok([single]) => single,
            Err(nodes) => Node::Coalesce(nodes),
        };
        Ok(Typed {
            node,
            ty,
            data_type,
        })
    }
}

/// COALESCE's string type: the arguments' own value type when they share one (dictionaries
/// unpacked, since `zip` wants plain arrays), else the view type every string type casts to.
fn common_string_type(args: &[(&Expr, Typed)]) -> DataType {
    let mut types = args
        .iter()
        .filter(|(arg, _)| !matches!(arg, Expr::Literal(_)))
        .map(|(_, typed)| value_type(&typed.data_type));
    match types.next() {
        None => DataType::Utf8,
        Some(first) if types.all(|t| t == first) => first,
        Some(_) => DataType::Utf8View,
    }
}

pub(super) fn bind_literal(literal: &Literal) -> Typed {
    let (array, ty): (ArrayRef, Type) = match literal {
        Literal::Int(v) => (Arc::new(Int64Array::from(vec![*v])), Type::Int),
        Literal::Float(v) => (Arc::new(Float64Array::from(vec![*v])), Type::Float),
        Literal::Str(s) => (string_literal(s, &DataType::Utf8), Type::Str),
        Literal::Bool(b) => (Arc::new(BooleanArray::from(vec![*b])), Type::Bool),
        Literal::Null => return null_of(Type::Null),
    };
    Typed {
        node: Node::Literal(array),
        data_type: arrow_type(ty),
        ty,
    }
}

/// A one-row string array of the given string type (Utf8 unless LargeUtf8 or Utf8View).
pub(super) fn string_literal(text: &str, data_type: &DataType) -> ArrayRef {
    match data_type {
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from(vec![text])),
        DataType::Utf8View => Arc::new(StringViewArray::from(vec![text])),
        _ => Arc::new(StringArray::from(vec![text])),
    }
}

/// The type of a string array's values: a dictionary's value type, else the type itself.
pub(super) fn value_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, values) => values.as_ref().clone(),
        other => other.clone(),
    }
}

/// The Arrow type a non-column expression of this rule type evaluates to.
pub(super) fn arrow_type(ty: Type) -> DataType {
    match ty {
        Type::Int | Type::Time => DataType::Int64,
        Type::Float => DataType::Float64,
        Type::Str => DataType::Utf8,
        Type::Bool => DataType::Boolean,
        Type::Null => DataType::Null,
    }
}

/// A statically NULL expression of type `ty`.
pub(super) fn null_of(ty: Type) -> Typed {
    let data_type = arrow_type(ty);
    Typed {
        node: Node::Literal(new_null_array(&data_type, 1)),
        ty,
        data_type,
    }
}

pub(super) fn null_bool() -> Node {
    Node::Literal(Arc::new(BooleanArray::from(vec![None::<bool>])))
}

pub(super) fn boolean(node: Node) -> Typed {
    Typed {
        node,
        ty: Type::Bool,
        data_type: DataType::Boolean,
    }
}

pub(super) fn convert(conv: Conv, node: Node) -> Node {
    match conv {
        Conv::Keep => node,
        conv => Node::Convert(conv, Box::new(node)),
    }
}

/// Words an operand for a message: `string column "state"`, `integer 5`, `float expression …`.
pub(super) fn describe(expr: &Expr, ty: Type) -> String {
    match expr {
        Expr::Column { name, .. } => format!("{} column {name:?}", ty.name()),
        Expr::Literal(Literal::Null) => "NULL".to_owned(),
        Expr::Literal(literal) => format!("{} {literal}", ty.name()),
        other => format!("{} expression {other}", ty.name()),
    }
}
