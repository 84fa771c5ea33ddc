//! Propensities: a long table indexed once per call, a dense (customers × actions) matrix, or
//! columns of the customers' own batches (one per action, read as each batch streams by).
//!
//! The long table is grouped by customer with one hash per row at build time; a batch of
//! customers then costs one hash probe per customer, not per candidate.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};
use rayon::prelude::*;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::ids::{group_rows, Groups, IdColumn, IdIndex, IdKind};
use crate::{data_err, schema_err};

/// Where the propensity of a (customer, action) pair comes from.
#[derive(Debug)]
pub enum Propensities<'a> {
    /// None given: every pair falls back to the action's default propensity.
    Missing,
    /// A long table, indexed.
    Long(LongPropensities),
    /// Row-major matrix: row = customer in input order, column = action in catalog order.
    Dense {
        /// `rows * actions` values.
        values: &'a [f64],
        /// Number of rows (customers).
        rows: usize,
    },
    /// Per action in catalog order: the customers' column holding its propensity (`None`:
    /// no column, so the action's default propensity applies).
    Columns(Vec<Option<String>>),
}

impl<'a> Propensities<'a> {
    /// Checks a dense matrix's shape against the catalog and its values against [0, 1].
    pub fn dense(
        values: &'a [f64],
        rows: usize,
        columns: usize,
        catalog: &Catalog,
    ) -> Result<Self> {
        if columns != catalog.len() || values.len() != rows * columns {
            return Err(data_err!(
                "propensities: the array has {columns} columns but the catalog has {} actions",
                catalog.len()
            ));
        }
        // Called on the engine's pool: a large matrix is checked by every worker, in chunks
        // (a per-element parallel search would pay rayon's bookkeeping per value).
        const CHUNK: usize = 1 << 16;
        let is_bad = |p: &f64| !(0.0..=1.0).contains(p);
        let bad_chunk = values
            .par_chunks(CHUNK)
            .position_first(|chunk| chunk.iter().any(is_bad));
        let bad = bad_chunk.and_then(|c| {
            let start = c * CHUNK;
            values[start..].iter().position(is_bad).map(|i| start + i)
        });
        if let Some(position) = bad {
            let (row, column) = (position / columns, position % columns);
            return Err(data_err!(
                "propensities: value {} in row {row} (action {:?}) is not a probability in [0, 1]",
                values[position],
                catalog.actions()[column].id
            ));
        }
        Ok(Self::Dense { values, rows })
    }

    /// Binds (action id, column) pairs to the customers' schema: every action must be in the
    /// catalog and named once, every column present and numeric.
    pub fn columns(pairs: &[(String, String)], catalog: &Catalog, schema: &Schema) -> Result<Self> {
        let mut columns: Vec<Option<String>> = vec![None; catalog.len()];
        for (action, column) in pairs {
            let a = catalog
                .index_of(action)
                .ok_or_else(|| data_err!("propensities: action {action:?} is not in the catalog"))?
                as usize;
            if columns[a].is_some() {
                return Err(data_err!(
                    "propensities: action {action:?} is given more than one column"
                ));
            }
            let field = schema.field_with_name(column).map_err(|_| {
                schema_err!(
                    "propensities: column {column:?} (action {action:?}) is not a column of customers"
                )
            })?;
            let data_type = field.data_type();
            if !is_numeric(data_type) {
                return Err(schema_err!(
                    "propensities: column {column:?} (action {action:?}) must be numeric, got {data_type}"
                ));
            }
            columns[a] = Some(column.clone());
        }
        Ok(Self::Columns(columns))
    }
}

