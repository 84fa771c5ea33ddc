//! Property tests of eligibility rules: random rules over random columns (with nulls) agree with
//! a naive row-by-row evaluator written here from `docs/semantics.md`.

#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int16Array, Int32Array,
    Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use nba_core::rules::Rule;
use nba_core::NbaError;
use proptest::prelude::*;

const NOW: i64 = 1_704_067_200_000_000;

/// The batch every random rule runs over.
#[derive(Debug, Clone)]
struct Columns {
    /// `i0` int64, `i1` int32, `i2` int16: small values, so random arithmetic cannot overflow.
    ints: [Vec<Option<i64>>; 3],
    /// `f0`: includes NaN, ±0.0 and ±inf.
    floats: Vec<Option<f64>>,
    /// `b0`.
    bools: Vec<Option<bool>>,
}

impl Columns {
    fn rows(&self) -> usize {
        self.floats.len()
    }

    fn batch(&self) -> RecordBatch {
        let [i0, i1, i2] = &self.ints;
        let narrow32: Vec<Option<i32>> = i1.iter().map(|v| v.map(|v| v as i32)).collect();
        let narrow16: Vec<Option<i16>> = i2.iter().map(|v| v.map(|v| v as i16)).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("i0", Arc::new(Int64Array::from(i0.clone()))),
            ("I1", Arc::new(Int32Array::from(narrow32))),
            ("i2", Arc::new(Int16Array::from(narrow16))),
            ("f0", Arc::new(Float64Array::from(self.floats.clone()))),
            ("b0", Arc::new(BooleanArray::from(self.bools.clone()))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }
}

fn columns() -> impl Strategy<Value = Columns> {
    (1usize..40).prop_flat_map(|rows| {
        let int = || proptest::option::weighted(0.8, -100i64..=100);
        let float = proptest::option::weighted(
            0.8,
            prop_oneof![
                4 => (-100i64..=100).prop_map(|v| v as f64),
                2 => -100.0f64..100.0,
                1 => Just(f64::NAN),
                1 => Just(-0.0),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NEG_INFINITY),
            ],
        );
        (
            proptest::collection::vec(int(), rows),
            proptest::collection::vec(int(), rows),
            proptest::collection::vec(int(), rows),
            proptest::collection::vec(float, rows),
            proptest::collection::vec(proptest::option::weighted(0.8, any::<bool>()), rows),
        )
            .prop_map(|(i0, i1, i2, floats, bools)| Columns {
                ints: [i0, i1, i2],
                floats,
                bools,
            })
    })
}

/// A numeric expression.
#[derive(Debug, Clone)]
enum Num {
    IntCol(usize),
    FloatCol,
    Int(i64),
    Float(f64),
    Null,
    Arith(char, Box<Num>, Box<Num>),
    Neg(Box<Num>),
    Coalesce(Vec<Num>),
}

/// Static types, as the binder assigns them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Float,
    Null,
}

/// A value of a numeric expression in one row.
#[derive(Debug, Clone, Copy)]
enum V {
    I(i64),
    F(f64),
}

impl V {
    fn float(self) -> f64 {
        match self {
            V::I(v) => v as f64,
            V::F(v) => v,
        }
    }
}

impl Num {
    fn sql(&self) -> String {
        match self {
            // Mixed case: unquoted names resolve case-insensitively.
            Num::IntCol(0) => "I0".to_owned(),
            Num::IntCol(1) => "i1".to_owned(),
            Num::IntCol(_) => "\"i2\"".to_owned(),
            Num::FloatCol => "f0".to_owned(),
            Num::Int(v) => v.to_string(),
            Num::Float(v) => format!("{v:?}"),
            Num::Null => "NULL".to_owned(),
            Num::Arith(op, l, r) => format!("({} {op} {})", l.sql(), r.sql()),
            Num::Neg(inner) => format!("-({})", inner.sql()),
            Num::Coalesce(args) => {
                let args: Vec<String> = args.iter().map(Num::sql).collect();
                format!("coalesce({})", args.join(", "))
            }
        }
    }

