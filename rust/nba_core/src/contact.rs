//! Contactability: address present, not opted out, not on the do-not-contact list.
//!
//! Computed once per (customer, channel), not per candidate: a batch yields one reason code per
//! row for each channel of the catalog, and every action on that channel reads it.

use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};
use hashbrown::HashTable;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::funnel::Drop;
use crate::ids::{is_text, IdColumn, IdIndex, IdKind};
use crate::{config_err, data_err, schema_err};

/// Blocked addresses → the bit set of channels they are blocked on.
///
/// Probed once per customer with an email and once with a phone, and almost every probe misses
/// (bank-2m: 4 M probes, 7,000 addresses). So a filter of one bit per hash slot, at most 1 MiB
/// and mostly in L1 or L2, answers most probes without touching the table, whose entries are
/// then read only for the few hashes that collide in it. foldhash, not SipHash: each probe
/// hashes the address once.
#[derive(Debug, Default)]
struct AddressIndex {
    hasher: foldhash::fast::RandomState,
    table: HashTable<(Box<str>, u64)>,
    /// Bit `h % (64 · filter.len())` set for the hash `h` of each address in the table.
    filter: Vec<u64>,
}

impl AddressIndex {
    /// Indexes `entries` (an address and a channel bit; an address may repeat).
    fn new<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut index = Self::default();
        for (address, bit) in entries {
            let hash = index.hasher.hash_one(address);
            match index.table.find_mut(hash, |(a, _)| **a == *address) {
                Some((_, bits)) => *bits |= bit,
                None => {
                    let hasher = &index.hasher;
                    index
                        .table
                        .insert_unique(hash, (address.into(), bit), |(a, _)| hasher.hash_one(&**a));
                }
            }
        }
        // About 32 filter bits per address (a probe that misses passes the filter about 3% of
        // the time), a power of two between 4 KiB and 1 MiB.
        let bits = (index.table.len() * 32)
            .next_power_of_two()
            .clamp(1 << 15, 1 << 23);
        index.filter = vec![0u64; bits / 64];
        for (address, _) in index.table.iter() {
            let slot = index.slot(index.hasher.hash_one(&**address));
            index.filter[slot / 64] |= 1 << (slot % 64);
        }
        index
    }

    /// The filter slot of `hash`: from its high bits, as hashbrown places entries by the low
    /// ones.
    fn slot(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.filter.len() * 64 - 1)
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The channel bits `address` is blocked on (0: none).
    #[inline]
    fn get(&self, address: &str) -> u64 {
        if self.filter.is_empty() {
            return 0; // the empty index (built by `default`)
        }
        let hash = self.hasher.hash_one(address);
        let slot = self.slot(hash);
        if self.filter[slot / 64] >> (slot % 64) & 1 == 0 {
            return 0;
        }
        self.table
            .find(hash, |(a, _)| **a == *address)
            .map_or(0, |&(_, bits)| bits)
    }
}

/// The channel name that stands for every channel in the do-not-contact list.
pub const ALL_CHANNELS: &str = "*";

/// The customers' column holding the address a channel needs, if it needs one.
pub fn address_column(channel: &str) -> Option<&'static str> {
    match channel {
        "email" => Some("email"),
        "sms" => Some("phone"),
        _ => None,
    }
}