/// One batch's propensity columns (per action in catalog order; `None`: no column), as
/// float64, checked: a value outside [0, 1] (or NaN) is an error naming the customer, the
/// first in row order, then catalog order.
pub(crate) fn batch_columns(
    names: &[Option<String>],
    batch: &RecordBatch,
    ids: &IdColumn,
    catalog: &Catalog,
) -> Result<Vec<Option<PrimitiveArray<Float64Type>>>> {
    let columns: Vec<Option<PrimitiveArray<Float64Type>>> = names
        .iter()
        .map(|name| {
            name.as_deref()
                .map(|name| {
                    let array = batch
                        .column_by_name(name)
                        .ok_or_else(|| schema_err!("customers: column {name:?} is missing"))?;
                    float_column(array, "customers", name)
                })
                .transpose()
        })
        .collect::<Result<_>>()?;
    let bad = |values: &PrimitiveArray<Float64Type>, row: usize| {
        values.is_valid(row) && !(0.0..=1.0).contains(&values.value(row))
    };
    let first_bad = columns
        .iter()
        .enumerate()
        .filter_map(|(a, values)| {
            let values = values.as_ref()?;
            // One pass without a branch per row over every slot, nulls' too (their values are
            // unspecified): only where it finds something is each row looked at.
            let any_outside = values
                .values()
                .iter()
                .fold(false, |any, &p| any | !(0.0..=1.0).contains(&p));
            if !any_outside {
                return None;
            }
            (0..values.len())
                .find(|&row| bad(values, row))
                .map(|row| (row, a))
        })
        .min();
    if let Some((row, a)) = first_bad {
        let p = columns[a]
            .as_ref()
            .map_or(f64::NAN, |values| values.value(row));
        return Err(data_err!(
            "propensities: propensity {p} for customer {} and action {:?} is not a probability in [0, 1]",
            ids.display(row),
            catalog.actions()[a].id
        ));
    }
    Ok(columns)
}

/// The long table grouped by customer: `entries[starts[g]..starts[g + 1]]` are customer `g`'s
/// (action, propensity) pairs, sorted by action.
#[derive(Debug)]
pub struct LongPropensities {
    index: IdIndex,
    starts: Vec<u32>,
    entries: Vec<(u32, f64)>,
}

impl LongPropensities {
    /// Validates and indexes the table (`customer_id`, `action_id`, `propensity`).
    pub fn build(
        batches: &[RecordBatch],
        catalog: &Catalog,
        customer_kind: IdKind,
    ) -> Result<Self> {
        let mut id_arrays: Vec<ArrayRef> = Vec::with_capacity(batches.len());
        let mut entries: Vec<(u32, f64)> = Vec::new();
        let mut owner_rows: Vec<u32> = Vec::new();
        let mut offset = 0usize;
        for batch in batches {
            let ids = required(batch, "customer_id")?;
            let kind = IdKind::of(ids.data_type());
            if kind.is_some() && kind != Some(customer_kind) {
                return Err(schema_err!(
                    "propensities: customer_id is {} but the customers' customer_id is {}",
                    ids.data_type(),
                    customer_kind.data_type()
                ));
            }
            let ids = IdColumn::from_array(ids, "propensities")?;
            let actions = action_indexes(required(batch, "action_id")?, catalog, "propensities")?;
            let values =
                float_column(required(batch, "propensity")?, "propensities", "propensity")?;
            for (row, &action) in actions.iter().enumerate() {
                if values.is_null(row) {
                    continue;
                }
                let p = values.value(row);
                if !(0.0..=1.0).contains(&p) {
                    return Err(data_err!(
                        "propensities: propensity {p} for customer {} and action {:?} is not a probability in [0, 1]",
                        ids.display(row),
                        catalog.actions()[action as usize].id
                    ));
                }
                entries.push((action, p));
                owner_rows.push(
                    u32::try_from(offset + row)
                        .map_err(|_| data_err!("propensities: too many rows"))?,
                );
            }
            offset += batch.num_rows();
            id_arrays.push(ids.to_array());
        }
        let all_ids = if id_arrays.is_empty() {
            arrow_array::new_empty_array(&customer_kind.data_type())
        } else {
            let refs: Vec<&dyn Array> = id_arrays.iter().map(|a| a.as_ref()).collect();
            arrow_select::concat::concat(&refs)?
        };
        let all_ids = IdColumn::from_array(&all_ids, "propensities")?;
        let (index, numbers) = IdIndex::build(all_ids.clone())?;
        // The non-null entries grouped by customer number.
        let entry_numbers: Vec<u32> = owner_rows
            .iter()
            .map(|&row| numbers[row as usize])
            .collect();
        let Groups {
            starts,
            rows: order,
        } = group_rows(&entry_numbers, index.len());
        let mut grouped: Vec<(u32, f64)> = order.iter().map(|&k| entries[k as usize]).collect();
        let grouped_rows: Vec<u32> = order.iter().map(|&k| owner_rows[k as usize]).collect();
        for g in 0..index.len() {
            let (lo, hi) = (starts[g] as usize, starts[g + 1] as usize);
            let group = &mut grouped[lo..hi];
            group.sort_unstable_by_key(|&(action, _)| action);
            if let Some(pair) = group.windows(2).position(|w| w[0].0 == w[1].0) {
                // Every row of the group names the same customer.
                let row = grouped_rows[lo];
                return Err(data_err!(
                    "propensities: customer {} has more than one propensity for action {:?}",
                    all_ids.display(row as usize),
                    catalog.actions()[group[pair].0 as usize].id
                ));
            }
        }
        Ok(Self {
            index,
            starts,
            entries: grouped,
        })
    }

