//! Parsing: the subset accepted, everything else refused with a message naming it.

use super::*;

fn parse_error(rule: &str) -> String {
    match Rule::parse(rule) {
        Err(NbaError::Rule(message)) => message,
        other => panic!("{rule}: expected a rule error, got {other:?}"),
    }
}

#[test]
fn empty_and_true_rules_are_always_true() {
    for source in ["", "   ", "\n\t", "TRUE", "true", " (TRUE) "] {
        let rule = Rule::parse(source).unwrap();
        assert!(rule.is_always_true(), "{source:?}");
        assert_eq!(rule.source(), source);
    }
    assert!(Rule::always_true().is_always_true());
    for source in ["FALSE", "1 = 1", "NOT FALSE", "TRUE AND TRUE", "x"] {
        assert!(!Rule::parse(source).unwrap().is_always_true(), "{source:?}");
    }
    // An empty rule evaluates to TRUE too, should a caller not skip it.
    assert_eq!(eval("", &one_row()), vec![T]);
}

#[test]
fn rules_are_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<X: Send + Sync>() {}
    assert_send_sync::<Rule>();
    assert_send_sync::<super::super::BoundRule>();
    let rule = Rule::parse("x > 1").unwrap();
    let copy = rule.clone();
    assert!(std::ptr::eq(rule.source(), copy.source()));
}

#[test]
fn syntax_errors_quote_the_rule() {
    let message = parse_error("age >=");
    assert!(
        message.starts_with("rule \"age >=\": syntax error"),
        "{message}"
    );
    let message = parse_error("age > 1 age");
    assert!(
        message.contains("unexpected age after the expression"),
        "{message}"
    );
    assert!(parse_error("age > 1;").contains("unexpected ;"));
    assert!(parse_error("(age > 1").contains("syntax error"));
    assert!(parse_error("'open").contains("syntax error"));
    assert!(parse_error("x IN ()").starts_with("rule \"x IN ()\": "));
}

#[test]
fn unsupported_constructs_are_named() {
    let cases = [
        ("x IN (SELECT 1)", "a subquery is not supported"),
        ("EXISTS (SELECT 1)", "a subquery is not supported"),
        ("(SELECT 1) = 1", "a subquery is not supported"),
        ("foo(x) = 1", "function foo() is not supported"),
        ("lower(s) = 'a'", "function lower() is not supported"),
        ("CASE WHEN x THEN 1 END = 1", "CASE is not supported"),
        ("CAST(x AS INT) = 1", "CAST is not supported"),
        ("x::int = 1", "CAST is not supported"),
        ("x % 2 = 0", "operator % is not supported"),
        ("s || 'a' = 'b'", "operator || is not supported"),
        ("s ILIKE 'a%'", "ILIKE is not supported"),
        (
            "s LIKE 'a%' ESCAPE '!'",
            "LIKE with ESCAPE or ANY is not supported",
        ),
        ("s LIKE t", "the LIKE pattern must be a string literal"),
        (
            "x IS TRUE",
            "IS TRUE / IS FALSE / IS UNKNOWN is not supported",
        ),
        ("x IS DISTINCT FROM 1", "IS DISTINCT FROM is not supported"),
        ("t.x = 1", "the qualified name t.x is not supported"),
        ("x = DATE '2024-01-01'", "a typed literal is not supported"),
        ("x = INTERVAL '1 day'", "INTERVAL is not supported"),
        ("count(DISTINCT x) > 1", "function count() is not supported"),
        ("coalesce(DISTINCT x) > 1", "is not supported"),
        ("coalesce(x) OVER () > 1", "is not supported"),
        (
            "days_since(x, y) > 1",
            "days_since takes one argument, got 2",
        ),
        ("days_since() > 1", "days_since takes one argument, got 0"),
        ("coalesce() > 1", "COALESCE needs at least one argument"),
        ("x = ?", "the literal ? is not supported"),
        (
            "x = 99999999999999999999",
            "number 99999999999999999999 is out of range",
        ),
        ("~x = 1", "operator ~ is not supported"),
    ];
    for (rule, expected) in cases {
        let message = parse_error(rule);
        let prefix = format!("rule {rule:?}: ");
        assert!(message.starts_with(&prefix), "{rule}: {message}");
        assert!(message.contains(expected), "{rule}: {message}");
    }
}

#[test]
fn function_names_ignore_case() {
    for rule in [
        "COALESCE(x, 1) = 1",
        "Coalesce(x) = 1",
        "DAYS_SINCE(t) > 1",
        "Days_Since(t) > 1",
    ] {
        Rule::parse(rule).unwrap();
    }
}

