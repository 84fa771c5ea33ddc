//! The interaction history, indexed once per call: events grouped by customer, sorted by time,
//! with their action, group, issue and channel as integer codes and, per event, the set of
//! policies whose channel and outcomes count it.
//!
//! Strings are mapped to codes once per distinct value (dictionary-encoded columns: once per
//! dictionary entry), so the policy checks compare integers only.

use std::collections::HashMap;

use arrow_array::builder::{ArrayBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use hashbrown::HashTable;

use rayon::prelude::*;

use crate::error::Result;
use crate::ids::{id_hash_int, id_hash_str, is_text, IdColumn, IdKind};
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

impl Event {
    /// A placeholder for a slot a grouping pass fills: no time, no codes, counted by no policy.
    const EMPTY: Self = Self {
        time: 0,
        codes: [NO_CODE; 4],
        policies: 0,
    };
}

/// The history's events grouped by customer, each customer's ascending by time.
#[derive(Debug)]
pub struct History {
    index: Index,
}

/// How a customer finds their events.
#[derive(Debug)]
enum Index {
    /// Integer ids in a range not much wider than the kept events, in ranges of `2^shift` ids:
    /// customer `base + i` is slot `i`, its events those of its slot in range `i >> shift`
    /// (see [`DenseRange`]). A lookup is two adjacent loads, and customers in id order read the
    /// events in order (counting sorts build it, with no hashing).
    Dense {
        base: i64,
        /// log2 of the ids per range.
        shift: u32,
        ranges: Vec<DenseRange>,
    },
    /// Any ids: partitions by id hash, each a hash table of customers.
    Hashed {
        partitions: Vec<Partition>,
        bits: u32,
        /// String ids, the kept ones of each chunk of input rows: a string id's key is
        /// `chunk << 32 | position`.
        /// Empty for integer ids, whose key is the id itself.
        strings: Vec<StringArray>,
    },
}

/// One range of the dense index: slot `s` (counted from the range's first id) has
/// `events[offsets[s]..offsets[s + 1]]`.
#[derive(Debug)]
struct DenseRange {
    offsets: Vec<u32>,
    events: Vec<Event>,
}

/// The dense index is used when the id range is at most this many slots per kept event
/// (plus [`DENSE_SLACK`]): its offsets then cost at most 4 bytes × this per event.
const DENSE_SLOTS_PER_EVENT: u64 = 8;
const DENSE_SLACK: u64 = 1 << 16;

/// log2 of the number of partitions: enough to keep every core busy and each table small.
const PARTITION_BITS: u32 = 6;

/// Rows of input read as one task: small enough to spread over the cores.
const CHUNK_ROWS: usize = 1 << 18;

/// Batches under this many rows are joined with their neighbours into one chunk (see
/// [`Small`]): each chunk costs a routing table of up to a few hundred small vectors.
const SMALL_ROWS: usize = CHUNK_ROWS / 8;

#[inline]
fn partition_of(hash: u64, bits: u32) -> usize {
    // Middle bits: hashbrown picks buckets by the low bits (fewer than 32 of them for any table
    // here) and tags entries by the top 7, which must vary within a partition or every probe
    // compares keys of entries whose tags collide.
    ((hash >> 32) & ((1 << bits) - 1)) as usize
}

/// A kept event with its customer: the id's hash and key (see [`Index::Hashed`]).
#[derive(Debug, Clone, Copy)]
struct Keyed {
    hash: u64,
    key: u64,
    event: Event,
}

/// One partition's events grouped by customer, each group ascending by time: the customer
/// whose table entry is `(key, start, len)` has `events[start..start + len]`. The entry holds
/// the range itself so a probe touches two cache lines: the entry and the events.
#[derive(Debug)]
struct Partition {
    table: HashTable<(u64, u32, u32)>,
    events: Vec<Event>,
}

/// How a partition compares keys: integer ids are their own key, string ids live in `strings`.
#[derive(Clone, Copy)]
struct Keys<'a> {
    strings: &'a [StringArray],
}

