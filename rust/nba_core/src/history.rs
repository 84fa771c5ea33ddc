//! The interaction history, indexed once per call: events grouped by customer, sorted by time,
//! with their action, group, issue and channel as integer codes and, per event, the set of
//! policies whose channel and outcomes count it.
//!
//! Strings are mapped to codes once per distinct value (dictionary-encoded columns: once per
//! dictionary entry), so the policy checks compare integers only.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};

use rayon::prelude::*;

use crate::error::Result;
use crate::ids::{group_rows, is_text, Groups, IdColumn, IdIndex, IdKind};
use crate::{data_err, schema_err};

/// The code of a value no action has (and of NULL): it never equals a candidate's code.
pub const NO_CODE: u32 = u32::MAX;

/// String → code dictionaries for the four fields policies compare.
#[derive(Debug, Default, Clone)]
pub struct Codes {
    /// `[action, group, issue, channel]` dictionaries.
    pub fields: [HashMap<String, u32>; 4],
}

/// The fields, in the order of [`Codes::fields`] and of an event's codes.
pub const FIELDS: [&str; 4] = ["action_id", "group", "issue", "channel"];

impl Codes {
    /// The code of `value` in field `field`, adding it if new.
    pub fn intern(&mut self, field: usize, value: &str) -> u32 {
        let map = &mut self.fields[field];
        let next = map.len() as u32;
        *map.entry(value.to_owned()).or_insert(next)
    }

    /// The code of `value` in field `field`, or [`NO_CODE`].
    pub fn get(&self, field: usize, value: &str) -> u32 {
        self.fields[field].get(value).copied().unwrap_or(NO_CODE)
    }
}

/// One history event.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Microseconds since the epoch.
    pub time: i64,
    /// Codes of action, group, issue, channel.
    pub codes: [u32; 4],
    /// Bit p: policy p's channel and outcomes count this event.
    pub policies: u64,
}

/// The history's events, in partitions by customer id hash.
#[derive(Debug)]
pub struct History {
    partitions: Vec<Partition>,
    bits: u32,
}

/// log2 of the number of partitions: enough to keep every core busy and each table small.
const PARTITION_BITS: u32 = 6;

#[inline]
fn partition_of(hash: u64, bits: u32) -> usize {
    // The top bits: hashbrown uses the low ones for buckets and the next 7 as tags.
    (hash >> (64 - bits)) as usize
}

/// One partition's events grouped by customer: `events[starts[g]..starts[g + 1]]`, ascending
/// by time.
#[derive(Debug)]
struct Partition {
    index: IdIndex,
    starts: Vec<u32>,
    events: Vec<Event>,
}

impl Partition {
    /// Groups the events at `rows` (of `ids` and `events`) by customer.
    fn build(ids: &IdColumn, events: &[Event], rows: &[u32]) -> Result<Self> {
        let take = arrow_array::UInt32Array::from(rows.to_vec());
        let keys = arrow_select::take::take(&ids.to_array(), &take, None)?;
        let (index, numbers) = IdIndex::build(IdColumn::from_array(&keys, "history")?)?;
        let Groups {
            starts,
            rows: order,
        } = group_rows(&numbers, index.len());
        let mut grouped: Vec<Event> = order
            .iter()
            .map(|&k| events[rows[k as usize] as usize])
            .collect();
        for g in 0..index.len() {
            grouped[starts[g] as usize..starts[g + 1] as usize].sort_unstable_by_key(|e| e.time);
        }
        Ok(Self {
            index,
            starts,
            events: grouped,
        })
    }

    fn for_customer(&self, ids: &IdColumn, row: usize) -> &[Event] {
        match self.index.find(ids, row) {
            Some(g) => {
                let g = g as usize;
                &self.events[self.starts[g] as usize..self.starts[g + 1] as usize]
            }
            None => &[],
        }
    }
}

/// What the history index needs to know of the policies.
pub struct PolicyFilter<'a> {
    /// Per policy: its channel code (`None` = `*`).
    pub channels: Vec<Option<u32>>,
    /// Per policy: the outcomes it counts.
    pub outcomes: Vec<&'a [String]>,
}

