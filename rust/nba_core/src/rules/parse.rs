//! From rule text to the rule AST: `sqlparser` does the SQL grammar, this module keeps the subset.
//!
//! Anything sqlparser accepts but the subset lacks (CASE, CAST, subqueries, other functions, …)
//! is a `RuleError` that names the construct, so a user sees at catalog load time that a rule
//! would not mean what DuckDB makes of it.

use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    InTarget, ObjectNamePart, UnaryOperator, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::types::{ArithOp, CmpOp, Expr, Literal};
use crate::error::{NbaError, Result};
use crate::rule_err;

/// Deepest nesting of our AST accepted. Binding and evaluation recurse over the tree, possibly on
/// a small worker-thread stack; AND / OR chains are flattened, so real rules stay far below this.
const MAX_DEPTH: usize = 128;

/// Parses `source` (not empty) into the rule AST.
pub(crate) fn parse(source: &str) -> Result<Expr> {
    // GenericDialect: standard quoting (`"name"`, `'text'` with `''`, no backslash escapes) and
    // none of DuckDB's extensions (numeric underscores, `NOTNULL`) that the reference lacks.
    let dialect = GenericDialect {};
    let syntax = |err: ParserError| match err {
        ParserError::RecursionLimitExceeded => rule_err!("rule {source:?}: nests too deeply"),
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => {
            rule_err!("rule {source:?}: syntax error: {m}")
        }
    };
    let mut parser = Parser::new(&dialect).try_with_sql(source).map_err(syntax)?;
    let expr = parser.parse_expr().map_err(syntax)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(rule_err!(
            "rule {source:?}: syntax error: unexpected {} after the expression",
            next.token
        ));
    }
    Converter { source }.convert(&expr, 0)
}

/// Converts one sqlparser expression tree; `source` is only quoted in messages.
struct Converter<'a> {
    source: &'a str,
}

