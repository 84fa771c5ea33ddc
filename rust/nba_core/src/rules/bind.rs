//! Binding: resolves a rule's columns against a schema, type-checks it, and lowers it to the
//! [`Node`] plan with every implicit conversion spelled out.
//!
//! All type errors surface here, once per schema, so evaluating a batch can only fail on data
//! (an integer overflow, a value out of range).

use arrow_schema::{DataType, Schema};

use super::coerce::{
    arrow_type, bind_literal, boolean, convert, describe, null_bool, null_of, string_literal,
    value_type,
};
use super::columns::{normalised_type, rule_type, ColumnSpec};
use super::plan::{Conv, Node, Operand};
use super::types::{ArithOp, Expr, Literal, Type};
use crate::error::{NbaError, Result};
use crate::rule_err;

/// A rule bound to one schema: the columns to load and the plan over them.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub columns: Vec<ColumnSpec>,
    pub root: Node,
}

/// Binds the parsed rule `expr` (whose text is `source`) to `schema`.
pub(crate) fn bind(source: &str, expr: &Expr, schema: &Schema) -> Result<Bound> {
    let mut binder = Binder {
        source,
        schema,
        columns: Vec::new(),
    };
    let typed = binder.bind(expr)?;
    let root = match typed.ty {
        Type::Bool => typed.node,
        Type::Null => null_bool(),
        other => {
            return Err(binder.err(format_args!(
                "the rule must be boolean, got {}",
                describe(expr, other)
            )))
        }
    };
    Ok(Bound {
        columns: binder.columns,
        root,
    })
}

/// A bound expression: its plan, rule type and the Arrow type of its values.
pub(super) struct Typed {
    pub(super) node: Node,
    pub(super) ty: Type,
    pub(super) data_type: DataType,
}

/// Binding state: the rule text (for messages), the schema, and the columns the rule reads so
/// far, each listed once however often the rule names it.
pub(super) struct Binder<'a> {
    source: &'a str,
    schema: &'a Schema,
    columns: Vec<ColumnSpec>,
}