impl History {
    /// Validates and indexes the history; events after `now_us`, and events no policy counts,
    /// are left out.
    pub fn build(
        batches: &[RecordBatch],
        customer_kind: IdKind,
        codes: &Codes,
        filter: &PolicyFilter<'_>,
        now_us: i64,
    ) -> Result<Self> {
        // Outcome → bit set of the policies counting it.
        let mut outcome_masks: HashMap<&str, u64> = HashMap::new();
        for (p, outcomes) in filter.outcomes.iter().enumerate() {
            for outcome in outcomes.iter() {
                *outcome_masks.entry(outcome.as_str()).or_insert(0) |= 1 << p;
            }
        }
        let mut id_arrays: Vec<ArrayRef> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut offset = 0usize;
        for batch in batches {
            let ids = column(batch, "customer_id")?;
            if IdKind::of(ids.data_type()).is_some_and(|k| k != customer_kind) {
                return Err(schema_err!(
                    "history: customer_id is {} but the customers' customer_id is {}",
                    ids.data_type(),
                    customer_kind.data_type()
                ));
            }
            let ids = IdColumn::from_array(ids, "history")?;
            let times = timestamps(column(batch, "timestamp")?)?;
            let fields: Vec<Vec<u32>> = FIELDS
                .iter()
                .enumerate()
                .map(|(f, name)| {
                    code_column(column(batch, name)?, name, NO_CODE, |v| codes.get(f, v))
                })
                .collect::<Result<_>>()?;
            let outcomes = code_column(column(batch, "outcome")?, "outcome", 0u64, |v| {
                outcome_masks.get(v).copied().unwrap_or(0)
            })?;
            let mut keep: Vec<u32> = Vec::new();
            for row in 0..batch.num_rows() {
                if times.is_null(row) {
                    let row = offset + row;
                    return Err(data_err!("history: timestamp is null in row {row}"));
                }
                let time = times.value(row);
                let by_outcome = outcomes[row];
                if time > now_us || by_outcome == 0 {
                    continue;
                }
                let channel = fields[3][row];
                let mut policies = 0u64;
                for (p, wanted) in filter.channels.iter().enumerate() {
                    let counted = by_outcome & (1 << p) != 0
                        && wanted.is_none_or(|c| c == channel && channel != NO_CODE);
                    if counted {
                        policies |= 1 << p;
                    }
                }
                if policies == 0 {
                    continue;
                }
                keep.push(row as u32);
                events.push(Event {
                    time,
                    codes: [fields[0][row], fields[1][row], fields[2][row], channel],
                    policies,
                });
            }
            offset += batch.num_rows();
            let take = arrow_array::UInt32Array::from(keep);
            id_arrays.push(arrow_select::take::take(&ids.to_array(), &take, None)?);
        }
        let all = if id_arrays.is_empty() {
            arrow_array::new_empty_array(&customer_kind.data_type())
        } else {
            let refs: Vec<&dyn Array> = id_arrays.iter().map(|a| a.as_ref()).collect();
            arrow_select::concat::concat(&refs)?
        };
        let all = IdColumn::from_array(&all, "history")?;
        // Partitioned by id hash and built on every worker: one big serial hash table costs a
        // cache miss per event. The caller runs this on the engine's pool.
        let bits = PARTITION_BITS;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); 1 << bits];
        for row in 0..all.len() {
            rows_of[partition_of(all.hash_at(row), bits)].push(row as u32);
        }
        let partitions = rows_of
            .into_par_iter()
            .map(|rows| Partition::build(&all, &events, &rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { partitions, bits })
    }

    /// The counted events of customer `ids[row]`, ascending by time.
    #[inline]
    pub fn for_customer(&self, ids: &IdColumn, row: usize) -> &[Event] {
        self.partitions[partition_of(ids.hash_at(row), self.bits)].for_customer(ids, row)
    }
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| schema_err!("history: column {name:?} is missing"))
}

/// Any timestamp column as UTC microseconds (nanoseconds floored).
fn timestamps(array: &ArrayRef) -> Result<arrow_array::PrimitiveArray<TimestampMicrosecondType>> {
    let DataType::Timestamp(unit, tz) = array.data_type() else {
        return Err(schema_err!(
            "history: column \"timestamp\" must be a timestamp, got {}",
            array.data_type()
        ));
    };
    let micros = match unit {
        TimeUnit::Nanosecond => {
            let ns = array.as_primitive::<arrow_array::types::TimestampNanosecondType>();
            let us: arrow_array::PrimitiveArray<TimestampMicrosecondType> =
                ns.unary(|v| v.div_euclid(1_000));
            us.with_timezone_opt(tz.clone())
        }
        _ => arrow_cast::cast(
            array,
            &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        )?
        .as_primitive::<TimestampMicrosecondType>()
        .clone(),
    };
    Ok(micros)
}

/// Maps a string column to codes (`none` for NULL), once per distinct value of a dictionary
/// column.
fn code_column<T: Copy>(
    array: &ArrayRef,
    name: &str,
    none: T,
    code: impl Fn(&str) -> T,
) -> Result<Vec<T>> {
    if !is_text(array.data_type()) {
        return Err(schema_err!(
            "history: column {name:?} must be strings, got {}",
            array.data_type()
        ));
    }
    if let DataType::Dictionary(_, _) = array.data_type() {
        let keys = arrow_cast::cast(
            array,
            &DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
        )?;
        let dictionary = keys.as_dictionary::<arrow_array::types::UInt32Type>();
        let values = dictionary.values().as_string::<i32>();
        let value_codes: Vec<T> = (0..values.len())
            .map(|i| {
                if values.is_valid(i) {
                    code(values.value(i))
                } else {
                    none
                }
            })
            .collect();
        let keys = dictionary.keys();
        return Ok((0..keys.len())
            .map(|i| {
                if keys.is_valid(i) {
                    value_codes[keys.value(i) as usize]
                } else {
                    none
                }
            })
            .collect());
    }
    let strings: StringArray = arrow_cast::cast(array, &DataType::Utf8)?
        .as_string::<i32>()
        .clone();
    let mut last: Option<(&str, T)> = None;
    Ok((0..strings.len())
        .map(|i| {
            if strings.is_null(i) {
                return none;
            }
            let value = strings.value(i);
            // Histories are often sorted by customer with runs of one value: skip the hash then.
            match last {
                Some((previous, c)) if previous == value => c,
                _ => {
                    let c = code(value);
                    last = Some((value, c));
                    c
                }
            }
        })
        .collect())
}