/// One channel of the catalog and the customers' columns that decide contactability on it.
#[derive(Debug)]
struct ChannelCheck {
    address: Option<usize>,
    opt_out: Option<usize>,
    /// Bits of the do-not-contact slots that block this channel: its own and `*`.
    block_mask: u64,
    /// Whether a channel-specific address entry is compared with the email or the phone.
    address_kind: AddressKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressKind {
    None,
    Email,
    Phone,
}

/// Contactability prepared for one customers' schema and one do-not-contact list.
#[derive(Debug)]
pub struct Contactability {
    /// Channel number of each action.
    pub action_channel: Vec<usize>,
    channels: Vec<ChannelCheck>,
    email: Option<usize>,
    phone: Option<usize>,
    dnc_ids: Option<(IdIndex, Vec<u64>)>,
    dnc_addresses: AddressIndex,
}

/// Bit of the `*` slot; channel `k` has bit `k`.
const STAR_BIT: u64 = 1 << 63;

impl Contactability {
    /// Resolves the columns each channel needs and indexes the do-not-contact list.
    pub fn prepare(
        catalog: &Catalog,
        schema: &Schema,
        id_kind: IdKind,
        do_not_contact: Option<&[RecordBatch]>,
    ) -> Result<Self> {
        let mut names: Vec<&str> = Vec::new();
        let mut action_channel = Vec::with_capacity(catalog.len());
        for action in catalog.actions() {
            let k = match names.iter().position(|&n| n == action.channel) {
                Some(k) => k,
                None => {
                    names.push(&action.channel);
                    names.len() - 1
                }
            };
            action_channel.push(k);
        }
        if names.len() > 63 {
            return Err(config_err!("catalog: more than 63 channels"));
        }
        let string_column = |name: &str, needed_by: Option<&str>| -> Result<Option<usize>> {
            match schema.index_of(name) {
                Ok(i) if is_text(schema.field(i).data_type()) => Ok(Some(i)),
                Ok(i) => Err(schema_err!(
                    "customers: column {name:?} must be strings, got {}",
                    schema.field(i).data_type()
                )),
                Err(_) => match needed_by {
                    Some(action) => Err(schema_err!(
                        "customers: column {name:?} is missing; action {action:?} needs it"
                    )),
                    None => Ok(None),
                },
            }
        };
        let mut channels = Vec::with_capacity(names.len());
        for (k, &name) in names.iter().enumerate() {
            let first_action = catalog
                .actions()
                .iter()
                .zip(&action_channel)
                .find(|(_, &c)| c == k)
                .map(|(a, _)| a.id.as_str());
            let address = match address_column(name) {
                Some(column) => string_column(column, first_action)?,
                None => None,
            };
            let opt_out_name = format!("opt_out_{name}");
            let opt_out = match schema.index_of(&opt_out_name) {
                Ok(i)
                    if matches!(
                        schema.field(i).data_type(),
                        DataType::Boolean | DataType::Null
                    ) =>
                {
                    Some(i)
                }
                Ok(i) => {
                    return Err(schema_err!(
                        "customers: column {opt_out_name:?} must be boolean, got {}",
                        schema.field(i).data_type()
                    ))
                }
                Err(_) => None,
            };
            channels.push(ChannelCheck {
                address,
                opt_out,
                block_mask: (1u64 << k) | STAR_BIT,
                address_kind: match address_column(name) {
                    Some("email") => AddressKind::Email,
                    Some(_) => AddressKind::Phone,
                    None => AddressKind::None,
                },
            });
        }
        let email = string_column("email", None)?;
        let phone = string_column("phone", None)?;
        let (dnc_ids, dnc_addresses) = match do_not_contact {
            Some(batches) => index_do_not_contact(batches, &names, id_kind)?,
            None => (None, AddressIndex::default()),
        };
        Ok(Self {
            action_channel,
            channels,
            email,
            phone,
            dnc_ids,
            dnc_addresses,
        })
    }

