//! The `decisions` table: its schema and its assembly from the batches' accepted candidates.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::candidates::BatchDecisions;
use crate::catalog::Catalog;
use crate::data_err;
use crate::engine::{prefix_starts, split_lengths};
use crate::error::Result;
use crate::ids::{IdColumn, IdKind};

/// The schema of `decisions` (DESIGN.md §3) for customer ids of `kind`.
pub fn decisions_schema(kind: IdKind) -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let float = |name: &str| Field::new(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("customer_id", kind.data_type(), false),
        Field::new("action_id", DataType::Utf8, false),
        text("issue"),
        text("group"),
        text("channel"),
        text("treatment"),
        float("propensity"),
        float("value"),
        float("context_weight"),
        float("lever"),
        float("priority"),
        Field::new("rank", DataType::Int32, false),
    ]))
}

/// Rows per parallel task when a column is built from the flat action column.
const CHUNK: usize = 1 << 16;

/// Builds the table from every batch's accepted candidates, in input order; with `sort`,
/// orders rows by customer id (stable, so each customer's rows stay in rank order).
///
/// Every column is written once, at its final size, in parallel: each batch fills its own
/// stretch of the decision's own columns, and the columns that are one value per action are
/// gathered from the flat action column in chunks. (Growing the columns batch by batch, then
/// taking the per-action ones, held the grown vectors beside the table: `bank-10m` without
/// caps peaked 0.1 GB higher. The time is the same in release builds, bound by first touches
/// of the table's fresh pages.)
pub(crate) fn decisions_batch(
    results: &[BatchDecisions],
    kind: IdKind,
    catalog: &Catalog,
    sort: bool,
) -> Result<RecordBatch> {
    let schema = decisions_schema(kind);
    let lengths: Vec<usize> = results.iter().map(|r| r.rows.len()).collect();
    let total: usize = lengths.iter().sum();
    let ids = id_column(results, kind, &lengths)?;
    let action = per_row(results, &lengths, |r, out| out.copy_from_slice(&r.actions));
    let propensity = per_row(results, &lengths, |r, out| {
        out.copy_from_slice(&r.propensity)
    });
    let priority = per_row(results, &lengths, |r, out| out.copy_from_slice(&r.priority));
    let rank = per_row(results, &lengths, |r, out| out.copy_from_slice(&r.rank));
    debug_assert_eq!(action.len(), total);
    let actions = catalog.actions();
    let texts: [Vec<Option<&str>>; 5] = [
        actions.iter().map(|a| Some(a.id.as_str())).collect(),
        actions.iter().map(|a| Some(a.issue.as_str())).collect(),
        actions.iter().map(|a| Some(a.group.as_str())).collect(),
        actions.iter().map(|a| Some(a.channel.as_str())).collect(),
        actions.iter().map(|a| a.treatment.as_deref()).collect(),
    ];
    let floats: [Vec<f64>; 3] = [
        actions.iter().map(|a| a.value).collect(),
        actions.iter().map(|a| a.context_weight).collect(),
        actions.iter().map(|a| a.lever).collect(),
    ];
    let names = ["action_id", "issue", "group", "channel", "treatment"];
    let (texts, floats) = rayon::join(
        || {
            texts
                .par_iter()
                .zip(names)
                .map(|(values, name)| action_strings(&action, values, name))
                .collect::<Result<Vec<ArrayRef>>>()
        },
        || {
            floats
                .par_iter()
                .map(|values| -> ArrayRef {
                    Arc::new(Float64Array::from(
                        action
                            .par_iter()
                            .map(|&a| values[a as usize])
                            .collect::<Vec<f64>>(),
                    ))
                })
                .collect::<Vec<ArrayRef>>()
        },
    );
    let mut texts = texts?.into_iter();
    let mut floats = floats.into_iter();
    let mut out: Vec<ArrayRef> = vec![ids];
    out.extend(texts.by_ref());
    out.push(Arc::new(Float64Array::from(propensity)));
    out.extend(floats.by_ref());
    out.push(Arc::new(Float64Array::from(priority)));
    out.push(Arc::new(Int32Array::from(rank)));
    if sort {
        let ids = IdColumn::from_array(&out[0], "decisions")?;
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.par_sort_by(|&a, &b| ids.cmp_at(a as usize, &ids, b as usize));
        let order = UInt32Array::from(order);
        out = out
            .par_iter()
            .map(|column| arrow_select::take::take(column, &order, None))
            .collect::<std::result::Result<_, _>>()?;
    }
    Ok(RecordBatch::try_new(schema, out)?)
}