impl Keys<'_> {
    #[inline]
    fn text(&self, key: u64) -> &str {
        self.strings[(key >> 32) as usize].value((key & 0xffff_ffff) as usize)
    }

    #[inline]
    fn hash(&self, key: u64) -> u64 {
        if self.strings.is_empty() {
            id_hash_int(key as i64)
        } else {
            id_hash_str(self.text(key))
        }
    }

    #[inline]
    fn eq(&self, a: u64, b: u64) -> bool {
        a == b || (!self.strings.is_empty() && self.text(a) == self.text(b))
    }
}

impl Partition {
    /// Groups a partition's events (from every chunk) by customer, each group by time.
    fn build(chunks: &[&[Keyed]], keys: Keys<'_>) -> Self {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        // Sized for a few events per customer: an oversized table costs a miss per probe.
        let mut table: HashTable<(u64, u32, u32)> = HashTable::with_capacity(total / 4 + 16);
        let mut groups: Vec<u32> = Vec::with_capacity(total);
        let mut counts: Vec<u32> = Vec::new();
        for keyed in chunks.iter().flat_map(|c| c.iter()) {
            let found = table.find(keyed.hash, |&(key, _, _)| keys.eq(key, keyed.key));
            let group = match found {
                Some(&(_, g, _)) => g,
                None => {
                    let g = counts.len() as u32;
                    table.insert_unique(keyed.hash, (keyed.key, g, 0), |&(key, _, _)| {
                        keys.hash(key)
                    });
                    counts.push(0);
                    g
                }
            };
            counts[group as usize] += 1;
            groups.push(group);
        }
        let mut starts = Vec::with_capacity(counts.len() + 1);
        let mut sum = 0u32;
        starts.push(0);
        for &count in &counts {
            sum += count;
            starts.push(sum);
        }
        let mut cursor: Vec<u32> = starts[..counts.len()].to_vec();
        let mut events = vec![Event::EMPTY; total];
        for (keyed, &g) in chunks.iter().flat_map(|c| c.iter()).zip(&groups) {
            let slot = &mut cursor[g as usize];
            events[*slot as usize] = keyed.event;
            *slot += 1;
        }
        for g in 0..counts.len() {
            let group = &mut events[starts[g] as usize..starts[g + 1] as usize];
            if group.len() > 1 {
                group.sort_unstable_by_key(|e| e.time);
            }
        }
        for entry in table.iter_mut() {
            let g = entry.1 as usize;
            *entry = (entry.0, starts[g], counts[g]);
        }
        Self { table, events }
    }
}

/// What the history index needs to know of the policies.
pub struct PolicyFilter<'a> {
    /// Per policy: its channel code (`None` = `*`).
    pub channels: Vec<Option<u32>>,
    /// Per policy: the outcomes it counts.
    pub outcomes: Vec<&'a [String]>,
    /// Per policy: events at or before this time (µs) cannot change its verdict at `now`.
    pub horizons: Vec<i64>,
}

/// The per-call constants of reading history rows.
struct Reader<'a> {
    customer_kind: IdKind,
    codes: &'a Codes,
    filter: &'a PolicyFilter<'a>,
    outcome_masks: HashMap<&'a str, u64>,
    now_us: i64,
    /// The earliest horizon: no policy counts an event at or before it.
    oldest: i64,
}

/// A string column's codes, row by row; a dictionary column maps each dictionary entry once
/// and each row on demand (most history rows are dropped by time before their fields matter).
enum Coder<T> {
    Dictionary {
        keys: DictKeys,
        valid: Option<arrow_buffer::NullBuffer>,
        codes: Vec<T>,
        none: T,
    },
    Plain(Vec<T>),
}