impl Converter<'_> {
    fn err(&self, message: impl std::fmt::Display) -> NbaError {
        rule_err!("rule {:?}: {message}", self.source)
    }

    fn unsupported(&self, construct: impl std::fmt::Display) -> NbaError {
        self.err(format_args!("{construct} is not supported"))
    }

    fn convert(&self, expr: &SqlExpr, depth: usize) -> Result<Expr> {
        if depth > MAX_DEPTH {
            return Err(self.err("nests too deeply"));
        }
        let depth = depth + 1;
        let boxed = |e: &SqlExpr| self.convert(e, depth).map(Box::new);
        Ok(match expr {
            // sqlparser reads a stray keyword (a lone `NOT`) as a column name; SQL would not.
            SqlExpr::Identifier(ident)
                if ident.quote_style.is_none() && is_reserved(&ident.value) =>
            {
                return Err(self.err(format_args!("unexpected keyword {}", ident.value)))
            }
            SqlExpr::Identifier(ident) => Expr::Column {
                name: ident.value.clone(),
                quoted: ident.quote_style.is_some(),
            },
            SqlExpr::Nested(inner) => self.convert(inner, depth)?,
            // `a = b IN (…)` (also BETWEEN, LIKE) is `a = (b IN (…))` in DuckDB, whose IN /
            // BETWEEN / LIKE bind tighter than comparisons; sqlparser reads `(a = b) IN (…)`.
            // Regroup it (the comparison then checks `a` for chaining as usual).
            SqlExpr::In { expr: operand, .. }
            | SqlExpr::Between { expr: operand, .. }
            | SqlExpr::Like { expr: operand, .. }
                if comparison_op(operand).is_some() =>
            {
                let Some((_, left, right)) = comparison_op(operand) else {
                    return Err(self.err("internal: comparison expected"));
                };
                let SqlExpr::BinaryOp { op, .. } = operand.as_ref() else {
                    return Err(self.err("internal: comparison expected"));
                };
                let mut predicate = expr.clone();
                match &mut predicate {
                    SqlExpr::In { expr, .. }
                    | SqlExpr::Between { expr, .. }
                    | SqlExpr::Like { expr, .. } => **expr = right.clone(),
                    _ => return Err(self.err("internal: predicate expected")),
                }
                let regrouped = SqlExpr::BinaryOp {
                    left: Box::new(left.clone()),
                    op: op.clone(),
                    right: Box::new(predicate),
                };
                self.convert(&regrouped, depth)?
            }
            SqlExpr::Value(value) => Expr::Literal(self.literal(&value.value, false)?),
            SqlExpr::UnaryOp { op, expr: operand } => match op {
                // A minus sign directly on a number is part of the literal, so that
                // -9223372036854775808 is an int64 and not an overflow.
                UnaryOperator::Minus => match operand.as_ref() {
                    SqlExpr::Value(value) if matches!(value.value, Value::Number(..)) => {
                        Expr::Literal(self.literal(&value.value, true)?)
                    }
                    _ => Expr::Neg(boxed(operand)?),
                },
                UnaryOperator::Plus => Expr::Plus(boxed(operand)?),
                UnaryOperator::Not => Expr::Not(boxed(operand)?),
                other => return Err(self.unsupported(format_args!("operator {other}"))),
            },
            SqlExpr::BinaryOp { left, op, right } => {
                let arith = |op| Ok::<_, NbaError>(Expr::Arith(op, boxed(left)?, boxed(right)?));
                let compare = |cmp| {
                    // DuckDB refuses `a = b = c`; sqlparser would read it as `(a = b) = c`.
                    if comparison_op(left).is_some() || comparison_op(right).is_some() {
                        return Err(self.err(
                            "comparisons do not chain: combine them with AND, or parenthesise",
                        ));
                    }
                    Ok::<_, NbaError>(Expr::Compare(cmp, boxed(left)?, boxed(right)?))
                };
                match op {
                    BinaryOperator::And => Expr::And(self.chain(expr, op, depth)?),
                    BinaryOperator::Or => Expr::Or(self.chain(expr, op, depth)?),
                    BinaryOperator::Plus => arith(ArithOp::Add)?,
                    BinaryOperator::Minus => arith(ArithOp::Sub)?,
                    BinaryOperator::Multiply => arith(ArithOp::Mul)?,
                    BinaryOperator::Divide => arith(ArithOp::Div)?,
                    BinaryOperator::Eq => compare(CmpOp::Eq)?,
                    BinaryOperator::NotEq => compare(CmpOp::NotEq)?,
                    BinaryOperator::Lt => compare(CmpOp::Lt)?,
                    BinaryOperator::LtEq => compare(CmpOp::LtEq)?,
                    BinaryOperator::Gt => compare(CmpOp::Gt)?,
                    BinaryOperator::GtEq => compare(CmpOp::GtEq)?,
                    other => return Err(self.unsupported(format_args!("operator {other}"))),
                }
            }
            SqlExpr::IsNull(operand) => Expr::IsNull {
                expr: boxed(operand)?,
                negated: false,
            },
            SqlExpr::IsNotNull(operand) => Expr::IsNull {
                expr: boxed(operand)?,
                negated: true,
            },
            SqlExpr::In {
                expr: operand,
                target,
                negated,
                global: false,
            } => match target {
                InTarget::List(list) if list.is_empty() => {
                    return Err(self.err("IN needs at least one value"))
                }
                InTarget::List(list) => Expr::InList {
                    expr: boxed(operand)?,
                    list: list
                        .iter()
                        .map(|item| self.convert(item, depth))
                        .collect::<Result<_>>()?,
                    negated: *negated,
                },
                InTarget::Subquery(_) => return Err(self.unsupported("a subquery")),
                _ => return Err(self.unsupported(format_args!("IN {target}"))),
            },
            // `x BETWEEN a AND b = c` is `(x BETWEEN a AND b) = c` in DuckDB; sqlparser reads
            // `x BETWEEN a AND (b = c)`. Regroup it.
            SqlExpr::Between {
                expr: operand,
                negated,
                low,
                high,
            } if comparison_op(high).is_some() => {
                let Some((cmp, bound, other)) = comparison_op(high) else {
                    return Err(self.err("internal: comparison expected"));
                };
                let between = SqlExpr::Between {
                    expr: operand.clone(),
                    negated: *negated,
                    low: low.clone(),
                    high: Box::new(bound.clone()),
                };
                Expr::Compare(cmp, boxed(&between)?, boxed(other)?)
            }
            SqlExpr::Between {
                expr: operand,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: boxed(operand)?,
                low: boxed(low)?,
                high: boxed(high)?,
                negated: *negated,
            },
            SqlExpr::Like {
                negated,
                any: false,
                expr: operand,
                pattern,
                escape_char: None,
            } => match pattern.as_ref() {
                // `x LIKE 'p' = c` is `(x LIKE 'p') = c` in DuckDB; sqlparser reads
                // `x LIKE ('p' = c)`. Regroup it.
                SqlExpr::BinaryOp { .. } if comparison_op(pattern).is_some() => {
                    let Some((cmp, text, other)) = comparison_op(pattern) else {
                        return Err(self.err("internal: comparison expected"));
                    };
                    let like = SqlExpr::Like {
                        negated: *negated,
                        any: false,
                        expr: operand.clone(),
                        pattern: Box::new(text.clone()),
                        escape_char: None,
                    };
                    Expr::Compare(cmp, boxed(&like)?, boxed(other)?)
                }
                SqlExpr::Value(value) => match &value.value {
                    Value::SingleQuotedString(text) => Expr::Like {
                        expr: boxed(operand)?,
                        pattern: text.clone(),
                        negated: *negated,
                    },
                    _ => return Err(self.err("the LIKE pattern must be a string literal")),
                },
                _ => return Err(self.err("the LIKE pattern must be a string literal")),
            },
            SqlExpr::Like { .. } => return Err(self.unsupported("LIKE with ESCAPE or ANY")),
            SqlExpr::Function(function) => self.function(function, depth)?,
            other => return Err(self.unsupported(construct_name(other))),
        })
    }

    /// Flattens a left-deep chain `a AND b AND c` without recursing down its spine.
    fn chain(&self, expr: &SqlExpr, op: &BinaryOperator, depth: usize) -> Result<Vec<Expr>> {
        let mut rights = Vec::new();
        let mut spine = expr;
        while let SqlExpr::BinaryOp { left, op: o, right } = spine {
            if o != op {
                break;
            }
            rights.push(right.as_ref());
            spine = left;
        }
        let mut items = Vec::with_capacity(rights.len() + 1);
        for operand in std::iter::once(spine).chain(rights.into_iter().rev()) {
            // `(a AND b) AND c` arrives as a nested chain: merge it too.
            match (self.convert(operand, depth)?, op) {
                (Expr::And(inner), BinaryOperator::And) | (Expr::Or(inner), BinaryOperator::Or) => {
                    items.extend(inner)
                }
                (converted, _) => items.push(converted),
            }
        }
        Ok(items)
    }

    fn literal(&self, value: &Value, negative: bool) -> Result<Literal> {
        Ok(match value {
            Value::Number(text, false) => number(text, negative)
                .ok_or_else(|| self.err(format_args!("number {text} is out of range")))?,
            Value::SingleQuotedString(text) => Literal::Str(text.clone()),
            Value::Boolean(b) => Literal::Bool(*b),
            Value::Null => Literal::Null,
            other => return Err(self.unsupported(format_args!("the literal {other}"))),
        })
    }

    fn function(&self, function: &Function, depth: usize) -> Result<Expr> {
        let name = match function.name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident.value.to_lowercase(),
            _ => return Err(self.unsupported(format_args!("function {}()", function.name))),
        };
        if name != "coalesce" && name != "days_since" {
            return Err(self.unsupported(format_args!("function {}()", function.name)));
        }
        let plain = !function.uses_odbc_syntax
            && matches!(function.parameters, FunctionArguments::None)
            && function.filter.is_none()
            && function.null_treatment.is_none()
            && function.over.is_none()
            && function.within_group.is_empty();
        let list = match &function.args {
            FunctionArguments::List(list)
                if plain && list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list
            }
            _ => return Err(self.unsupported(format_args!("the call {function}"))),
        };
        let mut args = Vec::with_capacity(list.args.len());
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    args.push(self.convert(e, depth)?)
                }
                _ => return Err(self.unsupported(format_args!("the argument {arg} of {name}()"))),
            }
        }
        if name == "coalesce" {
            if args.is_empty() {
                return Err(self.err("COALESCE needs at least one argument"));
            }
            return Ok(Expr::Coalesce(args));
        }
        match <[Expr; 1]>::try_from(args) {
            // A column, checked here so a bad rule fails when the Engine is built.
            Ok([arg @ Expr::Column { .. }]) => Ok(Expr::DaysSince(Box::new(arg))),
            Ok([_]) => Err(self.err("days_since takes a timestamp or date column")),
            Err(args) => Err(self.err(format_args!(
                "days_since takes one argument, got {}",
                args.len()
            ))),
        }
    }
}

