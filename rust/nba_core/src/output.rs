//! The `decisions` table: its schema and its assembly from the batches' accepted candidates.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;

use crate::candidates::BatchDecisions;
use crate::catalog::Catalog;
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

/// Accepted candidates gathered from all batches, in input order.
pub(crate) struct DecisionColumns {
    kind: IdKind,
    ids: Vec<ArrayRef>,
    actions: Vec<u32>,
    propensity: Vec<f64>,
    priority: Vec<f64>,
    rank: Vec<i32>,
}

impl DecisionColumns {
    pub fn with_kind(kind: IdKind) -> Self {
        Self {
            kind,
            ids: Vec::new(),
            actions: Vec::new(),
            propensity: Vec::new(),
            priority: Vec::new(),
            rank: Vec::new(),
        }
    }

    /// Appends one batch's accepted candidates.
    pub fn append(&mut self, batch: &BatchDecisions) -> Result<()> {
        let rows = UInt32Array::from(batch.rows.clone());
        self.ids.push(arrow_select::take::take(
            &batch.ids.to_array(),
            &rows,
            None,
        )?);
        self.actions.extend_from_slice(&batch.actions);
        self.propensity.extend_from_slice(&batch.propensity);
        self.priority.extend_from_slice(&batch.priority);
        self.rank.extend_from_slice(&batch.rank);
        Ok(())
    }
}

/// Builds the table; with `sort`, orders rows by customer id (stable, so each customer's rows
/// stay in rank order).
pub(crate) fn decisions_batch(
    columns: DecisionColumns,
    catalog: &Catalog,
    sort: bool,
) -> Result<RecordBatch> {
    let schema = decisions_schema(columns.kind);
    let actions = catalog.actions();
    let strings = |values: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let floats = |values: Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(values)) };
    // The columns that are one value per action, in schema order around the decision's own.
    let per_action: Vec<ArrayRef> = vec![
        strings(actions.iter().map(|a| Some(a.id.as_str())).collect()),
        strings(actions.iter().map(|a| Some(a.issue.as_str())).collect()),
        strings(actions.iter().map(|a| Some(a.group.as_str())).collect()),
        strings(actions.iter().map(|a| Some(a.channel.as_str())).collect()),
        strings(actions.iter().map(|a| a.treatment.as_deref()).collect()),
        floats(actions.iter().map(|a| a.value).collect()),
        floats(actions.iter().map(|a| a.context_weight).collect()),
        floats(actions.iter().map(|a| a.lever).collect()),
    ];
    let action_index = UInt32Array::from(columns.actions);
    // Each column is built on its own task: one take per column, the ids' concatenation beside.
    let (ids, taken) = rayon::join(
        || -> Result<ArrayRef> {
            Ok(if columns.ids.is_empty() {
                arrow_array::new_empty_array(&columns.kind.data_type())
            } else {
                let refs: Vec<&dyn Array> = columns.ids.iter().map(|a| a.as_ref()).collect();
                arrow_select::concat::concat(&refs)?
            })
        },
        || {
            per_action
                .par_iter()
                .map(|values| arrow_select::take::take(values, &action_index, None))
                .collect::<std::result::Result<Vec<_>, _>>()
        },
    );
    let mut taken = taken?.into_iter();
    let mut out: Vec<ArrayRef> = vec![ids?];
    out.extend(taken.by_ref().take(5));
    out.push(Arc::new(Float64Array::from(columns.propensity)));
    out.extend(taken);
    out.push(Arc::new(Float64Array::from(columns.priority)));
    out.push(Arc::new(Int32Array::from(columns.rank)));
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
