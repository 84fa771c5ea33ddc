//! Values: int / float arithmetic, division, overflow, float comparisons, COALESCE, column types,
//! timestamps, dates and days_since.

use arrow_array::types::Int32Type;
use arrow_array::{
    BooleanArray, Date32Array, Date64Array, DictionaryArray, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_buffer::NullBuffer;

use super::*;

fn numbers() -> RecordBatch {
    batch(vec![
        (
            "x",
            array(Int64Array::from(vec![Some(1), Some(5), None, Some(10)])),
        ),
        (
            "y",
            array(Int32Array::from(vec![Some(2), Some(0), Some(3), None])),
        ),
        (
            "f",
            array(Float64Array::from(vec![
                Some(0.5),
                Some(-2.0),
                Some(1.0),
                None,
            ])),
        ),
    ])
}

#[test]
fn integer_and_float_arithmetic() {
    let b = numbers();
    assert_eq!(eval("x + y = 3", &b), vec![T, F, N, N]);
    assert_eq!(eval("x - y * 2 = -3", &b), vec![T, F, N, N]);
    assert_eq!(eval("x * 2 - 1 = 1", &b), vec![T, F, N, F]);
    assert_eq!(eval("x + f = 1.5", &b), vec![T, F, N, N]);
    assert_eq!(eval("x * 0.5 = 2.5", &b), vec![F, T, N, F]);
    assert_eq!(eval("-x = -5", &b), vec![F, T, N, F]);
    assert_eq!(eval("-f > 0", &b), vec![F, T, F, N]);
    assert_eq!(eval("+x = 5", &b), vec![F, T, N, F]);
    assert_eq!(eval("x > f", &b), vec![T, T, N, N]);
    assert_eq!(
        eval("2 = 2.0 AND 3 > 2.5 AND 1 < 1.5", &b),
        vec![T, T, T, T]
    );
    assert_eq!(eval("NULL * x IS NULL", &b), vec![T, T, T, T]);
}

#[test]
fn division_is_ieee_float_division_as_in_duckdb() {
    let b = numbers();
    assert_eq!(eval("x / y = 0.5", &b), vec![T, F, N, N]);
    assert_eq!(eval("x / y IS NULL", &b), vec![F, F, T, T]);
    assert_eq!(eval("7 / 2 = 3.5", &b), vec![T, T, T, T]);
    assert_eq!(eval("x / 0 > 1e308", &b), vec![T, T, N, T]);
    assert_eq!(
        eval("x / 0.0 > 1e308 AND x / -0.0 < -1e308", &b),
        vec![T, T, N, T]
    );
    assert_eq!(eval("x / (f + 2.0) IS NULL", &b), vec![F, F, T, T]);
    assert_eq!(eval("0 / x = 0", &b), vec![T, T, N, T]);
    assert_eq!(eval("1 / 0 > 1e308", &b), vec![T, T, T, T]);
    // 0 / 0 is NaN, and NaN = NaN in DuckDB.
    assert_eq!(eval("0 / 0 = 0.0 / 0", &b), vec![T, T, T, T]);
    assert_eq!(eval("y / 2 = 1.5", &b), vec![F, F, T, N]);
}

#[test]
fn integer_overflow_is_a_data_error_naming_the_rule() {
    let b = batch(vec![
        ("big", array(Int64Array::from(vec![Some(i64::MAX), None]))),
        (
            "small",
            array(Int64Array::from(vec![Some(i64::MIN), Some(0)])),
        ),
    ]);
    assert_eq!(
        data_error("big + 1 > 0", &b),
        "rule \"big + 1 > 0\": integer overflow in big + 1"
    );
    assert!(data_error("big * 2 > 0", &b).contains("integer overflow in big * 2"));
    assert!(data_error("small - 1 < 0", &b).contains("integer overflow in small - 1"));
    assert!(data_error("-small > 0", &b).contains("integer overflow in -small"));
    assert!(data_error("9223372036854775807 + 1 > 0", &b).contains("integer overflow"));
    // Float arithmetic does not overflow into an error: it reaches infinity.
    assert_eq!(eval("big * 1e308 > 0", &b), vec![T, N]);
    // A value hidden under a null never overflows.
    let hidden = Int64Array::new(
        vec![i64::MAX, 1].into(),
        Some(NullBuffer::from(vec![false, true])),
    );
    let b = batch(vec![("big", array(hidden))]);
    assert_eq!(eval("big + 1 > 0", &b), vec![N, T]);
    assert_eq!(eval("-big < 0", &b), vec![N, T]);
}

#[test]
fn floats_compare_as_duckdb_does() {
    let values = vec![
        Some(0.0),
        Some(-0.0),
        Some(f64::NAN),
        Some(1.0),
        None,
        Some(-f64::NAN),
    ];
    let b = batch(vec![("f", array(Float64Array::from(values)))]);
    assert_eq!(eval("f = 0", &b), vec![T, T, F, F, N, F]);
    assert_eq!(eval("f = -0.0", &b), vec![T, T, F, F, N, F]);
    assert_eq!(eval("f < 0", &b), vec![F, F, F, F, N, F]);
    assert_eq!(eval("f >= 0", &b), vec![T, T, T, T, N, T]);
    // NaN equals itself and lies above every number, whatever its sign bit.
    assert_eq!(eval("f = f", &b), vec![T, T, T, T, N, T]);
    assert_eq!(eval("f > 1e308", &b), vec![F, F, T, F, N, T]);
    assert_eq!(eval("-f = 0 AND 0 * -1.0 = 0", &b), vec![T, T, F, F, N, F]);
    assert_eq!(eval("f IN (0, 1)", &b), vec![T, T, F, T, N, F]);
    assert_eq!(eval("f BETWEEN -0.0 AND 0.0", &b), vec![T, T, F, F, N, F]);
}

#[test]
fn coalesce_takes_the_first_non_null() {
    let b = numbers();
    assert_eq!(eval("COALESCE(y, x) = 10", &b), vec![F, F, F, T]);
    assert_eq!(eval("COALESCE(NULL, y, 7) = 7", &b), vec![F, F, F, T]);
    assert_eq!(eval("COALESCE(y, 0.5) = 0.5", &b), vec![F, F, F, T]);
    assert_eq!(eval("COALESCE(f, y, x) = 3", &b), vec![F, F, F, F]);
    assert_eq!(eval("COALESCE(f, x, y) = 10", &b), vec![F, F, F, T]);
    assert_eq!(eval("COALESCE(x) = x", &b), vec![T, T, N, T]);
    assert_eq!(eval("COALESCE(NULL, NULL) IS NULL", &b), vec![T, T, T, T]);
    assert_eq!(eval("COALESCE(NULL, 3) = 3", &b), vec![T, T, T, T]);
    assert_eq!(eval("COALESCE(x, 1 / 0) > 1e308", &b), vec![F, F, T, F]);
    let s = batch(vec![
        (
            "small",
            array(StringArray::from(vec![Some("a"), None, None])),
        ),
        (
            "large",
            array(LargeStringArray::from(vec![Some("x"), Some("b"), None])),
        ),
        (
            "dict",
            array(
                vec![None, Some("d"), None]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ),
        (
            "vip",
            array(BooleanArray::from(vec![None, Some(true), None])),
        ),
    ]);
    assert_eq!(eval("COALESCE(small, large, 'z') = 'b'", &s), vec![F, T, F]);
    assert_eq!(eval("COALESCE(small, large, 'z') = 'z'", &s), vec![F, F, T]);
    assert_eq!(
        eval("COALESCE(dict, small, 'none') = 'none'", &s),
        vec![F, F, T]
    );
    assert_eq!(eval("COALESCE(dict, 'none') LIKE 'n%'", &s), vec![T, F, T]);
    assert_eq!(
        eval("COALESCE(small, dict) IN ('a', 'd')", &s),
        vec![T, T, N]
    );
    assert_eq!(eval("COALESCE(vip, FALSE)", &s), vec![F, T, F]);
    assert_eq!(eval("COALESCE(NULL, vip)", &s), vec![N, T, N]);
}

/// A float16 column (built by cast: `half` is no dependency of ours).
fn half_floats(values: Vec<Option<f32>>) -> ArrayRef {
    let floats = Float32Array::from(values);
    arrow_cast::cast(&floats, &arrow_schema::DataType::Float16).unwrap()
}

#[test]
fn every_integer_and_float_width() {
    let b = batch(vec![
        ("i8", array(Int8Array::from(vec![Some(-3), None]))),
        ("i16", array(Int16Array::from(vec![Some(-3), None]))),
        ("u8", array(UInt8Array::from(vec![Some(200), None]))),
        ("u16", array(UInt16Array::from(vec![Some(60_000), None]))),
        (
            "u32",
            array(UInt32Array::from(vec![Some(4_000_000_000), None])),
        ),
        ("u64", array(UInt64Array::from(vec![Some(1 << 62), None]))),
        ("f16", half_floats(vec![Some(0.5), None])),
        ("f32", array(Float32Array::from(vec![Some(0.25), None]))),
    ]);
    let rule = "i8 = -3 AND i16 * i8 = 9 AND u8 + u16 = 60200 AND u32 * 2 = 8000000000 \
                AND u64 = 4611686018427387904 AND f16 = 0.5 AND f32 + f16 = 0.75";
    assert_eq!(eval(rule, &b), vec![T, N]);
    assert_eq!(
        eval("i8 IS NULL AND u64 IS NULL AND f16 IS NULL", &b),
        vec![F, T]
    );
}

#[test]
fn uint64_beyond_int64_is_a_data_error() {
    let b = batch(vec![(
        "n",
        array(UInt64Array::from(vec![Some(1), Some(u64::MAX)])),
    )]);
    assert_eq!(
        data_error("n > 0", &b),
        format!(
            "rule \"n > 0\": column \"n\" holds {}, out of the range rules support",
            u64::MAX
        )
    );
    let hidden = UInt64Array::new(
        vec![u64::MAX, 1].into(),
        Some(NullBuffer::from(vec![false, true])),
    );
    assert_eq!(
        eval("n > 0", &batch(vec![("n", array(hidden))])),
        vec![N, T]
    );
}

const DAY: i64 = 86_400_000_000;

fn times() -> RecordBatch {
    let now_s = NOW / 1_000_000;
    let today = i32::try_from(NOW / DAY).unwrap();
    batch(vec![
        (
            "ts_s",
            array(
                TimestampSecondArray::from(vec![Some(now_s - 86_400), None, Some(now_s)])
                    .with_timezone("America/New_York"),
            ),
        ),
        (
            "ts_ms",
            array(TimestampMillisecondArray::from(vec![
                Some(NOW / 1_000 - 86_400_000),
                Some(NOW / 1_000 + 43_200_000),
                Some(0),
            ])),
        ),
        (
            "ts_us",
            array(
                TimestampMicrosecondArray::from(vec![Some(-1), Some(-1), Some(1)])
                    .with_timezone("+05:30"),
            ),
        ),
        (
            "ts_ns",
            array(
                TimestampNanosecondArray::from(vec![Some(-1), Some(-1_000), Some(1_999)])
                    .with_timezone("UTC"),
            ),
        ),
        (
            "d32",
            array(Date32Array::from(vec![Some(today - 2), Some(today), None])),
        ),
        (
            "d64",
            array(Date64Array::from(vec![
                Some(NOW / 1_000 - 3 * 86_400_000),
                None,
                None,
            ])),
        ),
    ])
}

#[test]
fn timestamps_of_every_unit_and_zone_compare_as_instants() {
    let b = times();
    assert_eq!(eval("ts_s = ts_ms", &b), vec![T, N, F]);
    assert_eq!(eval("ts_s < ts_ms", &b), vec![F, N, F]);
    // Nanoseconds floor to the microsecond: -1 ns is -1 µs, not 0.
    assert_eq!(eval("ts_ns = ts_us", &b), vec![T, T, T]);
    assert_eq!(eval("d32 < ts_ms", &b), vec![T, T, N]);
    assert_eq!(eval("d32 = ts_s", &b), vec![F, N, N]);
    assert_eq!(eval("d64 < d32", &b), vec![T, N, N]);
    assert_eq!(eval("ts_s BETWEEN d32 AND ts_ms", &b), vec![T, N, F]);
    assert_eq!(eval("ts_us IN (ts_ns, d32)", &b), vec![T, T, T]);
}

#[test]
fn days_since_counts_float_days_to_now() {
    let b = times();
    assert_eq!(eval("days_since(ts_s) = 1", &b), vec![T, N, F]);
    assert_eq!(eval("days_since(ts_s) = 0", &b), vec![F, N, T]);
    assert_eq!(eval("days_since(ts_ms) = -0.5", &b), vec![F, T, F]);
    assert_eq!(eval("days_since(d32) = 2", &b), vec![T, F, N]);
    assert_eq!(eval("days_since(d64) >= 3", &b), vec![T, N, N]);
    assert_eq!(eval("days_since(ts_ms) = 19723", &b), vec![F, F, T]);
    // The argument must be a column: anything else fails when the rule is parsed.
    assert!(Rule::parse("days_since(NULL) IS NULL").is_err());
    assert!(Rule::parse("days_since(COALESCE(d64, d32)) > 0").is_err());
    assert_eq!(
        eval("days_since(ts_us) * 86400000000 = 1704067200000001", &b),
        vec![T, T, F]
    );
    // now − t beyond int64 microseconds is a data error, as in the reference.
    let far = batch(vec![(
        "t",
        array(TimestampMicrosecondArray::from(vec![i64::MIN])),
    )]);
    let rule = Rule::parse("days_since(t) > 100000000").unwrap();
    let bound = rule.bind(&far.schema()).unwrap();
    assert!(matches!(bound.evaluate(&far, NOW), Err(NbaError::Data(_))));
}

#[test]
fn out_of_range_dates_are_data_errors() {
    let b = batch(vec![(
        "d",
        array(Date32Array::from(vec![Some(0), Some(i32::MAX)])),
    )]);
    let message = data_error("d IS NULL", &b);
    assert!(
        message.contains("column \"d\" holds day 2147483647"),
        "{message}"
    );
    let b = batch(vec![(
        "t",
        array(TimestampSecondArray::from(vec![i64::MAX])),
    )]);
    assert!(data_error("days_since(t) > 1", &b).contains("column \"t\" holds"));
}