impl<T: Copy> Coder<T> {
    fn new(array: &ArrayRef, name: &str, none: T, code: impl Fn(&str) -> T) -> Result<Self> {
        if let DataType::Dictionary(_, value) = array.data_type() {
            if is_text(value) {
                let dictionary = array.as_any_dictionary();
                let values = arrow_cast::cast(dictionary.values(), &DataType::Utf8)?;
                let values = values.as_string::<i32>();
                let codes = (0..values.len())
                    .map(|i| {
                        if values.is_valid(i) {
                            code(values.value(i))
                        } else {
                            none
                        }
                    })
                    .collect();
                return Ok(Self::Dictionary {
                    keys: DictKeys::of(dictionary.keys())?,
                    valid: dictionary.keys().logical_nulls(),
                    codes,
                    none,
                });
            }
        }
        Ok(Self::Plain(code_column(array, name, none, code)?))
    }

    #[inline(always)]
    fn get(&self, row: usize) -> T {
        match self {
            Self::Dictionary {
                keys,
                valid,
                codes,
                none,
            } => {
                if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                    *none
                } else {
                    codes.get(keys.get(row)).copied().unwrap_or(*none)
                }
            }
            Self::Plain(codes) => codes[row],
        }
    }
}

/// A dictionary's keys, read in place whatever their integer type.
enum DictKeys {
    I8(arrow_buffer::ScalarBuffer<i8>),
    I16(arrow_buffer::ScalarBuffer<i16>),
    I32(arrow_buffer::ScalarBuffer<i32>),
    I64(arrow_buffer::ScalarBuffer<i64>),
    U8(arrow_buffer::ScalarBuffer<u8>),
    U16(arrow_buffer::ScalarBuffer<u16>),
    U32(arrow_buffer::ScalarBuffer<u32>),
    U64(arrow_buffer::ScalarBuffer<u64>),
}

impl DictKeys {
    fn of(keys: &dyn Array) -> Result<Self> {
        use arrow_array::types::*;
        macro_rules! keys {
            ($variant:ident, $type:ty) => {
                Self::$variant(keys.as_primitive::<$type>().values().clone())
            };
        }
        Ok(match keys.data_type() {
            DataType::Int8 => keys!(I8, Int8Type),
            DataType::Int16 => keys!(I16, Int16Type),
            DataType::Int32 => keys!(I32, Int32Type),
            DataType::Int64 => keys!(I64, Int64Type),
            DataType::UInt8 => keys!(U8, UInt8Type),
            DataType::UInt16 => keys!(U16, UInt16Type),
            DataType::UInt32 => keys!(U32, UInt32Type),
            DataType::UInt64 => keys!(U64, UInt64Type),
            other => return Err(schema_err!("history: dictionary keys of type {other}")),
        })
    }

    /// Key `row` as an index; a negative key (invalid Arrow) maps past any dictionary.
    #[inline(always)]
    fn get(&self, row: usize) -> usize {
        match self {
            Self::I8(k) => usize::try_from(k[row]).unwrap_or(usize::MAX),
            Self::I16(k) => usize::try_from(k[row]).unwrap_or(usize::MAX),
            Self::I32(k) => usize::try_from(k[row]).unwrap_or(usize::MAX),
            Self::I64(k) => usize::try_from(k[row]).unwrap_or(usize::MAX),
            Self::U8(k) => k[row] as usize,
            Self::U16(k) => k[row] as usize,
            Self::U32(k) => k[row] as usize,
            Self::U64(k) => usize::try_from(k[row]).unwrap_or(usize::MAX),
        }
    }
}

/// One chunk of input rows' kept events, in row order, with their customers: `keys[i]` is
/// the integer id of `events[i]`'s customer or, for string ids, its position in `strings`
/// (which holds only the kept events' ids, so a chunk keeps nothing of its batch).
struct Chunk {
    keys: Vec<u64>,
    events: Vec<Event>,
    strings: Option<StringArray>,
}