    fn ty(&self) -> Ty {
        match self {
            Num::IntCol(_) | Num::Int(_) => Ty::Int,
            Num::FloatCol | Num::Float(_) => Ty::Float,
            Num::Null => Ty::Null,
            Num::Neg(inner) => inner.ty(),
            Num::Arith(op, l, r) => match (op, l.ty(), r.ty()) {
                ('/', _, _) | (_, Ty::Float, _) | (_, _, Ty::Float) => Ty::Float,
                (_, Ty::Int, _) | (_, _, Ty::Int) => Ty::Int,
                _ => Ty::Null,
            },
            Num::Coalesce(args) => args.iter().fold(Ty::Null, |acc, a| match (acc, a.ty()) {
                (Ty::Float, _) | (_, Ty::Float) => Ty::Float,
                (Ty::Int, _) | (_, Ty::Int) => Ty::Int,
                _ => Ty::Null,
            }),
        }
    }

    fn eval(&self, c: &Columns, row: usize) -> Option<V> {
        let value = match self {
            Num::IntCol(i) => V::I(c.ints[*i][row]?),
            Num::FloatCol => V::F(c.floats[row]?),
            Num::Int(v) => V::I(*v),
            Num::Float(v) => V::F(*v),
            Num::Null => return None,
            Num::Neg(inner) => match inner.eval(c, row)? {
                V::I(v) => V::I(-v),
                V::F(v) => V::F(-v),
            },
            Num::Arith(op, l, r) => {
                let (l, r) = (l.eval(c, row)?, r.eval(c, row)?);
                match (self.ty(), l, r) {
                    (Ty::Int, V::I(l), V::I(r)) => V::I(match op {
                        '+' => l + r,
                        '-' => l - r,
                        _ => l * r,
                    }),
                    _ => {
                        let (l, r) = (l.float(), r.float());
                        V::F(match op {
                            '+' => l + r,
                            '-' => l - r,
                            '*' => l * r,
                            _ => l / r,
                        })
                    }
                }
            }
            Num::Coalesce(args) => args.iter().find_map(|a| a.eval(c, row))?,
        };
        // A COALESCE of ints and floats is a float, whichever argument wins.
        Some(match self.ty() {
            Ty::Float => V::F(value.float()),
            _ => value,
        })
    }
}

/// DuckDB's order of doubles: -0.0 = 0.0, NaN = NaN and NaN above everything.
fn duck_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn compare(op: &str, l: V, r: V) -> bool {
    let ordering = match (l, r) {
        (V::I(l), V::I(r)) => l.cmp(&r),
        _ => duck_cmp(l.float(), r.float()),
    };
    match op {
        "=" => ordering == Ordering::Equal,
        "<>" | "!=" => ordering != Ordering::Equal,
        "<" => ordering == Ordering::Less,
        "<=" => ordering != Ordering::Greater,
        ">" => ordering == Ordering::Greater,
        _ => ordering != Ordering::Less,
    }
}

/// A boolean expression.
#[derive(Debug, Clone)]
enum B {
    Col,
    Lit(Option<bool>),
    Cmp(&'static str, Num, Num),
    And(Vec<B>),
    Or(Vec<B>),
    Not(Box<B>),
    IsNull(Num, bool),
    In(Num, Vec<Num>, bool),
    Between(Num, Num, Num, bool),
}

fn not(negated: bool) -> &'static str {
    if negated {
        "NOT "
    } else {
        ""
    }
}

fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn negate_if(value: Option<bool>, negated: bool) -> Option<bool> {
    value.map(|v| v != negated)
}

impl B {
    fn sql(&self) -> String {
        match self {
            B::Col => "B0".to_owned(),
            B::Lit(Some(true)) => "TRUE".to_owned(),
            B::Lit(Some(false)) => "false".to_owned(),
            B::Lit(None) => "NULL".to_owned(),
            B::Cmp(op, l, r) => format!("{} {op} {}", l.sql(), r.sql()),
            B::And(items) => join(items, " AND "),
            B::Or(items) => join(items, " OR "),
            B::Not(inner) => format!("NOT ({})", inner.sql()),
            B::IsNull(x, negated) => format!("{} IS {}NULL", x.sql(), not(*negated)),
            B::In(x, list, negated) => {
                let list: Vec<String> = list.iter().map(Num::sql).collect();
                format!("{} {}IN ({})", x.sql(), not(*negated), list.join(", "))
            }
            B::Between(x, lo, hi, negated) => format!(
                "{} {}BETWEEN {} AND {}",
                x.sql(),
                not(*negated),
                lo.sql(),
                hi.sql()
            ),
        }
    }