    /// The (action, propensity) pairs of customer `ids[row]`, sorted by action.
    #[inline]
    pub fn for_customer(&self, ids: &IdColumn, row: usize) -> &[(u32, f64)] {
        match self.index.find(ids, row) {
            Some(g) => {
                let g = g as usize;
                &self.entries[self.starts[g] as usize..self.starts[g + 1] as usize]
            }
            None => &[],
        }
    }
}

/// The column `name` of `batch`, or a `SchemaError` naming it.
pub(crate) fn required<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| schema_err!("propensities: column {name:?} is missing"))
}

/// An integer or float type, or `null` (read as all NULL): what a propensity column may be.
fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_integer() || data_type.is_floating() || data_type == &DataType::Null
}

/// A numeric column as float64, or a `SchemaError` naming `table` and `name`.
pub(crate) fn float_column(
    array: &ArrayRef,
    table: &str,
    name: &str,
) -> Result<arrow_array::PrimitiveArray<Float64Type>> {
    if !is_numeric(array.data_type()) {
        return Err(schema_err!(
            "{table}: column {name:?} must be numeric, got {}",
            array.data_type()
        ));
    }
    Ok(arrow_cast::cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// Maps an `action_id` column to catalog indexes; an unknown action is a `DataError`.
/// Dictionary-encoded ids are mapped once per dictionary value.
pub(crate) fn action_indexes(array: &ArrayRef, catalog: &Catalog, table: &str) -> Result<Vec<u32>> {
    let strings = action_strings(array, table)?;
    let mut cache: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::with_capacity(strings.len());
    for row in 0..strings.len() {
        if strings.is_null(row) {
            return Err(data_err!("{table}: action_id is null in row {row}"));
        }
        let id = strings.value(row);
        let index = match cache.get(id) {
            Some(&index) => index,
            None => {
                let index = catalog
                    .index_of(id)
                    .ok_or_else(|| data_err!("{table}: action {id:?} is not in the catalog"))?;
                cache.insert(id, index);
                index
            }
        };
        out.push(index);
    }
    Ok(out)
}

/// An `action_id` column of any string layout (or integers, read as decimal text) as utf8.
pub(crate) fn action_strings(array: &ArrayRef, table: &str) -> Result<StringArray> {
    let ok = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        DataType::Dictionary(_, v) => matches!(
            **v,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        t => t.is_integer(),
    };
    if !ok {
        return Err(schema_err!(
            "{table}: column \"action_id\" must be strings, got {}",
            array.data_type()
        ));
    }
    Ok(arrow_cast::cast(array, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}