impl Reader<'_> {
    /// Validates one chunk (rows `first_row..` of the whole history) and keeps the events some
    /// policy counts.
    fn read(&self, batch: &RecordBatch, first_row: usize) -> Result<Chunk> {
        let ids = column(batch, "customer_id")?;
        if IdKind::of(ids.data_type()).is_some_and(|k| k != self.customer_kind) {
            return Err(schema_err!(
                "history: customer_id is {} but the customers' customer_id is {}",
                ids.data_type(),
                self.customer_kind.data_type()
            ));
        }
        let ids =
            IdColumn::from_array(ids, "history").map_err(|err| offset_rows(err, first_row))?;
        let times = timestamps(column(batch, "timestamp")?)?;
        let codes = self.codes;
        let fields: Vec<Coder<u32>> = FIELDS
            .iter()
            .enumerate()
            .map(|(f, name)| Coder::new(column(batch, name)?, name, NO_CODE, |v| codes.get(f, v)))
            .collect::<Result<_>>()?;
        let outcomes = Coder::new(column(batch, "outcome")?, "outcome", 0u64, |v| {
            self.outcome_masks.get(v).copied().unwrap_or(0)
        })?;
        let n = batch.num_rows();
        let time_nulls = times.null_count() > 0;
        if time_nulls {
            if let Some(row) = (0..n).find(|&row| times.is_null(row)) {
                let row = first_row + row;
                return Err(data_err!("history: timestamp is null in row {row}"));
            }
        }
        // Row at a time, each field read only for the rows still kept: most rows are dropped
        // by time or outcome before their other fields matter.
        let mut keys: Vec<u64> = Vec::with_capacity(n / 2);
        let mut events: Vec<Event> = Vec::with_capacity(n / 2);
        let mut strings = match &ids {
            IdColumn::Str(_) => Some(StringBuilder::new()),
            IdColumn::Int(_) => None,
        };
        let time_values = times.values();
        let filter = self.filter;
        for (row, &time) in time_values.iter().enumerate() {
            if time > self.now_us || time <= self.oldest {
                continue;
            }
            let by_outcome = outcomes.get(row);
            if by_outcome == 0 {
                continue;
            }
            let channel = fields[3].get(row);
            let mut policies = 0u64;
            for (p, wanted) in filter.channels.iter().enumerate() {
                let counts = by_outcome & (1 << p) != 0
                    && time > filter.horizons[p]
                    && wanted.is_none_or(|c| c == channel && channel != NO_CODE);
                if counts {
                    policies |= 1 << p;
                }
            }
            if policies == 0 {
                continue;
            }
            events.push(Event {
                time,
                codes: [
                    fields[0].get(row),
                    fields[1].get(row),
                    fields[2].get(row),
                    channel,
                ],
                policies,
            });
            match (&ids, &mut strings) {
                (IdColumn::Int(a), _) => keys.push(a.value(row) as u64),
                (IdColumn::Str(a), Some(kept)) => {
                    keys.push(kept.len() as u64);
                    kept.append_value(a.value(row));
                }
                (IdColumn::Str(_), None) => unreachable!("a string id column has a builder"),
            }
        }
        // Exact sizes: the chunks are held until every row is read.
        keys.shrink_to_fit();
        events.shrink_to_fit();
        Ok(Chunk {
            keys,
            events,
            strings: strings.map(|mut kept| kept.finish()),
        })
    }
}

/// Consecutive small batches of one schema waiting to be read as one chunk.
#[derive(Default)]
struct Small {
    batches: Vec<RecordBatch>,
    rows: usize,
    /// The first one's row in the whole history.
    first_row: usize,
}

impl Small {
    /// Adds `batch` (at row `first_row` of the history), flushing first when its schema
    /// differs and after when the chunk is full.
    fn push(
        &mut self,
        batch: RecordBatch,
        first_row: usize,
        group: &mut Vec<(RecordBatch, usize)>,
    ) -> Result<()> {
        if self
            .batches
            .first()
            .is_some_and(|b| b.schema() != batch.schema())
        {
            self.flush(group)?;
        }
        if self.batches.is_empty() {
            self.first_row = first_row;
        }
        self.rows += batch.num_rows();
        self.batches.push(batch);
        if self.rows >= SMALL_ROWS {
            self.flush(group)?;
        }
        Ok(())
    }