    fn eval(&self, c: &Columns, row: usize) -> Option<bool> {
        let cmp = |op, l: &Num, r: &Num| Some(compare(op, l.eval(c, row)?, r.eval(c, row)?));
        match self {
            B::Col => c.bools[row],
            B::Lit(v) => *v,
            B::Cmp(op, l, r) => cmp(op, l, r),
            B::And(items) => items
                .iter()
                .map(|b| b.eval(c, row))
                .reduce(and)
                .unwrap_or(Some(true)),
            B::Or(items) => items
                .iter()
                .map(|b| b.eval(c, row))
                .reduce(or)
                .unwrap_or(Some(false)),
            B::Not(inner) => inner.eval(c, row).map(|v| !v),
            B::IsNull(x, negated) => Some(x.eval(c, row).is_none() != *negated),
            B::In(x, list, negated) => {
                let any = list
                    .iter()
                    .map(|item| cmp("=", x, item))
                    .reduce(or)
                    .unwrap_or(Some(false));
                negate_if(any, *negated)
            }
            B::Between(x, lo, hi, negated) => {
                negate_if(and(cmp(">=", x, lo), cmp("<=", x, hi)), *negated)
            }
        }
    }
}

fn join(items: &[B], separator: &str) -> String {
    let items: Vec<String> = items.iter().map(|b| format!("({})", b.sql())).collect();
    items.join(separator)
}

fn num() -> impl Strategy<Value = Num> {
    let leaf = prop_oneof![
        4 => (0usize..3).prop_map(Num::IntCol),
        2 => Just(Num::FloatCol),
        2 => (-100i64..=100).prop_map(Num::Int),
        1 => prop_oneof![Just(0.0), Just(-0.0), Just(0.5), Just(-2.5), Just(100.0)].prop_map(Num::Float),
        1 => Just(Num::Null),
    ];
    // Depth 3 keeps products of at most 8 values of at most 100: no int64 overflow.
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            4 => (prop_oneof![Just('+'), Just('-'), Just('*'), Just('/')], inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| Num::Arith(op, Box::new(l), Box::new(r))),
            1 => inner.clone().prop_map(|n| Num::Neg(Box::new(n))),
            1 => proptest::collection::vec(inner, 1..4).prop_map(Num::Coalesce),
        ]
    })
}

fn boolean() -> impl Strategy<Value = B> {
    let op = prop_oneof![
        Just("="),
        Just("<>"),
        Just("!="),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">=")
    ];
    let leaf = prop_oneof![
        1 => Just(B::Col),
        1 => proptest::option::of(any::<bool>()).prop_map(B::Lit),
        6 => (op, num(), num()).prop_map(|(op, l, r)| B::Cmp(op, l, r)),
        2 => (num(), any::<bool>()).prop_map(|(x, n)| B::IsNull(x, n)),
        2 => (num(), proptest::collection::vec(num(), 1..4), any::<bool>())
            .prop_map(|(x, list, n)| B::In(x, list, n)),
        2 => (num(), num(), num(), any::<bool>()).prop_map(|(x, lo, hi, n)| B::Between(x, lo, hi, n)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            2 => proptest::collection::vec(inner.clone(), 2..4).prop_map(B::And),
            2 => proptest::collection::vec(inner.clone(), 2..4).prop_map(B::Or),
            1 => inner.prop_map(|b| B::Not(Box::new(b))),
        ]
    })
}

