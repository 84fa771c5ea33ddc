//! The bound plan: a rule after type checking, every implicit conversion made explicit, so that
//! evaluation only dispatches to Arrow kernels and cannot meet a type error.

use arrow_array::ArrayRef;
use arrow_schema::DataType;

use super::types::{ArithOp, CmpOp};

/// A conversion applied to a value before a kernel sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Conv {
    Keep,
    /// `arrow_cast::cast` to this type: int64 → float64, or one string type to another.
    Cast(DataType),
    /// float64 with `-0.0` → `0.0` and every NaN the same NaN. Arrow compares floats by IEEE
    /// total order, where `-0.0 < 0.0` and NaNs differ by sign; DuckDB has `-0.0 = 0.0` and NaN
    /// equal to itself and above every number, which these canonical values give under total
    /// order.
    Canon,
}

/// A node of the bound plan. Each evaluates to an Arrow array of one fixed type (int64, float64,
/// boolean, or a string type), or to a one-row scalar of it when it depends on no column.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A loaded column, by its slot in `BoundRule::columns`.
    Column(usize),
    /// A constant: a one-row array, null for a (typed) NULL.
    Literal(ArrayRef),
    Convert(Conv, Box<Node>),
    /// Unary minus; `text` renders the expression for the overflow message.
    Neg {
        operand: Box<Node>,
        text: Box<str>,
    },
    /// Both sides have one type: int64 (checked) or float64. `Div` is always on float64.
    Arith {
        op: ArithOp,
        left: Box<Node>,
        right: Box<Node>,
        text: Box<str>,
    },
    Compare(CmpOp, Box<Node>, Box<Node>),
    /// `expr` is evaluated once; each item brings the conversion `expr` needs for it.
    InList {
        expr: Box<Node>,
        items: Vec<Operand>,
        negated: bool,
    },
    Between {
        expr: Box<Node>,
        low: Operand,
        high: Operand,
        negated: bool,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    IsNull {
        operand: Box<Node>,
        negated: bool,
    },
    /// `pattern` is a one-row array of the operand's string value type, backslashes escaped.
    Like {
        operand: Box<Node>,
        pattern: ArrayRef,
        negated: bool,
    },
    /// Arguments of one Arrow type, never a dictionary; NULL literals already dropped.
    Coalesce(Vec<Node>),
    /// int64 microseconds in, float64 days out.
    DaysSince(Box<Node>),
}

/// The right-hand side of one comparison against a shared left-hand side (IN, BETWEEN).
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// A NULL literal: the comparison is NULL whatever the left side.
    Null,
    /// `left` is converted by `conv` (cached per conversion), then compared with `node`.
    Value { conv: Conv, node: Box<Node> },
}