impl Binder<'_> {
    pub(super) fn err(&self, message: impl std::fmt::Display) -> NbaError {
        rule_err!("rule {:?}: {message}", self.source)
    }

    pub(super) fn bind(&mut self, expr: &Expr) -> Result<Typed> {
        Ok(match expr {
            Expr::Literal(literal) => bind_literal(literal),
            Expr::Column { name, quoted } => self.column(name, *quoted)?,
            Expr::Neg(inner) => {
                let operand = self.bind(inner)?;
                match operand.ty {
                    Type::Int | Type::Float => Typed {
                        node: Node::Neg {
                            operand: Box::new(operand.node),
                            text: expr.to_string().into(),
                        },
                        ..operand
                    },
                    Type::Null => operand,
                    other => {
                        return Err(
                            self.err(format_args!("cannot negate {}", describe(inner, other)))
                        )
                    }
                }
            }
            Expr::Plus(inner) => {
                let operand = self.bind(inner)?;
                if !operand.ty.is_numeric() && operand.ty != Type::Null {
                    return Err(self.err(format_args!(
                        "unary + needs a number, got {}",
                        describe(inner, operand.ty)
                    )));
                }
                operand
            }
            Expr::Arith(op, left, right) => self.arith(expr, *op, left, right)?,
            Expr::Compare(op, left, right) => {
                let l = self.bind(left)?;
                let r = self.bind(right)?;
                match self.comparison(left, &l, right, r)? {
                    Operand::Null => null_of(Type::Bool),
                    Operand::Value { conv, node } => {
                        boolean(Node::Compare(*op, Box::new(convert(conv, l.node)), node))
                    }
                }
            }
            Expr::And(items) => boolean(Node::And(self.bind_bools("AND", items)?)),
            Expr::Or(items) => boolean(Node::Or(self.bind_bools("OR", items)?)),
            Expr::Not(inner) => boolean(Node::Not(Box::new(self.bind_bool("NOT", inner)?))),
            Expr::InList {
                expr: tested,
                list,
                negated,
            } => {
                let x = self.bind(tested)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let y = self.bind(item)?;
                    items.push(self.comparison(tested, &x, item, y)?);
                }
                if x.ty == Type::Null {
                    return Ok(null_of(Type::Bool));
                }
                boolean(Node::InList {
                    expr: Box::new(x.node),
                    items,
                    negated: *negated,
                })
            }
            Expr::Between {
                expr: tested,
                low,
                high,
                negated,
            } => {
                let x = self.bind(tested)?;
                let lo = self.bind(low)?;
                let low = self.comparison(tested, &x, low, lo)?;
                let hi = self.bind(high)?;
                let high = self.comparison(tested, &x, high, hi)?;
                if x.ty == Type::Null {
                    return Ok(null_of(Type::Bool));
                }
                boolean(Node::Between {
                    expr: Box::new(x.node),
                    low,
                    high,
                    negated: *negated,
                })
            }
            Expr::IsNull {
                expr: inner,
                negated,
            } => {
                let operand = self.bind(inner)?;
                if operand.ty == Type::Null {
                    bind_literal(&Literal::Bool(!negated))
                } else {
                    boolean(Node::IsNull {
                        operand: Box::new(operand.node),
                        negated: *negated,
                    })
                }
            }
            Expr::Like {
                expr: inner,
                pattern,
                negated,
            } => {
                let operand = self.bind(inner)?;
                match operand.ty {
                    // Arrow's LIKE kernels read `\` as an escape; the subset has none, so a
                    // backslash in the pattern is a literal backslash.
                    Type::Str => boolean(Node::Like {
                        pattern: string_literal(
                            &pattern.replace('\\', "\\\\"),
                            &value_type(&operand.data_type),
                        ),
                        operand: Box::new(operand.node),
                        negated: *negated,
                    }),
                    Type::Null => null_of(Type::Bool),
                    other => {
                        return Err(self.err(format_args!(
                            "LIKE needs a string, got {}",
                            describe(inner, other)
                        )))
                    }
                }
            }
            Expr::Coalesce(args) => self.coalesce(args)?,
            Expr::DaysSince(inner) => {
                let operand = self.bind(inner)?;
                match operand.ty {
                    Type::Time => Typed {
                        node: Node::DaysSince(Box::new(operand.node)),
                        ty: Type::Float,
                        data_type: DataType::Float64,
                    },
                    Type::Null => null_of(Type::Float),
                    other => {
                        return Err(self.err(format_args!(
                            "days_since needs a timestamp or date, got {}",
                            describe(inner, other)
                        )))
                    }
                }
            }
        })
    }

    /// Resolves a column: exact name first; an unquoted name then matches case-insensitively
    /// when exactly one column does.
    fn column(&mut self, name: &str, quoted: bool) -> Result<Typed> {
        let fields = self.schema.fields();
        let mut matches: Vec<usize> = (0..fields.len())
            .filter(|&i| fields[i].name() == name)
            .collect();
        if matches.is_empty() && !quoted {
            let lower = name.to_lowercase();
            matches = (0..fields.len())
                .filter(|&i| fields[i].name().to_lowercase() == lower)
                .collect();
        }
        let index = match matches.as_slice() {
            [index] => *index,
            [] => return Err(self.err(format_args!("unknown column {name:?}"))),
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|&i| format!("{:?}", fields[i].name()))
                    .collect();
                return Err(self.err(format_args!(
                    "column {name:?} is ambiguous: it matches {}",
                    names.join(", ")
                )));
            }
        };
        let field = &fields[index];
        if field.data_type() == &DataType::Null {
            // A column of Arrow's null type holds only NULLs: it is the NULL literal.
            return Ok(null_of(Type::Null));
        }
        let ty = rule_type(field.data_type()).ok_or_else(|| {
            self.err(format_args!(
                "column {name:?} has type {}, which rules cannot use",
                field.data_type()
            ))
        })?;
        let slot = match self.columns.iter().position(|c| c.index == index) {
            Some(slot) => slot,
            None => {
                self.columns.push(ColumnSpec {
                    index,
                    name: field.name().clone(),
                    data_type: field.data_type().clone(),
                });
                self.columns.len() - 1
            }
        };
        Ok(Typed {
            node: Node::Column(slot),
            ty,
            data_type: normalised_type(field.data_type()),
        })
    }

    fn arith(&mut self, expr: &Expr, op: ArithOp, left: &Expr, right: &Expr) -> Result<Typed> {
        let l = self.bind(left)?;
        let r = self.bind(right)?;
        for (side, typed) in [(left, &l), (right, &r)] {
            if !typed.ty.is_numeric() && typed.ty != Type::Null {
                return Err(self.err(format_args!(
                    "cannot apply {op} to {}",
                    describe(side, typed.ty)
                )));
            }
        }
        let ty = if op == ArithOp::Div || l.ty == Type::Float || r.ty == Type::Float {
            Type::Float
        } else if l.ty == Type::Int || r.ty == Type::Int {
            Type::Int
        } else {
            Type::Null
        };
        if l.ty == Type::Null || r.ty == Type::Null {
            return Ok(null_of(ty));
        }
        let operand = |t: Typed| match (ty, t.ty) {
            (Type::Float, Type::Int) => Box::new(convert(Conv::Cast(DataType::Float64), t.node)),
            _ => Box::new(t.node),
        };
        Ok(Typed {
            node: Node::Arith {
                op,
                left: operand(l),
                right: operand(r),
                text: expr.to_string().into(),
            },
            ty,
            data_type: arrow_type(ty),
        })
    }

    /// Binds operands of AND / OR.
    fn bind_bools(&mut self, op: &str, items: &[Expr]) -> Result<Vec<Node>> {
        items.iter().map(|item| self.bind_bool(op, item)).collect()
    }

    /// Binds an operand of AND / OR / NOT, which must be boolean (or NULL).
    fn bind_bool(&mut self, op: &str, item: &Expr) -> Result<Node> {
        let typed = self.bind(item)?;
        match typed.ty {
            Type::Bool => Ok(typed.node),
            Type::Null => Ok(null_bool()),
            other => Err(self.err(format_args!(
                "{op} needs boolean operands, got {}",
                describe(item, other)
            ))),
        }
    }
}
