//! Binding: column resolution and type checking, with messages naming the column.

use arrow_array::{
    BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array, NullArray, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};

use super::*;

fn customers() -> RecordBatch {
    batch(vec![
        (
            "age",
            array(Int32Array::from(vec![Some(17), Some(30), None])),
        ),
        (
            "score",
            array(Float64Array::from(vec![Some(0.5), None, Some(2.0)])),
        ),
        (
            "state",
            array(StringArray::from(vec![Some("CA"), Some("NY"), None])),
        ),
        (
            "vip",
            array(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        (
            "signup",
            array(TimestampMicrosecondArray::from(vec![
                Some(0),
                None,
                Some(NOW),
            ])),
        ),
    ])
}

#[test]
fn unknown_column_is_named() {
    assert_eq!(
        rule_error("age >= 18 AND foo = 1", &customers()),
        "rule \"age >= 18 AND foo = 1\": unknown column \"foo\""
    );
    assert_eq!(
        rule_error("\"AGE\" > 1", &customers()),
        "rule \"\\\"AGE\\\" > 1\": unknown column \"AGE\""
    );
}

#[test]
fn type_mismatches_name_the_column_and_the_types() {
    let b = customers();
    let cases = [
        (
            "state = 5",
            "cannot compare string column \"state\" with integer 5",
        ),
        (
            "5 = state",
            "cannot compare integer 5 with string column \"state\"",
        ),
        (
            "age = 'x'",
            "cannot compare integer column \"age\" with string 'x'",
        ),
        (
            "vip = 1",
            "cannot compare boolean column \"vip\" with integer 1",
        ),
        (
            "signup > 5",
            "cannot compare timestamp column \"signup\" with integer 5",
        ),
        (
            "signup > '2024-01-01'",
            "cannot compare timestamp column \"signup\" with string",
        ),
        (
            "state IN ('CA', 1)",
            "cannot compare string column \"state\" with integer 1",
        ),
        (
            "age BETWEEN 1 AND 'z'",
            "cannot compare integer column \"age\" with string 'z'",
        ),
        (
            "age + 1 = 'a'",
            "cannot compare integer expression age + 1 with string 'a'",
        ),
        ("state + 1 > 0", "cannot apply + to string column \"state\""),
        ("-state = 'a'", "cannot negate string column \"state\""),
        ("+vip", "unary + needs a number, got boolean column \"vip\""),
        (
            "age AND vip",
            "AND needs boolean operands, got integer column \"age\"",
        ),
        (
            "vip OR score",
            "OR needs boolean operands, got float column \"score\"",
        ),
        (
            "NOT state",
            "NOT needs boolean operands, got string column \"state\"",
        ),
        (
            "age LIKE '1%'",
            "LIKE needs a string, got integer column \"age\"",
        ),
        (
            "days_since(age) > 1",
            "days_since needs a timestamp or date, got integer column",
        ),
        (
            "COALESCE(age, state) = 1",
            "COALESCE arguments must have one type, got integer",
        ),
        (
            "age",
            "the rule must be boolean, got integer column \"age\"",
        ),
        (
            "age + 1",
            "the rule must be boolean, got integer expression age + 1",
        ),
        ("'yes'", "the rule must be boolean, got string 'yes'"),
        (
            "days_since(signup)",
            "the rule must be boolean, got float expression",
        ),
    ];
    for (rule, expected) in cases {
        let message = rule_error(rule, &b);
        assert!(
            message.starts_with(&format!("rule {rule:?}: ")),
            "{message}"
        );
        assert!(message.contains(expected), "{rule}: {message}");
    }
}

#[test]
fn unquoted_names_match_case_insensitively_when_unique() {
    let b = customers();
    assert_eq!(eval("AGE >= 18", &b), eval("age >= 18", &b));
    assert_eq!(eval("Age >= 18", &b), vec![F, T, N]);
    assert_eq!(eval("\"age\" >= 18", &b), vec![F, T, N]);
    // An exact match wins over case-insensitive ones.
    let b = batch(vec![
        ("Age", array(Int64Array::from(vec![1]))),
        ("age", array(Int64Array::from(vec![2]))),
        ("AGE", array(Int64Array::from(vec![3]))),
    ]);
    assert_eq!(eval("age = 2", &b), vec![T]);
    assert_eq!(eval("\"AGE\" = 3", &b), vec![T]);
    let message = rule_error("aGe = 2", &b);
    assert!(message.contains("column \"aGe\" is ambiguous"), "{message}");
    assert!(message.contains("\"Age\", \"age\", \"AGE\""), "{message}");
    // A quoted name matches exactly only.
    assert!(rule_error("\"aGe\" = 2", &b).contains("unknown column \"aGe\""));
}

#[test]
fn non_ascii_names_match_case_insensitively() {
    let b = batch(vec![("Straße", array(Int64Array::from(vec![1])))]);
    assert_eq!(eval("STRAßE = 1", &b), vec![T]);
    assert_eq!(eval("straße = 1", &b), vec![T]);
}

#[test]
fn unsupported_column_types_are_rule_errors() {
    let decimals = Decimal128Array::from(vec![1])
        .with_precision_and_scale(10, 2)
        .unwrap();
    let b = batch(vec![
        ("amount", array(decimals)),
        ("nothing", array(NullArray::new(1))),
    ]);
    let message = rule_error("amount > 1", &b);
    assert_eq!(
        message,
        "rule \"amount > 1\": column \"amount\" has type Decimal128(10, 2), which rules cannot use"
    );
    // A column of Arrow's null type is all NULL, like the NULL literal.
    assert_eq!(eval("nothing IS NULL AND nothing + 1 IS NULL", &b), vec![T]);
    assert_eq!(eval("nothing = 1", &b), vec![N]);
    // Unreferenced columns of any type are fine.
    assert_eq!(eval("TRUE AND 1 = 1", &b), vec![T]);
}

#[test]
fn evaluating_a_batch_of_another_schema_is_an_error_not_a_panic() {
    let schema = Schema::new(vec![Field::new("age", DataType::Int64, true)]);
    let bound = Rule::parse("age > 1").unwrap().bind(&schema).unwrap();
    let other = batch(vec![("age", array(StringArray::from(vec!["x"])))]);
    match bound.evaluate(&other, NOW) {
        Err(NbaError::Schema(message)) => assert!(message.contains("\"age\""), "{message}"),
        other => panic!("{other:?}"),
    }
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    assert!(bound.evaluate(&empty, NOW).is_err());
}

#[test]
fn bound_rule_reuses_one_schema_for_many_batches() {
    let b = customers();
    let bound = Rule::parse("age >= 18 AND state = 'NY'")
        .unwrap()
        .bind(&b.schema())
        .unwrap();
    assert_eq!(bound.source(), "age >= 18 AND state = 'NY'");
    let all: Vec<_> = bound.evaluate(&b, NOW).unwrap().iter().collect();
    assert_eq!(all, vec![F, T, N]);
    let tail: Vec<_> = bound
        .evaluate(&b.slice(1, 2), NOW)
        .unwrap()
        .iter()
        .collect();
    assert_eq!(tail, vec![T, N]);
    let none = bound.evaluate(&b.slice(0, 0), NOW).unwrap();
    assert_eq!(none.len(), 0);
}

#[test]
fn bare_boolean_column_and_null_rules() {
    let b = customers();
    assert_eq!(eval("vip", &b), vec![T, F, N]);
    assert_eq!(eval("NOT vip", &b), vec![F, T, N]);
    assert_eq!(eval("NULL", &b), vec![N, N, N]);
    assert_eq!(eval("FALSE", &b), vec![F, F, F]);
    assert_eq!(eval("TRUE", &b), vec![T, T, T]);
    assert_eq!(eval("NULL + 1 > 0", &b), vec![N, N, N]);
}

#[test]
fn rules_over_one_batch_share_its_normalised_columns_only_where_types_agree() {
    use crate::rules::BatchColumns;
    let narrow = batch(vec![(
        "age",
        array(Int32Array::from(vec![Some(17), Some(40), None])),
    )]);
    let teen = Rule::parse("age < 18")
        .unwrap()
        .bind(&narrow.schema())
        .unwrap();
    let adult = Rule::parse("age >= 18")
        .unwrap()
        .bind(&narrow.schema())
        .unwrap();
    let mut loaded = BatchColumns::default();
    let first: Vec<_> = teen
        .evaluate_with(&narrow, NOW, &mut loaded)
        .unwrap()
        .iter()
        .collect();
    let second: Vec<_> = adult
        .evaluate_with(&narrow, NOW, &mut loaded)
        .unwrap()
        .iter()
        .collect();
    assert_eq!((first, second), (vec![T, F, N], vec![F, T, N]));
    // A rule bound to another type of `age` reads the batch afresh, and says what is wrong.
    let wide = Schema::new(vec![Field::new("age", DataType::Int64, true)]);
    let other = Rule::parse("age > 1").unwrap().bind(&wide).unwrap();
    match other.evaluate_with(&narrow, NOW, &mut loaded) {
        Err(NbaError::Schema(message)) => assert!(message.contains("\"age\""), "{message}"),
        result => panic!("{result:?}"),
    }
}