    /// Moves the waiting batches, joined, into `group`.
    fn flush(&mut self, group: &mut Vec<(RecordBatch, usize)>) -> Result<()> {
        let joined = match self.batches.len() {
            0 => return Ok(()),
            1 => self.batches.swap_remove(0),
            _ => arrow_select::concat::concat_batches(&self.batches[0].schema(), &self.batches)?,
        };
        group.push((joined, self.first_row));
        self.batches.clear();
        self.rows = 0;
        Ok(())
    }
}

/// Renumbers the row in a "row N" message of a chunk to the whole history's row.
fn offset_rows(err: crate::error::NbaError, first_row: usize) -> crate::error::NbaError {
    if first_row == 0 {
        return err;
    }
    match err {
        crate::error::NbaError::Data(message) => {
            let fixed = match message.rsplit_once(" in row ") {
                Some((head, row)) => match row.parse::<usize>() {
                    Ok(row) => format!("{head} in row {}", row + first_row),
                    Err(_) => message,
                },
                None => message,
            };
            crate::error::NbaError::Data(fixed)
        }
        other => other,
    }
}

impl History {
    /// Validates and indexes the history, read batch by batch; events after `now_us`, and
    /// events no policy counts (by channel, outcome or horizon), are left out. Runs on the
    /// caller's rayon pool: chunks of rows are read in parallel, then grouped by customer: by
    /// a counting sort when the ids are integers in a range not much wider than the kept events
    /// ([`Index::Dense`]), else in hash partitions grouped in parallel.
    pub fn build<I>(
        batches: I,
        customer_kind: IdKind,
        codes: &Codes,
        filter: &PolicyFilter<'_>,
        now_us: i64,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = std::result::Result<RecordBatch, ArrowError>>,
    {
        // Outcome → bit set of the policies counting it.
        let mut outcome_masks: HashMap<&str, u64> = HashMap::new();
        for (p, outcomes) in filter.outcomes.iter().enumerate() {
            for outcome in outcomes.iter() {
                *outcome_masks.entry(outcome.as_str()).or_insert(0) |= 1 << p;
            }
        }
        let reader = Reader {
            customer_kind,
            codes,
            filter,
            outcome_masks,
            now_us,
            oldest: filter.horizons.iter().copied().min().unwrap_or(i64::MAX),
        };
        // The input is read a group of chunks at a time, each group's chunks in parallel, so
        // only a group of input batches is held at once (a stream need not fit in memory).
        let group_rows = CHUNK_ROWS * 2 * rayon::current_num_threads().max(1);
        let read_group = |group: &mut Vec<(RecordBatch, usize)>, chunks: &mut Vec<Chunk>| {
            let read: Vec<Result<Chunk>> = group
                .par_iter()
                .map(|(batch, first_row)| reader.read(batch, *first_row))
                .collect();
            group.clear();
            // The first error in row order, whichever worker found it first.
            for chunk in read {
                chunks.push(chunk?);
            }
            Ok::<(), crate::error::NbaError>(())
        };
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut group: Vec<(RecordBatch, usize)> = Vec::new();
        let mut group_len = 0usize;
        let mut offset = 0usize;
        // Small batches (a database cursor's, say) are joined into chunks of at least
        // SMALL_ROWS rows: every chunk costs a routing table of its own when the index is built.
        let mut small = Small::default();
        for batch in batches {
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    small.flush(&mut group)?;
                    read_group(&mut group, &mut chunks)?;
                    return Err(data_err!(
                        "history: the stream failed after {offset} rows: {err}"
                    ));
                }
            };
            let rows = batch.num_rows();
            if rows < SMALL_ROWS {
                // Zero-row batches too: an empty history's schema is still checked.
                small.push(batch, offset, &mut group)?;
            } else {
                small.flush(&mut group)?;
                let mut start = 0;
                while start < rows {
                    let len = CHUNK_ROWS.min(rows - start);
                    group.push((batch.slice(start, len), offset + start));
                    start += len;
                }
            }
            offset += rows;
            group_len += rows;
            if group_len >= group_rows {
                small.flush(&mut group)?;
                read_group(&mut group, &mut chunks)?;
                group_len = 0;
            }
        }
        small.flush(&mut group)?;
        read_group(&mut group, &mut chunks)?;
        if u32::try_from(chunks.len()).is_err() {
            return Err(data_err!("history: too many rows"));
        }
        let index = match dense_route(&chunks, customer_kind) {
            Some((low, shift, ranges)) => dense_index(chunks, low, shift, ranges),
            None => hashed_index(chunks, customer_kind, PARTITION_BITS),
        };
        // The chunks and their routing are freed: most of what was read.
        crate::memory::release_freed();
        Ok(Self { index })
    }

    /// The counted events of customer `ids[row]`, ascending by time.
    #[inline]
    pub fn for_customer(&self, ids: &IdColumn, row: usize) -> &[Event] {
        match &self.index {
            Index::Dense {
                base,
                shift,
                ranges,
            } => {
                let IdColumn::Int(a) = ids else { return &[] };
                let slot = a.value(row).wrapping_sub(*base) as u64 as usize;
                let Some(range) = ranges.get(slot >> shift) else {
                    return &[];
                };
                let local = slot & ((1 << shift) - 1);
                match (range.offsets.get(local), range.offsets.get(local + 1)) {
                    (Some(&start), Some(&end)) => &range.events[start as usize..end as usize],
                    _ => &[],
                }
            }
            Index::Hashed {
                partitions,
                bits,
                strings,
            } => {
                let hash = ids.hash_at(row);
                let partition = &partitions[partition_of(hash, *bits)];
                let keys = Keys { strings };
                let found = partition.table.find(hash, |&(key, _, _)| match ids {
                    IdColumn::Int(a) => key as i64 == a.value(row) && keys.strings.is_empty(),
                    IdColumn::Str(a) => !keys.strings.is_empty() && keys.text(key) == a.value(row),
                });
                match found {
                    Some(&(_, start, len)) => {
                        &partition.events[start as usize..start as usize + len as usize]
                    }
                    None => &[],
                }
            }
        }
    }

    /// The counted events of every customer of `ids`, looked up in one tight loop whose
    /// independent probes the CPU overlaps (each is a cache miss at millions of customers).
    pub fn for_customers(&self, ids: &IdColumn) -> Vec<&[Event]> {
        (0..ids.len())
            .map(|row| self.for_customer(ids, row))
            .collect()
    }
}