    /// Number of distinct channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// For each channel, one code per row: 0 = contactable, else `1 + Drop` of the reason.
    pub fn evaluate(&self, batch: &RecordBatch, ids: &IdColumn) -> Vec<Vec<u8>> {
        let rows = batch.num_rows();
        // Any string layout (or the null type) reads as utf8; a no-op for utf8 columns.
        let cast = |i: Option<usize>| -> Option<StringArray> {
            let array = arrow_cast::cast(batch.column(i?), &DataType::Utf8).ok()?;
            Some(array.as_string::<i32>().clone())
        };
        let email = cast(self.email);
        let phone = cast(self.phone);
        let mut out = Vec::with_capacity(self.channels.len());
        // Per row, the do-not-contact slots that block this customer by id or by address.
        let mut blocked_by_id = vec![0u64; rows];
        let mut blocked_email = vec![0u64; rows];
        let mut blocked_phone = vec![0u64; rows];
        if let Some((index, masks)) = &self.dnc_ids {
            for (row, slot) in blocked_by_id.iter_mut().enumerate() {
                if let Some(n) = index.find(ids, row) {
                    *slot = masks[n as usize];
                }
            }
        }
        if !self.dnc_addresses.is_empty() {
            let lookup = |column: &Option<StringArray>, into: &mut Vec<u64>| {
                if let Some(column) = column {
                    for (row, slot) in into.iter_mut().enumerate() {
                        if column.is_valid(row) {
                            *slot = self.dnc_addresses.get(column.value(row));
                        }
                    }
                }
            };
            lookup(&email, &mut blocked_email);
            lookup(&phone, &mut blocked_phone);
        }
        for (k, check) in self.channels.iter().enumerate() {
            // Cast, so a column of the null type reads as all NULL (it has no null buffer).
            let address = cast(check.address);
            let opt_out: Option<BooleanArray> = check.opt_out.and_then(|i| {
                let array = arrow_cast::cast(batch.column(i), &DataType::Boolean).ok()?;
                Some(array.as_boolean().clone())
            });
            let own_bit = 1u64 << k;
            let mut codes = vec![0u8; rows];
            for (row, code) in codes.iter_mut().enumerate() {
                let by_address = match check.address_kind {
                    AddressKind::Email => blocked_email[row] & own_bit,
                    AddressKind::Phone => blocked_phone[row] & own_bit,
                    AddressKind::None => 0,
                };
                let by_star_address = (blocked_email[row] | blocked_phone[row]) & STAR_BIT;
                *code = if address.as_ref().is_some_and(|a| a.is_null(row)) {
                    1 + Drop::NoAddress as u8
                } else if opt_out
                    .as_ref()
                    .is_some_and(|o| o.is_valid(row) && o.value(row))
                {
                    1 + Drop::OptedOut as u8
                } else if blocked_by_id[row] & check.block_mask != 0
                    || by_address != 0
                    || by_star_address != 0
                {
                    1 + Drop::DoNotContact as u8
                } else {
                    0
                };
            }
            out.push(codes);
        }
        out
    }
}

type DncIndex = (Option<(IdIndex, Vec<u64>)>, AddressIndex);

/// Indexes the do-not-contact rows whose channel is in the catalog (or `*`): by customer id and
/// by address, each with the bit set of the channels it blocks.
fn index_do_not_contact(
    batches: &[RecordBatch],
    channels: &[&str],
    id_kind: IdKind,
) -> Result<DncIndex> {
    let mut ids_rows: Vec<arrow_array::ArrayRef> = Vec::new();
    let mut id_masks: Vec<u64> = Vec::new();
    let mut addresses: Vec<(String, u64)> = Vec::new();
    for batch in batches {
        let channel = batch
            .column_by_name("channel")
            .ok_or_else(|| schema_err!("do_not_contact: column \"channel\" is missing"))?;
        if !is_text(channel.data_type()) {
            return Err(schema_err!(
                "do_not_contact: column \"channel\" must be strings, got {}",
                channel.data_type()
            ));
        }
        let channel = arrow_cast::cast(channel, &DataType::Utf8)?;
        let channel = channel.as_string::<i32>();
        let id_column = batch.column_by_name("customer_id");
        let address_column = batch.column_by_name("address");
        if id_column.is_none() && address_column.is_none() {
            return Err(schema_err!(
                "do_not_contact: needs a \"customer_id\" or an \"address\" column"
            ));
        }
        if let Some(ids) = id_column {
            match IdKind::of(ids.data_type()) {
                Some(kind) if kind == id_kind => {}
                _ if ids.data_type() == &DataType::Null => {}
                _ => {
                    return Err(schema_err!(
                        "do_not_contact: customer_id is {} but the customers' customer_id is {}",
                        ids.data_type(),
                        id_kind.data_type()
                    ))
                }
            }
        }
        let address = match address_column {
            Some(a) if is_text(a.data_type()) || a.data_type() == &DataType::Null => Some(
                arrow_cast::cast(a, &DataType::Utf8)?
                    .as_string::<i32>()
                    .clone(),
            ),
            Some(a) => {
                return Err(schema_err!(
                    "do_not_contact: column \"address\" must be strings, got {}",
                    a.data_type()
                ))
            }
            None => None,
        };
        let ids = match id_column {
            Some(ids) => Some(arrow_cast::cast(ids, &id_kind.data_type())?),
            None => None,
        };
        let mut keep_rows: Vec<u32> = Vec::new();
        for row in 0..batch.num_rows() {
            if channel.is_null(row) {
                return Err(data_err!("do_not_contact: channel is null in row {row}"));
            }
            let name = channel.value(row);
            let has_id = ids.as_ref().is_some_and(|a| a.is_valid(row));
            let has_address = address.as_ref().is_some_and(|a| a.is_valid(row));
            if !has_id && !has_address {
                return Err(data_err!(
                    "do_not_contact: row {row} has neither customer_id nor address"
                ));
            }
            let bit = if name == ALL_CHANNELS {
                STAR_BIT
            } else if let Some(k) = channels.iter().position(|&c| c == name) {
                1u64 << k
            } else {
                continue; // a channel no action uses blocks nothing here
            };
            if has_id {
                keep_rows.push(row as u32);
                id_masks.push(bit);
            }
            if let (true, Some(address)) = (has_address, &address) {
                addresses.push((address.value(row).to_owned(), bit));
            }
        }
        if let Some(ids) = ids {
            let take = arrow_array::UInt32Array::from(keep_rows);
            ids_rows.push(arrow_select::take::take(&ids, &take, None)?);
        }
    }
    let addresses = AddressIndex::new(addresses.iter().map(|(a, bit)| (a.as_str(), *bit)));
    if id_masks.is_empty() {
        return Ok((None, addresses));
    }
    let refs: Vec<&dyn Array> = ids_rows.iter().map(|a| a.as_ref()).collect();
    let all = IdColumn::from_array(&arrow_select::concat::concat(&refs)?, "do_not_contact")?;
    let (index, numbers) = IdIndex::build(all)?;
    let mut masks = vec![0u64; index.len()];
    for (number, bit) in numbers.iter().zip(&id_masks) {
        masks[*number as usize] |= bit;
    }
    Ok((Some((index, masks)), addresses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_index_answers_as_a_map_past_its_filter() {
        // Enough addresses that the filter has collisions, so both of its answers are taken.
        let blocked: Vec<(String, u64)> = (0..20_000)
            .map(|i| (format!("customer.{i}@bank.example"), 1 << (i % 3)))
            .collect();
        let mut entries: Vec<(&str, u64)> = blocked.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        // An address listed twice is blocked on both channels.
        entries.push(("customer.7@bank.example", STAR_BIT));
        let index = AddressIndex::new(entries);
        for (i, (address, bit)) in blocked.iter().enumerate() {
            let expected = if i == 7 { bit | STAR_BIT } else { *bit };
            assert_eq!(index.get(address), expected, "{address}");
        }
        for i in 0..200_000 {
            assert_eq!(index.get(&format!("other.{i}@bank.example")), 0);
        }
        assert_eq!(index.get(""), 0);
        assert_eq!(AddressIndex::default().get("anyone@bank.example"), 0);
    }
}
