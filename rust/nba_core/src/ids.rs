//! Customer ids: one normalised column type (int64 or utf8) and a hash index over it.
//!
//! Every table that names customers (customers, propensities, do-not-contact, candidates) goes
//! through [`IdColumn::from_array`], so ids of any integer width or string layout compare alike.
//! The index stores row numbers, not owned keys: no string is copied or re-hashed per probe
//! beyond the one hash of the probing key.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use arrow_cast::{cast_with_options, CastOptions};
use arrow_schema::DataType;
use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::error::Result;
use crate::{data_err, schema_err};

/// The two kinds of customer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// Signed integers of any width and unsigned up to 32 bits, held as int64.
    Int,
    /// Strings of any layout, held as utf8.
    Str,
}

impl IdKind {
    /// The kind an Arrow type normalises to, if any.
    pub fn of(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Some(Self::Int),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Self::Str),
            DataType::Dictionary(_, value) if IdKind::of(value) == Some(Self::Str) => {
                Some(Self::Str)
            }
            _ => None,
        }
    }

    /// The normalised Arrow type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Int => DataType::Int64,
            Self::Str => DataType::Utf8,
        }
    }
}

/// A column of customer ids, normalised and free of nulls.
#[derive(Debug, Clone)]
pub enum IdColumn {
    /// Integer ids.
    Int(Int64Array),
    /// String ids.
    Str(StringArray),
}

impl IdColumn {
    /// Normalises `array` (the `customer_id` column of `table`) and rejects nulls.
    pub fn from_array(array: &ArrayRef, table: &str) -> Result<Self> {
        let kind = IdKind::of(array.data_type()).ok_or_else(|| {
            schema_err!(
                "{table}: column \"customer_id\" must be an integer or a string, got {}",
                array.data_type()
            )
        })?;
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let normalised = cast_with_options(array, &kind.data_type(), &options).map_err(|err| {
            data_err!(
                "{table}: column \"customer_id\" does not fit {}: {err}",
                kind.data_type()
            )
        })?;
        if normalised.null_count() > 0 {
            let row = (0..normalised.len())
                .find(|&i| normalised.is_null(i))
                .unwrap_or_default();
            return Err(data_err!("{table}: customer_id is null in row {row}"));
        }
        Ok(match kind {
            IdKind::Int => Self::Int(normalised.as_primitive::<Int64Type>().clone()),
            IdKind::Str => Self::Str(normalised.as_string::<i32>().clone()),
        })
    }

    /// A copy in buffers of its own. A column read from a stream shares its buffers with the
    /// whole batch it came in (an imported Arrow C batch is freed as one), so keeping it past
    /// the batch would keep every other column of the batch alive too.
    pub fn to_owned_buffers(&self) -> Self {
        match self {
            Self::Int(ids) => Self::Int(Int64Array::from(ids.values().to_vec())),
            Self::Str(ids) => Self::Str(StringArray::from_iter_values(
                (0..ids.len()).map(|row| ids.value(row)),
            )),
        }
    }

    /// The kind of these ids.
    pub fn kind(&self) -> IdKind {
        match self {
            Self::Int(_) => IdKind::Int,
            Self::Str(_) => IdKind::Str,
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            Self::Int(a) => a.len(),
            Self::Str(a) => a.len(),
        }
    }

    /// True when there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids as an Arrow array (int64 or utf8).
    pub fn to_array(&self) -> ArrayRef {
        match self {
            Self::Int(a) => std::sync::Arc::new(a.clone()),
            Self::Str(a) => std::sync::Arc::new(a.clone()),
        }
    }

    /// The hash of id `row`; equal ids hash alike across columns of the same kind.
    #[inline]
    pub fn hash_at(&self, row: usize) -> u64 {
        match self {
            Self::Int(a) => id_hash_int(a.value(row)),
            Self::Str(a) => id_hash_str(a.value(row)),
        }
    }

    /// Whether id `row` equals id `other_row` of `other` (false across kinds).
    #[inline]
    pub fn eq_at(&self, row: usize, other: &IdColumn, other_row: usize) -> bool {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.value(row) == b.value(other_row),
            (Self::Str(a), Self::Str(b)) => a.value(row) == b.value(other_row),
            _ => false,
        }
    }

    /// Orders id `row` against id `other_row` of a column of the same kind (numeric or bytes).
    #[inline]
    pub fn cmp_at(&self, row: usize, other: &IdColumn, other_row: usize) -> Ordering {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.value(row).cmp(&b.value(other_row)),
            (Self::Str(a), Self::Str(b)) => {
                a.value(row).as_bytes().cmp(b.value(other_row).as_bytes())
            }
            (Self::Int(_), Self::Str(_)) => Ordering::Less,
            (Self::Str(_), Self::Int(_)) => Ordering::Greater,
        }
    }

    /// Id `row` as text for an error message.
    pub fn display(&self, row: usize) -> String {
        match self {
            Self::Int(a) => a.value(row).to_string(),
            Self::Str(a) => format!("{:?}", a.value(row)),
        }
    }
}