/// The dense index's base id, log2 of its ids per range and its number of ranges, when every
/// kept event's `customer_id` is an integer and their range is at most
/// [`DENSE_SLOTS_PER_EVENT`] slots per kept event (plus [`DENSE_SLACK`]); else `None` (hash).
fn dense_route(chunks: &[Chunk], customer_kind: IdKind) -> Option<(i64, u32, usize)> {
    if customer_kind != IdKind::Int {
        return None;
    }
    let (low, high, kept) = chunks
        .par_iter()
        .map(|chunk| {
            let (min, max) = chunk
                .keys
                .iter()
                .fold((i64::MAX, i64::MIN), |(min, max), &key| {
                    (min.min(key as i64), max.max(key as i64))
                });
            (min, max, chunk.keys.len() as u64)
        })
        .reduce(
            || (i64::MAX, i64::MIN, 0),
            |a, b| (a.0.min(b.0), a.1.max(b.1), a.2 + b.2),
        );
    if low > high {
        return None;
    }
    let span = (high as i128 - low as i128 + 1) as u128;
    let most = (kept as u128) * DENSE_SLOTS_PER_EVENT as u128 + DENSE_SLACK as u128;
    if span > most || span >= u32::MAX as u128 || kept >= u32::MAX as u64 {
        return None;
    }
    let span = span as usize;
    // Ranges of 2^shift ids: a few hundred of them at most, of at least a thousand ids.
    let shift = (usize::BITS - span.leading_zeros())
        .saturating_sub(8)
        .max(10);
    Some((low, shift, ((span - 1) >> shift) + 1))
}

