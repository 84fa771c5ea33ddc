//! Three-valued logic: AND / OR / NOT, IN, BETWEEN, IS NULL, LIKE.

use arrow_array::types::Int32Type;
use arrow_array::{BooleanArray, DictionaryArray, LargeStringArray, StringArray, StringViewArray};

use super::*;

/// Every pair of (TRUE, FALSE, NULL) as columns `a`, `b`.
fn pairs() -> RecordBatch {
    let values = [T, F, N];
    let a: Vec<_> = values
        .iter()
        .flat_map(|&a| values.iter().map(move |_| a))
        .collect();
    let b: Vec<_> = values.iter().flat_map(|_| values.iter().copied()).collect();
    batch(vec![
        ("a", array(BooleanArray::from(a))),
        ("b", array(BooleanArray::from(b))),
    ])
}

#[test]
fn kleene_truth_tables() {
    let b = pairs();
    // a: T T T F F F N N N; b: T F N T F N T F N
    assert_eq!(eval("a AND b", &b), vec![T, F, N, F, F, F, N, F, N]);
    assert_eq!(eval("a OR b", &b), vec![T, T, T, T, F, N, T, N, N]);
    assert_eq!(eval("NOT a", &b), vec![F, F, F, T, T, T, N, N, N]);
    assert_eq!(eval("NOT (a AND b)", &b), eval("NOT a OR NOT b", &b));
    assert_eq!(eval("a AND NULL", &b), vec![N, N, N, F, F, F, N, N, N]);
    assert_eq!(eval("a OR NULL", &b), vec![T, T, T, N, N, N, N, N, N]);
    assert_eq!(eval("a AND TRUE AND b", &b), eval("a AND b", &b));
    assert_eq!(eval("a = b", &b), vec![T, F, N, F, T, N, N, N, N]);
    assert_eq!(eval("a < b", &b), vec![F, F, N, T, F, N, N, N, N]);
    assert_eq!(eval("a IS NULL", &b), vec![F, F, F, F, F, F, T, T, T]);
    assert_eq!(
        eval("a IS NOT NULL OR b IS NULL", &b),
        vec![T, T, T, T, T, T, F, F, T]
    );
}

#[test]
fn constant_logic() {
    assert_eq!(constant("NULL AND FALSE"), F);
    assert_eq!(constant("NULL OR TRUE"), T);
    assert_eq!(constant("NOT NULL"), N);
    assert_eq!(constant("NULL AND TRUE"), N);
    assert_eq!(constant("NULL = NULL"), N);
    assert_eq!(constant("NULL IS NULL"), T);
    assert_eq!(constant("NULL IS NOT NULL"), F);
    assert_eq!(constant("1 IS NULL"), F);
    assert_eq!(constant("FALSE < TRUE"), T);
    assert_eq!(constant("'a' < 'b' AND 'B' < 'a'"), T);
}

fn ints() -> RecordBatch {
    batch(vec![(
        "x",
        array(arrow_array::Int64Array::from(vec![
            Some(1),
            Some(5),
            None,
            Some(10),
        ])),
    )])
}

#[test]
fn in_lists_with_nulls() {
    let b = ints();
    assert_eq!(eval("x IN (1, 10)", &b), vec![T, F, N, T]);
    assert_eq!(eval("x NOT IN (1, 10)", &b), vec![F, T, N, F]);
    assert_eq!(eval("x IN (1, NULL)", &b), vec![T, N, N, N]);
    assert_eq!(eval("x NOT IN (1, NULL)", &b), vec![F, N, N, N]);
    assert_eq!(eval("x IN (NULL)", &b), vec![N, N, N, N]);
    assert_eq!(eval("NULL IN (1, 2)", &b), vec![N, N, N, N]);
    assert_eq!(eval("x IN (1.0, 5.5, 10)", &b), vec![T, F, N, T]);
    assert_eq!(eval("x IN (x, 3)", &b), vec![T, T, N, T]);
    assert_eq!(eval("5 IN (x)", &b), vec![F, T, N, F]);
    assert_eq!(eval("x + 0 IN (5)", &b), vec![F, T, N, F]);
}

#[test]
fn between_with_nulls() {
    let b = ints();
    assert_eq!(eval("x BETWEEN 1 AND 5", &b), vec![T, T, N, F]);
    assert_eq!(eval("x NOT BETWEEN 1 AND 5", &b), vec![F, F, N, T]);
    assert_eq!(eval("x BETWEEN 2 AND NULL", &b), vec![F, N, N, N]);
    assert_eq!(eval("x NOT BETWEEN 2 AND NULL", &b), vec![T, N, N, N]);
    assert_eq!(eval("x BETWEEN NULL AND 5", &b), vec![N, N, N, F]);
    assert_eq!(eval("x BETWEEN 0.5 AND 5.0", &b), vec![T, T, N, F]);
    assert_eq!(eval("x BETWEEN 5 AND 1", &b), vec![F, F, N, F]);
    assert_eq!(eval("NULL BETWEEN 1 AND 2", &b), vec![N, N, N, N]);
}