/// A column of one value per decision, each batch filling its own stretch (`lengths`) on its
/// own task.
fn per_row<T: Clone + Default + Send>(
    results: &[BatchDecisions],
    lengths: &[usize],
    fill: impl Fn(&BatchDecisions, &mut [T]) + Sync,
) -> Vec<T> {
    // Zeroed memory for the number types, so the pages are first touched by the tasks, in
    // parallel, not here.
    let mut column = vec![T::default(); lengths.iter().sum()];
    results
        .par_iter()
        .zip(split_lengths(&mut column, lengths))
        .for_each(|(result, out)| fill(result, out));
    column
}

/// The customer ids of the decisions: each batch's ids at the rows it accepted.
fn id_column(results: &[BatchDecisions], kind: IdKind, lengths: &[usize]) -> Result<ArrayRef> {
    Ok(match kind {
        IdKind::Int => {
            let values = per_row(results, lengths, |result, out: &mut [i64]| {
                let IdColumn::Int(ids) = &result.ids else {
                    unreachable!("every batch's ids are of the run's kind")
                };
                let ids = ids.values();
                for (value, &row) in out.iter_mut().zip(&result.rows) {
                    *value = ids[row as usize];
                }
            });
            Arc::new(Int64Array::from(values))
        }
        IdKind::Str => {
            let taken = results
                .par_iter()
                .map(|result| {
                    let rows = UInt32Array::from(result.rows.clone());
                    arrow_select::take::take(&result.ids.to_array(), &rows, None)
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if taken.is_empty() {
                arrow_array::new_empty_array(&kind.data_type())
            } else {
                let refs: Vec<&dyn Array> = taken.iter().map(|a| a.as_ref()).collect();
                arrow_select::concat::concat(&refs)?
            }
        }
    })
}

/// The utf8 column of `values[action]` per decision (null where the value is `None`), its
/// offsets and bytes written in parallel chunks.
fn action_strings(action: &[u32], values: &[Option<&str>], name: &str) -> Result<ArrayRef> {
    let value = |a: u32| values[a as usize].unwrap_or_default().as_bytes();
    let chunk_bytes: Vec<usize> = action
        .par_chunks(CHUNK)
        .map(|chunk| chunk.iter().map(|&a| value(a).len()).sum())
        .collect();
    let total_bytes: usize = chunk_bytes.iter().sum();
    let end = i32::try_from(total_bytes).map_err(|_| {
        data_err!("decisions: column {name:?} would hold more than 2 GiB of text; decide fewer customers per call")
    })?;
    let mut offsets = vec![0i32; action.len() + 1];
    let mut bytes = vec![0u8; total_bytes];
    offsets[..action.len()]
        .par_chunks_mut(CHUNK)
        .zip(action.par_chunks(CHUNK))
        .zip(split_lengths(&mut bytes, &chunk_bytes))
        .zip(prefix_starts(&chunk_bytes))
        .for_each(|(((offsets, chunk), out), start)| {
            let mut at = 0;
            for (offset, &a) in offsets.iter_mut().zip(chunk) {
                // Within `end`, which fits i32.
                *offset = (start + at) as i32;
                let text = value(a);
                out[at..at + text.len()].copy_from_slice(text);
                at += text.len();
            }
        });
    offsets[action.len()] = end;
    let nulls = values.iter().any(Option::is_none).then(|| {
        NullBuffer::new(BooleanBuffer::collect_bool(action.len(), |k| {
            values[action[k] as usize].is_some()
        }))
    });
    Ok(Arc::new(StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(bytes),
        nulls,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Across several chunks, with values of different lengths, an empty one and a null one:
    /// the same column as building it row by row.
    #[test]
    fn action_strings_match_a_row_by_row_build() {
        let values = [
            Some("card_gold_email"),
            None,
            Some(""),
            Some("é-sms"),
            Some("x"),
        ];
        let rows = 3 * CHUNK + 123;
        // A fixed, irregular pattern of actions.
        let action: Vec<u32> = (0..rows)
            .map(|k| ((k * 7919 + k / 13) % values.len()) as u32)
            .collect();
        let built = action_strings(&action, &values, "action_id").unwrap();
        let expected: StringArray = action.iter().map(|&a| values[a as usize]).collect();
        assert_eq!(built.as_ref(), &expected as &dyn Array);
    }

    #[test]
    fn action_strings_of_no_rows_are_empty() {
        let built = action_strings(&[], &[Some("a")], "action_id").unwrap();
        assert_eq!(built.len(), 0);
    }
}