fn evaluate(rule: &str, batch: &RecordBatch) -> Result<Vec<Option<bool>>, NbaError> {
    let bound = Rule::parse(rule)?.bind(&batch.schema())?;
    Ok(bound.evaluate(batch, NOW)?.iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rules_agree_with_a_row_by_row_evaluator(c in columns(), rule in boolean()) {
        let sql = rule.sql();
        let batch = c.batch();
        let got = evaluate(&sql, &batch).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        let expected: Vec<Option<bool>> = (0..c.rows()).map(|row| rule.eval(&c, row)).collect();
        prop_assert_eq!(got, expected, "{}", sql);
    }

    #[test]
    fn evaluation_does_not_depend_on_batch_boundaries(c in columns(), rule in boolean(), cut in 0usize..40) {
        let sql = rule.sql();
        let batch = c.batch();
        let cut = cut.min(batch.num_rows());
        let whole = evaluate(&sql, &batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut parts = evaluate(&sql, &batch.slice(0, cut)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        parts.extend(evaluate(&sql, &batch.slice(cut, batch.num_rows() - cut)).map_err(|e| TestCaseError::fail(e.to_string()))?);
        prop_assert_eq!(whole, parts, "{}", sql);
    }

    #[test]
    fn integer_overflow_is_an_error_exactly_when_a_row_overflows(
        pairs in proptest::collection::vec(
            (proptest::option::weighted(0.8, any::<i64>()), proptest::option::weighted(0.8, any::<i64>())),
            1..20,
        ),
        op in prop_oneof![Just('+'), Just('-'), Just('*')],
    ) {
        let (a, b): (Vec<_>, Vec<_>) = pairs.iter().copied().unzip();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("a", Arc::new(Int64Array::from(a.clone()))),
            ("b", Arc::new(Int64Array::from(b.clone()))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let sql = format!("a {op} b > 0");
        let checked = |l: i64, r: i64| match op {
            '+' => l.checked_add(r),
            '-' => l.checked_sub(r),
            _ => l.checked_mul(r),
        };
        let expected: Option<Vec<Option<bool>>> = a
            .iter()
            .zip(&b)
            .map(|(l, r)| match (l, r) {
                (Some(l), Some(r)) => checked(*l, *r).map(|v| Some(v > 0)),
                _ => Some(None),
            })
            .collect();
        match (evaluate(&sql, &batch), expected) {
            (Ok(got), Some(expected)) => prop_assert_eq!(got, expected),
            (Err(NbaError::Data(message)), None) => {
                prop_assert!(message.contains("integer overflow"), "{}", message)
            }
            (got, expected) => prop_assert!(false, "{}: got {:?}, expected {:?}", sql, got, expected),
        }
    }

    #[test]
    fn like_agrees_with_a_naive_matcher(
        strings in proptest::collection::vec(proptest::option::weighted(0.9, "[ab%_\\\\é\n']{0,6}"), 1..20),
        pattern in "[ab%_\\\\é\n']{0,5}",
        fill in proptest::option::weighted(0.3, "[ab%_\\\\é\n']{0,3}"),
        string_type in 0usize..4,
        negated in any::<bool>(),
    ) {
        let column: ArrayRef = match string_type {
            0 => Arc::new(StringArray::from(strings.clone())),
            1 => Arc::new(LargeStringArray::from(strings.clone())),
            2 => Arc::new(StringViewArray::from(strings.clone())),
            _ => Arc::new(strings.iter().map(|s| s.as_deref()).collect::<DictionaryArray<Int32Type>>()),
        };
        let data_type = column.data_type().clone();
        let batch = RecordBatch::try_from_iter(vec![("s", column)]).unwrap();
        // `COALESCE(s, fill)` in place of `s` when there is a fill.
        let (x, values): (String, Vec<Option<String>>) = match &fill {
            Some(f) => (
                format!("COALESCE(s, '{}')", f.replace('\'', "''")),
                strings.iter().map(|s| Some(s.clone().unwrap_or_else(|| f.clone()))).collect(),
            ),
            None => ("s".to_owned(), strings.clone()),
        };
        let sql = format!("{x} {}LIKE '{}'", not(negated), pattern.replace('\'', "''"));
        let pattern: Vec<char> = pattern.chars().collect();
        let expected: Vec<Option<bool>> = values
            .iter()
            .map(|s| s.as_ref().map(|s| like(&s.chars().collect::<Vec<_>>(), &pattern) != negated))
            .collect();
        let got = evaluate(&sql, &batch).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        prop_assert_eq!(got, expected, "{:?} over {}", sql, data_type);
    }

    #[test]
    fn string_equality_and_in_lists_agree_with_sql(
        strings in proptest::collection::vec(proptest::option::weighted(0.85, a_string()), 1..40),
        items in proptest::collection::vec(proptest::option::weighted(0.85, a_string()), 1..6),
        fill in proptest::option::of(a_string()),
        skip in 0usize..3,
        layout in 0usize..4,
        form in 0usize..4,
        negated in any::<bool>(),
    ) {
        // Sliced, so the kernels meet arrays whose offsets do not start at zero.
        let skip = skip.min(strings.len() - 1);
        let column = string_column(&strings, layout).slice(skip, strings.len() - skip);
        let strings = &strings[skip..];
        let batch = RecordBatch::try_from_iter(vec![("s", column)]).unwrap();
        // `COALESCE(s, fill)` in place of `s` when there is a fill.
        let (x, values): (String, Vec<Option<String>>) = match &fill {
            Some(f) => (
                format!("COALESCE(s, '{f}')"),
                strings.iter().map(|s| Some(s.clone().unwrap_or_else(|| f.clone()))).collect(),
            ),
            None => ("s".to_owned(), strings.to_vec()),
        };
        let list = items.iter().map(quoted).collect::<Vec<_>>().join(", ");
        let (sql, expected): (String, Vec<Option<bool>>) = match form {
            0 | 1 => (
                format!("{x} {}IN ({list})", not(negated)),
                values.iter().map(|v| in_list(v.as_deref(), &items).map(|b| b != negated)).collect(),
            ),
            2 => (
                format!("{x} {} {}", if negated { "<>" } else { "=" }, quoted(&items[0])),
                values
                    .iter()
                    .map(|v| Some(v.as_deref()? == items[0].as_deref()? ).map(|b| b != negated))
                    .collect(),
            ),
            _ => (
                // The constant on the left.
                format!("{} {} {x}", quoted(&items[0]), if negated { "<>" } else { "=" }),
                values
                    .iter()
                    .map(|v| Some(v.as_deref()? == items[0].as_deref()?).map(|b| b != negated))
                    .collect(),
            ),
        };
        let got = evaluate(&sql, &batch).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        prop_assert_eq!(got, expected, "{} (layout {})", sql, layout);
    }
}

/// A string column of `layout` (0 utf8, 1 large utf8, 2 utf8 view, 3 dictionary).
fn string_column(strings: &[Option<String>], layout: usize) -> ArrayRef {
    match layout {
        0 => Arc::new(StringArray::from(strings.to_vec())),
        1 => Arc::new(LargeStringArray::from(strings.to_vec())),
        2 => Arc::new(StringViewArray::from(strings.to_vec())),
        _ => Arc::new(
            strings
                .iter()
                .map(|s| s.as_deref())
                .collect::<DictionaryArray<Int32Type>>(),
        ),
    }
}

/// Short codes, the empty string, long values past 8 and 16 bytes: each path of the string
/// kernels.
fn a_string() -> impl Strategy<Value = String> {
    "(CA|NY|CAL|a|é|[ab]{0,3}|abcdefgh|abcdefghi|customer\\.[0-9]{1,9}@x\\.com)"
}

fn quoted(s: &Option<String>) -> String {
    s.as_ref().map_or("NULL".to_owned(), |s| format!("'{s}'"))
}

/// `x IN (items)` as SQL has it: NULL for a NULL `x`, and for a miss when a NULL is listed.
fn in_list(x: Option<&str>, items: &[Option<String>]) -> Option<bool> {
    let x = x?;
    if items.iter().any(|i| i.as_deref() == Some(x)) {
        Some(true)
    } else if items.iter().any(Option::is_none) {
        None
    } else {
        Some(false)
    }
}

/// SQL LIKE without escape: `%` any run of characters, `_` one character, the rest literal.
fn like(s: &[char], p: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('%', rest)) => (0..=s.len()).any(|i| like(&s[i..], rest)),
        Some(('_', rest)) => !s.is_empty() && like(&s[1..], rest),
        Some((c, rest)) => s.first() == Some(c) && like(&s[1..], rest),
    }
}