#[test]
fn long_chains_are_flat_and_deep_nesting_is_an_error() {
    let chain = vec!["x = 1"; 2_000].join(" OR ");
    assert_eq!(eval(&chain, &one_row()), vec![T]);
    let chain = vec!["x = 1"; 2_000].join(" AND ");
    assert_eq!(eval(&chain, &one_row()), vec![T]);
    // A long left-deep arithmetic chain is refused before anything recurses that deep.
    let sum = format!("{} > 0", vec!["x"; 1_000].join(" + "));
    assert!(parse_error(&sum).contains("nests too deeply"));
    let nested = format!("{}x{} > 0", "(".repeat(200), ")".repeat(200));
    assert!(parse_error(&nested).contains("nests too deeply"));
}

#[test]
fn extreme_integer_literals() {
    assert_eq!(constant("-9223372036854775808 < 0"), T);
    assert_eq!(constant("9223372036854775807 > 0"), T);
    assert!(parse_error("x > 9223372036854775808").contains("out of range"));
    assert!(parse_error("x > -9223372036854775809").contains("out of range"));
}

#[test]
fn number_literals() {
    assert_eq!(constant("1e3 = 1000"), T);
    assert_eq!(constant("1.5 * 2 = 3"), T);
    assert_eq!(constant(".5 = 0.5"), T);
    assert_eq!(constant("2.5E-1 = 0.25"), T);
    assert_eq!(constant("+3 = 3"), T);
    assert_eq!(constant("-(3) = -3"), T);
    assert_eq!(constant("- 3 = -3"), T);
}

#[test]
fn string_literals_double_their_quotes_and_keep_backslashes() {
    let b = batch(vec![(
        "s",
        array(arrow_array::StringArray::from(vec!["it's", "a\\b", "x"])),
    )]);
    assert_eq!(eval("s = 'it''s'", &b), vec![T, F, F]);
    assert_eq!(eval("s = 'a\\b'", &b), vec![F, T, F]);
}

#[test]
fn comparisons_do_not_chain_but_predicates_compare() {
    for chained in ["1 = 1 = 2", "1 < 2 = TRUE", "age = 1 = 2"] {
        let err = Rule::parse(chained)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("chain"), "{chained}: {err}");
    }
    // Parenthesised, a comparison is an operand like any other.
    assert!(Rule::parse("(1 < 2) = TRUE").is_ok());
    for predicate in [
        "'a' LIKE 'a' = TRUE",
        "1 IN (1) = TRUE",
        "2 BETWEEN 1 AND 3 = TRUE",
    ] {
        let rule = Rule::parse(predicate).unwrap();
        let schema = arrow_schema::Schema::empty();
        let batch = arrow_array::RecordBatch::new_empty(std::sync::Arc::new(schema.clone()));
        let bound = rule.bind(&schema).unwrap();
        assert_eq!(bound.evaluate(&batch, 0).unwrap().len(), 0, "{predicate}");
    }
}

#[test]
fn predicates_bind_tighter_than_a_comparison_on_their_left() {
    // DuckDB: `TRUE = 2 IN (1)` is `TRUE = (2 IN (1))`, FALSE; sqlparser alone reads
    // `(TRUE = 2) IN (1)`, a type error. Found by the caps property test.
    use arrow_array::Array;
    let cases = [
        ("TRUE = 2 IN (1)", false),
        ("FALSE = 2 IN (1)", true),
        ("TRUE = 2 BETWEEN 1 AND 3", true),
        ("FALSE = 'b' LIKE 'a'", true),
        ("TRUE = 2 NOT IN (1)", true),
    ];
    let schema = arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "x",
        arrow_schema::DataType::Int64,
        false,
    )]);
    let batch = arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(schema.clone()),
        vec![std::sync::Arc::new(arrow_array::Int64Array::from(vec![1]))],
    )
    .unwrap();
    for (rule, expected) in cases {
        let bound = Rule::parse(rule).unwrap().bind(&schema).unwrap();
        let mask = bound.evaluate(&batch, 0).unwrap();
        assert!(mask.is_valid(0), "{rule}");
        assert_eq!(mask.value(0), expected, "{rule}");
    }
    let err = Rule::parse("1 = 1 = 2 IN (1)")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("chain"), "{err}");
}

#[test]
fn duckdb_spellings_are_accepted() {
    // DuckDB reads `==` as `=` and a float literal beyond f64's range as ±inf.
    assert!(Rule::parse("1 == 1").is_ok());
    assert!(Rule::parse("1e400 > 1 AND -1e400 < 1").is_ok());
}
