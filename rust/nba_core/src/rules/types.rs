//! The rule language's own small AST and its value types.
//!
//! `parse` turns sqlparser's (large, dialect-laden) AST into this one, so binding and evaluation
//! only ever see the subset that `docs/semantics.md` defines. `Display` renders a node back as
//! SQL for error messages.

use std::fmt;

/// A literal as written in the rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// `123`: always int64.
    Int(i64),
    /// `1.5`, `1e3`: always float64.
    Float(f64),
    /// `'text'`.
    Str(String),
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// `NULL`: compares with anything, yielding NULL.
    Null,
}

/// `+ - * /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// `= <> < <= > >=` (`!=` is parsed as `<>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// One node of a parsed rule. AND / OR chains are flattened so that a long conjunction does not
/// become a deep tree (and a deep recursion).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    /// A column reference; `quoted` names match exactly, unquoted ones also case-insensitively.
    Column {
        name: String,
        quoted: bool,
    },
    /// Unary minus; keeps the operand's numeric type.
    Neg(Box<Expr>),
    /// Unary plus; only checks that the operand is a number.
    Plus(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// The pattern is always a string literal (checked by the parser).
    Like {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
    },
    Coalesce(Vec<Expr>),
    DaysSince(Box<Expr>),
}

/// The type of a rule expression, after the column types are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    /// int64.
    Int,
    /// float64.
    Float,
    /// Any Arrow string type (dictionaries included).
    Str,
    Bool,
    /// Timestamps and dates, as int64 microseconds since the epoch (UTC).
    Time,
    /// The NULL literal, or an expression statically NULL because of it.
    Null,
}

impl Type {
    /// The word used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Type::Int => "integer",
            Type::Float => "float",
            Type::Str => "string",
            Type::Bool => "boolean",
            Type::Time => "timestamp",
            Type::Null => "NULL",
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) => write!(f, "{v:?}"),
            Literal::Str(s) => write_quoted(f, s),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Null => f.write_str("NULL"),
        }
    }
}

/// A SQL string literal: single quotes, an inner quote doubled.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}

impl fmt::Display for ArithOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        })
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        })
    }
}

impl Expr {
    /// Leaves and calls print bare; everything else is parenthesised when nested, so the
    /// rendering never depends on operator precedence.
    fn is_atom(&self) -> bool {
        matches!(
            self,
            Expr::Literal(_) | Expr::Column { .. } | Expr::Coalesce(_) | Expr::DaysSince(_)
        )
    }
}

/// Writes a child expression, parenthesised unless it is an atom.
struct Child<'a>(&'a Expr);

impl fmt::Display for Child<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_atom() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "({})", self.0)
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr], separator: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{}", Child(item))?;
    }
    Ok(())
}

fn not(negated: bool) -> &'static str {
    if negated {
        "NOT "
    } else {
        ""
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(literal) => write!(f, "{literal}"),
            Expr::Column { name, quoted: true } => write!(f, "\"{}\"", name.replace('"', "\"\"")),
            Expr::Column { name, .. } => f.write_str(name),
            Expr::Neg(inner) => write!(f, "-{}", Child(inner)),
            Expr::Plus(inner) => write!(f, "+{}", Child(inner)),
            Expr::Arith(op, left, right) => write!(f, "{} {op} {}", Child(left), Child(right)),
            Expr::Compare(op, left, right) => write!(f, "{} {op} {}", Child(left), Child(right)),
            Expr::And(items) => write_list(f, items, " AND "),
            Expr::Or(items) => write_list(f, items, " OR "),
            Expr::Not(inner) => write!(f, "NOT {}", Child(inner)),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "{} {}IN (", Child(expr), not(*negated))?;
                write_list(f, list, ", ")?;
                f.write_str(")")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => write!(
                f,
                "{} {}BETWEEN {} AND {}",
                Child(expr),
                not(*negated),
                Child(low),
                Child(high)
            ),
            Expr::IsNull { expr, negated } => {
                write!(f, "{} IS {}NULL", Child(expr), not(*negated))
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                write!(f, "{} {}LIKE ", Child(expr), not(*negated))?;
                write_quoted(f, pattern)
            }
            Expr::Coalesce(items) => {
                f.write_str("COALESCE(")?;
                write_list(f, items, ", ")?;
                f.write_str(")")
            }
            Expr::DaysSince(inner) => write!(f, "days_since({inner})"),
        }
    }
}