fn words() -> Vec<Option<&'static str>> {
    vec![
        Some("apple"),
        Some("Apple"),
        Some("a_c"),
        Some("a\\_c"),
        Some("a\\xc"),
        Some("a\nc"),
        Some("é"),
        Some(""),
        Some("50%"),
        None,
    ]
}

#[test]
fn like_wildcards_backslashes_and_case() {
    let string_types: Vec<ArrayRef> = vec![
        array(StringArray::from(words())),
        array(LargeStringArray::from(words())),
        array(StringViewArray::from(words())),
        array(words().into_iter().collect::<DictionaryArray<Int32Type>>()),
    ];
    for column in string_types {
        let data_type = column.data_type().clone();
        let b = batch(vec![("s", column)]);
        let like = |pattern: &str| eval(&format!("s LIKE '{pattern}'"), &b);
        let expected = |truths: &[usize]| -> Vec<Option<bool>> {
            (0..10)
                .map(|i| if i == 9 { N } else { Some(truths.contains(&i)) })
                .collect()
        };
        assert_eq!(like("a%"), expected(&[0, 2, 3, 4, 5]), "{data_type}");
        assert_eq!(like("%e"), expected(&[0, 1]), "{data_type}");
        assert_eq!(like("%pl%"), expected(&[0, 1]), "{data_type}");
        assert_eq!(like("apple"), expected(&[0]), "{data_type}");
        assert_eq!(like("a_c"), expected(&[2, 5]), "{data_type}");
        assert_eq!(like("a\\_c"), expected(&[3, 4]), "{data_type}");
        assert_eq!(like("a\\%"), expected(&[3, 4]), "{data_type}");
        assert_eq!(like("_"), expected(&[6]), "{data_type}");
        assert_eq!(
            like("%"),
            expected(&[0, 1, 2, 3, 4, 5, 6, 7, 8]),
            "{data_type}"
        );
        assert_eq!(like(""), expected(&[7]), "{data_type}");
        assert_eq!(like("%\\%"), expected(&[3, 4]), "{data_type}");
        assert_eq!(like("%\\"), expected(&[]), "{data_type}");
        assert_eq!(like("50%"), expected(&[8]), "{data_type}");
        assert_eq!(like("%.%"), expected(&[]), "{data_type}");
        let not_like = eval("s NOT LIKE 'a%'", &b);
        assert_eq!(not_like, expected(&[1, 6, 7, 8]), "{data_type}");
    }
    assert_eq!(constant("NULL LIKE 'a%'"), N);
    assert_eq!(constant("'abc' LIKE 'a%'"), T);
    assert_eq!(constant("'a\\b' LIKE 'a\\b'"), T);
}

#[test]
fn string_comparisons_across_string_types() {
    let b = batch(vec![
        (
            "small",
            array(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
                Some("é"),
            ])),
        ),
        (
            "large",
            array(LargeStringArray::from(vec![
                Some("a"),
                Some("a"),
                Some("c"),
                Some("z"),
            ])),
        ),
        (
            "view",
            array(StringViewArray::from(vec![
                Some("b"),
                Some("b"),
                Some("c"),
                None,
            ])),
        ),
        (
            "dict",
            array(
                vec![Some("a"), None, Some("c"), Some("é")]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ),
    ]);
    assert_eq!(eval("small = large", &b), vec![T, F, N, F]);
    assert_eq!(eval("small < view", &b), vec![T, F, N, N]);
    assert_eq!(eval("dict = small", &b), vec![T, N, N, T]);
    assert_eq!(eval("dict = large", &b), vec![T, N, T, F]);
    assert_eq!(eval("dict <> view", &b), vec![T, N, F, N]);
    assert_eq!(eval("dict IN ('c', 'é')", &b), vec![F, N, T, T]);
    assert_eq!(eval("'c' IN (dict, large, view)", &b), vec![F, N, T, N]);
    assert_eq!(eval("large > 'b'", &b), vec![F, F, T, T]);
    // Byte order: 'é' (0xC3 0xA9) sorts after 'z'.
    assert_eq!(eval("small > 'z'", &b), vec![F, F, N, T]);
    assert_eq!(eval("view BETWEEN 'a' AND large", &b), vec![F, F, T, N]);
}