/// The dense index from chunks routed by id range: each range counting-sorted by id and each
/// customer's events sorted by time, the ranges in parallel (each small enough to stay in cache
/// while it is scattered).
fn dense_index(chunks: Vec<Chunk>, low: i64, shift: u32, ranges: usize) -> Index {
    // Each chunk's events routed to their range (the chunk is freed as it is routed).
    let routed: Vec<Vec<Vec<(u32, Event)>>> = chunks
        .into_par_iter()
        .map(|chunk| {
            // Room for an even share of the events: most ranges never grow.
            let share = chunk.events.len() / ranges / 2 + 16;
            let mut parts: Vec<Vec<(u32, Event)>> =
                (0..ranges).map(|_| Vec::with_capacity(share)).collect();
            for (&key, &event) in chunk.keys.iter().zip(&chunk.events) {
                let slot = (key as i64).wrapping_sub(low) as u64 as usize;
                parts[slot >> shift].push((slot as u32, event));
            }
            parts
        })
        .collect();
    let parts = (0..ranges)
        .into_par_iter()
        .map(|r| {
            let first = r << shift;
            let width = 1usize << shift;
            let mut offsets = vec![0u32; width + 1];
            for chunk in &routed {
                for &(slot, _) in &chunk[r] {
                    offsets[slot as usize - first + 1] += 1;
                }
            }
            for i in 1..offsets.len() {
                offsets[i] += offsets[i - 1];
            }
            let mut cursor: Vec<u32> = offsets[..width].to_vec();
            let mut events = vec![Event::EMPTY; offsets[width] as usize];
            for chunk in &routed {
                for &(slot, event) in &chunk[r] {
                    let at = &mut cursor[slot as usize - first];
                    events[*at as usize] = event;
                    *at += 1;
                }
            }
            for w in offsets.windows(2) {
                let group = &mut events[w[0] as usize..w[1] as usize];
                if group.len() > 1 {
                    group.sort_unstable_by_key(|e| e.time);
                }
            }
            DenseRange { offsets, events }
        })
        .collect();
    Index::Dense {
        base: low,
        shift,
        ranges: parts,
    }
}

/// The hashed index: each partition (its events from every chunk) grouped by customer, the
/// partitions in parallel.
fn hashed_index(chunks: Vec<Chunk>, customer_kind: IdKind, bits: u32) -> Index {
    let strings: Vec<StringArray> = match customer_kind {
        IdKind::Str => chunks
            .iter()
            .map(|c| {
                c.strings
                    .clone()
                    .unwrap_or_else(|| StringArray::from(Vec::<&str>::new()))
            })
            .collect(),
        IdKind::Int => Vec::new(),
    };
    let keys = Keys { strings: &strings };
    // Each chunk's events routed to their partition (the chunk is freed as it is routed).
    let routed: Vec<Vec<Vec<Keyed>>> = chunks
        .into_par_iter()
        .enumerate()
        .map(|(c, chunk)| {
            let share = (chunk.events.len() >> bits) / 2 + 16;
            let mut parts: Vec<Vec<Keyed>> =
                (0..1 << bits).map(|_| Vec::with_capacity(share)).collect();
            for (&kept, &event) in chunk.keys.iter().zip(&chunk.events) {
                // Integer ids are their own key; a string id is its chunk and position.
                let key = if keys.strings.is_empty() {
                    kept
                } else {
                    ((c as u64) << 32) | kept
                };
                let hash = keys.hash(key);
                parts[partition_of(hash, bits)].push(Keyed { hash, key, event });
            }
            parts
        })
        .collect();
    let partitions = (0..1usize << bits)
        .into_par_iter()
        .map(|p| {
            let parts: Vec<&[Keyed]> = routed
                .iter()
                .filter_map(|c| c.get(p).map(Vec::as_slice))
                .collect();
            Partition::build(&parts, keys)
        })
        .collect();
    drop(routed);
    Index::Hashed {
        partitions,
        bits,
        strings,
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