/// `123` → int64 (None when out of range), anything else numeric → a finite float64.
fn number(text: &str, negative: bool) -> Option<Literal> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_owned()
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return signed.parse().ok().map(Literal::Int);
    }
    // Beyond f64's range a literal is ±inf, as DuckDB reads `1e400`.
    signed.parse::<f64>().ok().map(Literal::Float)
}

/// What to call an unsupported construct in a message.
fn construct_name(expr: &SqlExpr) -> String {
    let name = match expr {
        SqlExpr::CompoundIdentifier(parts) => {
            let joined: Vec<String> = parts.iter().map(ToString::to_string).collect();
            return format!("the qualified name {}", joined.join("."));
        }
        SqlExpr::Subquery(_) | SqlExpr::Exists { .. } => "a subquery",
        SqlExpr::Case { .. } => "CASE",
        SqlExpr::Cast { .. } | SqlExpr::Convert { .. } => "CAST",
        SqlExpr::IsTrue(_)
        | SqlExpr::IsNotTrue(_)
        | SqlExpr::IsFalse(_)
        | SqlExpr::IsNotFalse(_)
        | SqlExpr::IsUnknown(_)
        | SqlExpr::IsNotUnknown(_) => "IS TRUE / IS FALSE / IS UNKNOWN",
        SqlExpr::IsDistinctFrom(..) | SqlExpr::IsNotDistinctFrom(..) => "IS DISTINCT FROM",
        SqlExpr::ILike { .. } => "ILIKE",
        SqlExpr::SimilarTo { .. } => "SIMILAR TO",
        SqlExpr::RLike { .. } => "RLIKE / REGEXP",
        SqlExpr::AnyOp { .. } | SqlExpr::AllOp { .. } => "ANY / ALL",
        SqlExpr::Interval(_) => "INTERVAL",
        SqlExpr::TypedString(_) => "a typed literal",
        SqlExpr::Tuple(_) => "a tuple",
        SqlExpr::Array(_) => "an array",
        _ => return format!("the expression {expr}"),
    };
    name.to_owned()
}

/// The comparison at the top of `expr` (not parenthesised): its operator and operands.
fn comparison_op(expr: &SqlExpr) -> Option<(CmpOp, &SqlExpr, &SqlExpr)> {
    let SqlExpr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    let cmp = match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::NotEq,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::LtEq,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::GtEq,
        _ => return None,
    };
    Some((cmp, left, right))
}

/// Keywords of the rule language that cannot name a column unquoted.
fn is_reserved(word: &str) -> bool {
    const RESERVED: [&str; 12] = [
        "AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "LIKE", "TRUE", "FALSE", "CASE",
        "SELECT",
    ];
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}
