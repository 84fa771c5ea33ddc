//! Unit tests of the rule module: parsing, binding (types and names), evaluation semantics.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod binding;
mod logic;
mod parsing;
mod values;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};

use super::Rule;
use crate::error::NbaError;

/// 2024-01-01T00:00:00Z in µs: the `now` of every test.
const NOW: i64 = 1_704_067_200_000_000;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn array<A: arrow_array::Array + 'static>(array: A) -> ArrayRef {
    Arc::new(array)
}

/// Parses, binds and evaluates `rule` over `batch`; panics on any error.
fn eval(rule: &str, batch: &RecordBatch) -> Vec<Option<bool>> {
    try_eval(rule, batch).unwrap_or_else(|e| panic!("{rule}: {e}"))
}

fn try_eval(rule: &str, batch: &RecordBatch) -> Result<Vec<Option<bool>>, NbaError> {
    let bound = Rule::parse(rule)?.bind(batch.schema().as_ref())?;
    let result = bound.evaluate(batch, NOW)?;
    assert_eq!(result.len(), batch.num_rows(), "{rule}: result length");
    Ok(result.iter().collect())
}

/// The message of the `NbaError::Rule` that `rule` raises (parse or bind) over `batch`.
fn rule_error(rule: &str, batch: &RecordBatch) -> String {
    match try_eval(rule, batch) {
        Err(NbaError::Rule(message)) => message,
        other => panic!("{rule}: expected a rule error, got {other:?}"),
    }
}

fn data_error(rule: &str, batch: &RecordBatch) -> String {
    match try_eval(rule, batch) {
        Err(NbaError::Data(message)) => message,
        other => panic!("{rule}: expected a data error, got {other:?}"),
    }
}

/// A one-row batch with one unused column: for rules made only of literals.
fn one_row() -> RecordBatch {
    batch(vec![("x", array(arrow_array::Int64Array::from(vec![1])))])
}

/// The value of a constant rule.
fn constant(rule: &str) -> Option<bool> {
    eval(rule, &one_row())[0]
}

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const N: Option<bool> = None;