/// The one hasher of ids, so equal ids hash alike wherever they come from.
#[inline]
fn id_hasher() -> FixedState {
    FixedState::with_seed(0x6e62_615f_6661_7374)
}

/// The hash of an integer id, as [`IdColumn::hash_at`] computes it.
#[inline]
pub(crate) fn id_hash_int(id: i64) -> u64 {
    id_hasher().hash_one(id)
}

/// The hash of a string id, as [`IdColumn::hash_at`] computes it.
#[inline]
pub(crate) fn id_hash_str(id: &str) -> u64 {
    id_hasher().hash_one(id.as_bytes())
}

/// The distinct ids of one column, each numbered by first appearance.
#[derive(Debug)]
pub struct IdIndex {
    keys: IdColumn,
    /// Entries are (the id, or for strings the row of its first appearance; its number).
    table: HashTable<(u64, u32)>,
    len: u32,
}

impl IdIndex {
    /// Indexes `keys`; returns the index and, for each row, the number of its distinct id.
    pub fn build(keys: IdColumn) -> Result<(Self, Vec<u32>)> {
        let rows = keys.len();
        if u32::try_from(rows).is_err() {
            return Err(data_err!("more than {} ids in one table", u32::MAX));
        }
        // Sized for the rows up to a point: a long history has far fewer distinct customers than
        // rows, and an oversized table costs a cache miss per probe.
        let mut table: HashTable<(u64, u32)> = HashTable::with_capacity(rows.min(1 << 20));
        let mut numbers = Vec::with_capacity(rows);
        let mut len = 0u32;
        for row in 0..rows {
            let hash = keys.hash_at(row);
            let found = table.find(hash, |&(slot, _)| Self::slot_eq(&keys, slot, &keys, row));
            let number = match found {
                Some(&(_, number)) => number,
                None => {
                    table.insert_unique(hash, (Self::slot_of(&keys, row), len), |&(slot, _)| {
                        Self::slot_hash(&keys, slot)
                    });
                    len += 1;
                    len - 1
                }
            };
            numbers.push(number);
        }
        Ok((Self { keys, table, len }, numbers))
    }

    /// What an entry stores: an integer id itself (so a probe reads no second cache line),
    /// or the row of a string id's first appearance.
    #[inline]
    fn slot_of(keys: &IdColumn, row: usize) -> u64 {
        match keys {
            IdColumn::Int(a) => a.value(row) as u64,
            IdColumn::Str(_) => row as u64,
        }
    }

    #[inline]
    fn slot_hash(keys: &IdColumn, slot: u64) -> u64 {
        match keys {
            IdColumn::Int(_) => id_hasher().hash_one(slot as i64),
            IdColumn::Str(_) => keys.hash_at(slot as usize),
        }
    }

    #[inline]
    fn slot_eq(keys: &IdColumn, slot: u64, probe: &IdColumn, row: usize) -> bool {
        match (keys, probe) {
            (IdColumn::Int(_), IdColumn::Int(p)) => slot as i64 == p.value(row),
            (IdColumn::Str(_), IdColumn::Str(_)) => keys.eq_at(slot as usize, probe, row),
            _ => false,
        }
    }

    /// The number of the id equal to `probe[row]`, if indexed.
    #[inline]
    pub fn find(&self, probe: &IdColumn, row: usize) -> Option<u32> {
        let hash = probe.hash_at(row);
        self.table
            .find(hash, |&(slot, _)| {
                Self::slot_eq(&self.keys, slot, probe, row)
            })
            .map(|&(_, number)| number)
    }

    /// Number of distinct ids.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kind of the indexed ids.
    pub fn kind(&self) -> IdKind {
        self.keys.kind()
    }
}

/// String columns of any layout, or the all-NULL `null` type.
pub(crate) fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// Row numbers grouped by their id's number: `rows[starts[g]..starts[g + 1]]` are the rows of
/// id `g`, in row order (a counting sort: one pass to count, one to place).
pub(crate) struct Groups {
    pub starts: Vec<u32>,
    pub rows: Vec<u32>,
}

/// Groups rows `0..numbers.len()` by `numbers[row]` (each below `groups`).
pub(crate) fn group_rows(numbers: &[u32], groups: usize) -> Groups {
    let mut starts = vec![0u32; groups + 1];
    for &n in numbers {
        starts[n as usize + 1] += 1;
    }
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut cursor = starts.clone();
    let mut rows = vec![0u32; numbers.len()];
    for (row, &n) in numbers.iter().enumerate() {
        rows[cursor[n as usize] as usize] = row as u32;
        cursor[n as usize] += 1;
    }
    Groups { starts, rows }
}
