//! Kernels for two shapes rules meet all the time, where the Arrow crates take a slow general
//! path:
//! - a string column against string constants (`state IN ('CA', 'NY')`, `segment = 'gold'`):
//!   `arrow_ord::cmp::eq` makes one pass per constant and calls `memcmp` per row; here one
//!   pass tests every constant, strings of up to 8 bytes compared as integers;
//! - a column with a constant for its NULLs (`COALESCE(email, '')`) where the value itself is
//!   needed: `arrow_select::zip` of an array with a scalar goes through `MutableArrayData`, one
//!   call per run of rows; here valid runs are copied whole. (Under a comparison with a
//!   constant or a LIKE, the evaluator does not build it at all: `eval.rs`, `map_split`.)
//!
//! On `bank-2m`'s 2 M customers, one thread: `state IN ('CA', 'NY', 'TX', 'FL', 'WA')` took
//! 41 ms with the Arrow kernels and 14 ms with these; `COALESCE(email, '') = ''` 21–23 ms and
//! 16 ms (measured before the evaluator applied `=` to the two parts). Each returns `None` for a shape it does not handle, and the caller falls back to the
//! Arrow kernel, so they change speed only, never an answer (`tests/rules_props.rs` compares
//! them with SQL's definition on every string layout).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ByteArrayType, Float64Type, Int64Type, LargeUtf8Type, Utf8Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, GenericByteArray, PrimitiveArray,
};
use arrow_buffer::{ArrowNativeType, BooleanBuffer, NullBuffer, OffsetBuffer};
use arrow_schema::DataType;

/// `x IN (items)` in one pass, for `x` a string array (utf8, large utf8 or utf8 view) and
/// `items` the constants' bytes. NULL where `x` is NULL and, when `null_item` (the list holds
/// a NULL), where nothing matched: SQL's `x IN (…, NULL)` is never false.
pub(crate) fn strings_in(x: &dyn Array, items: &[&[u8]], null_item: bool) -> Option<BooleanArray> {
    let needles = Needles::new(items);
    let matched = match x.data_type() {
        DataType::Utf8 => matches_bytes(x.as_string::<i32>(), &needles),
        DataType::LargeUtf8 => matches_bytes(x.as_string::<i64>(), &needles),
        DataType::Utf8View => {
            let x = x.as_string_view();
            let views = x.views();
            BooleanBuffer::collect_bool(x.len(), |row| {
                let view = views[row];
                let len = view as u32 as usize;
                if !needles.has_length(len) {
                    false
                } else if len <= 8 {
                    // Inline: the bytes follow the length in the view itself.
                    needles.short((view >> 32) as u64 & low_bytes(len), len)
                } else {
                    needles.long(x.value(row).as_bytes())
                }
            })
        }
        _ => return None,
    };
    let mut nulls = x.logical_nulls();
    if null_item {
        let unmatched_null = NullBuffer::new(matched.clone());
        nulls = NullBuffer::union(nulls.as_ref(), Some(&unmatched_null));
    }
    Some(BooleanArray::new(matched, nulls))
}

/// The first row of a string array (a rule's constant), or `None` if it is NULL or not a
/// string array.
pub(crate) fn string_constant(array: &dyn Array) -> Option<&[u8]> {
    if array.is_empty() || array.is_null(0) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(0).as_bytes(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(0).as_bytes(),
        DataType::Utf8View => array.as_string_view().value(0).as_bytes(),
        _ => return None,
    })
}

fn matches_bytes<T: ByteArrayType>(x: &GenericByteArray<T>, needles: &Needles) -> BooleanBuffer {
    let offsets = x.value_offsets();
    let data = x.value_data();
    BooleanBuffer::collect_bool(x.len(), |row| {
        let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
        let len = end - start;
        if !needles.has_length(len) {
            // Decided without reading the bytes: on a column whose lengths rarely match (an
            // email against ''), reading them would cost a cache miss a row.
            false
        } else if len == 0 {
            needles.short(0, 0) // empty (NULLs mostly are): nothing to read
        } else if len <= 8 && start + 8 <= data.len() {
            needles.short(word_of(&data[start..]) & low_bytes(len), len)
        } else {
            needles.long(&data[start..end])
        }
    })
}

/// The constants of an IN list. Those of up to 8 bytes (codes, states, segments: the usual
/// case) are kept as their length and their bytes read as one little-endian word, so a value of
/// up to 8 bytes is matched by comparing two integers per constant, with no call to `memcmp`.
struct Needles<'a> {
    items: &'a [&'a [u8]],
    words: Vec<(usize, u64)>,
    /// Bit `n` set when some constant is `n` bytes long (`n` < 64); bit 63 for every longer one.
    lengths: u64,
}

impl<'a> Needles<'a> {
    fn new(items: &'a [&'a [u8]]) -> Self {
        let words = items
            .iter()
            .filter(|item| item.len() <= 8)
            .map(|item| {
                let mut word = [0u8; 8];
                word[..item.len()].copy_from_slice(item);
                (item.len(), u64::from_le_bytes(word))
            })
            .collect();
        let lengths = items
            .iter()
            .fold(0, |bits, item| bits | 1u64 << item.len().min(63));
        Self {
            items,
            words,
            lengths,
        }
    }

    /// Whether some constant could have `len` bytes.
    #[inline]
    fn has_length(&self, len: usize) -> bool {
        self.lengths & (1u64 << len.min(63)) != 0
    }

    /// Whether a value of `len` ≤ 8 bytes, read as `word` (its bytes, zeros above), matches.
    #[inline]
    fn short(&self, word: u64, len: usize) -> bool {
        // No early exit: which constant matches is down to the data, so a branch per constant
        // would be mispredicted; a handful of compares is cheaper.
        self.words
            .iter()
            .fold(false, |found, &(l, w)| found | ((l == len) & (w == word)))
    }

    /// Whether a value matches, compared as slices.
    #[inline]
    fn long(&self, value: &[u8]) -> bool {
        self.items.contains(&value)
    }
}

/// The first 8 bytes of `bytes` as a little-endian word.
#[inline]
fn word_of(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// The mask of a word's low `len` bytes (`len` ≤ 8).
#[inline]
fn low_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    }
}

/// `array` with its NULLs replaced by `fill`, a one-row non-NULL array of the same type: what
/// `COALESCE(array, constant)` is. `None` for a type without a kernel here.
pub(crate) fn fill_nulls(array: &ArrayRef, fill: &dyn Array) -> Option<ArrayRef> {
    if fill.data_type() != array.data_type() || fill.len() != 1 || fill.is_null(0) {
        return None;
    }
    let Some(nulls) = array.logical_nulls().filter(|n| n.null_count() > 0) else {
        return Some(Arc::clone(array));
    };
    Some(match array.data_type() {
        DataType::Utf8 => fill_bytes::<Utf8Type>(array.as_string(), fill.as_string(), &nulls)?,
        DataType::LargeUtf8 => {
            fill_bytes::<LargeUtf8Type>(array.as_string(), fill.as_string(), &nulls)?
        }
        DataType::Int64 => fill_primitive::<Int64Type>(array, fill, &nulls),
        DataType::Float64 => fill_primitive::<Float64Type>(array, fill, &nulls),
        DataType::Boolean => {
            let values = array.as_boolean().values();
            let valid = nulls.inner();
            let filled = if fill.as_boolean().value(0) {
                &(values & valid) | &!valid
            } else {
                values & valid
            };
            Arc::new(BooleanArray::new(filled, None))
        }
        _ => return None,
    })
}

/// Runs of valid rows are copied whole (values and shifted offsets); each NULL row gets `fill`.
/// `None` when the result would overflow the offset type (the caller's kernel reports it).
fn fill_bytes<T: ByteArrayType>(
    array: &GenericByteArray<T>,
    fill: &GenericByteArray<T>,
    nulls: &NullBuffer,
) -> Option<ArrayRef> {
    let fill: &[u8] = fill.value(0).as_ref();
    let offsets = array.value_offsets();
    let data = array.value_data();
    let rows = array.len();
    let kept = offsets[rows].as_usize() - offsets[0].as_usize();
    let total = kept.checked_add(nulls.null_count().checked_mul(fill.len())?)?;
    T::Offset::from_usize(total)?;
    let mut values: Vec<u8> = Vec::with_capacity(total);
    let mut out: Vec<T::Offset> = Vec::with_capacity(rows + 1);
    out.push(T::Offset::usize_as(0));
    let fill_until = |values: &mut Vec<u8>, out: &mut Vec<T::Offset>, from: usize, to: usize| {
        for _ in from..to {
            values.extend_from_slice(fill);
            out.push(T::Offset::usize_as(values.len()));
        }
    };
    let mut row = 0;
    for (start, end) in nulls.valid_slices() {
        fill_until(&mut values, &mut out, row, start);
        let first = offsets[start].as_usize();
        let base = values.len();
        values.extend_from_slice(&data[first..offsets[end].as_usize()]);
        out.extend(
            offsets[start + 1..=end]
                .iter()
                .map(|o| T::Offset::usize_as(base + (o.as_usize() - first))),
        );
        row = end;
    }
    fill_until(&mut values, &mut out, row, rows);
    let filled =
        GenericByteArray::<T>::try_new(OffsetBuffer::new(out.into()), values.into(), None).ok()?;
    Some(Arc::new(filled))
}

fn fill_primitive<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    fill: &dyn Array,
    nulls: &NullBuffer,
) -> ArrayRef {
    let fill = fill.as_primitive::<T>().value(0);
    let values = array.as_primitive::<T>().values();
    let filled: Vec<T::Native> = values
        .iter()
        .zip(nulls.iter())
        .map(|(&v, valid)| if valid { v } else { fill })
        .collect();
    Arc::new(
        PrimitiveArray::<T>::new(filled.into(), None).with_data_type(array.data_type().clone()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_array::{Float64Array, Int64Array, LargeStringArray, StringArray, StringViewArray};

    use super::*;

    fn strings() -> Vec<Option<&'static str>> {
        vec![
            Some("CA"),
            None,
            Some(""),
            Some("NY"),
            Some("a long value past sixteen bytes"),
            None,
            Some("CAL"),
        ]
    }

    #[test]
    fn strings_in_matches_each_string_layout_and_keeps_nulls() {
        let items: [&[u8]; 3] = [b"CA", b"", b"a long value past sixteen bytes"];
        let expected = BooleanArray::from(vec![
            Some(true),
            None,
            Some(true),
            Some(false),
            Some(true),
            None,
            Some(false),
        ]);
        let layouts: [ArrayRef; 3] = [
            Arc::new(StringArray::from(strings())),
            Arc::new(LargeStringArray::from(strings())),
            Arc::new(StringViewArray::from(strings())),
        ];
        for x in layouts {
            assert_eq!(strings_in(&x, &items, false).unwrap(), expected);
            // Sliced: offsets need not start at zero.
            let sliced = x.slice(3, 4);
            assert_eq!(
                strings_in(&sliced, &items, false).unwrap(),
                expected.slice(3, 4)
            );
        }
    }

    #[test]
    fn a_null_in_the_list_makes_every_miss_null() {
        let x: ArrayRef = Arc::new(StringArray::from(strings()));
        let got = strings_in(&x, &[b"NY"], true).unwrap();
        let expected = BooleanArray::from(vec![None, None, None, Some(true), None, None, None]);
        assert_eq!(got, expected);
    }

    #[test]
    fn fill_nulls_replaces_only_the_nulls() {
        let x: ArrayRef = Arc::new(StringArray::from(strings()).slice(1, 6));
        let fill = StringArray::from(vec!["?!"]);
        let got = fill_nulls(&x, &fill).unwrap();
        let expected = StringArray::from(vec![
            "?!",
            "",
            "NY",
            "a long value past sixteen bytes",
            "?!",
            "CAL",
        ]);
        assert_eq!(got.as_string::<i32>(), &expected);

        let ints: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(3), None]));
        let got = fill_nulls(&ints, &Int64Array::from(vec![7])).unwrap();
        assert_eq!(
            got.as_primitive::<Int64Type>(),
            &Int64Array::from(vec![7, 3, 7])
        );

        let floats: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.5), None]));
        let got = fill_nulls(&floats, &Float64Array::from(vec![-1.0])).unwrap();
        assert_eq!(
            got.as_primitive::<Float64Type>(),
            &Float64Array::from(vec![0.5, -1.0])
        );

        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![Some(false), None, Some(true)]));
        let got = fill_nulls(&bools, &BooleanArray::from(vec![true])).unwrap();
        assert_eq!(
            got.as_boolean(),
            &BooleanArray::from(vec![false, true, true])
        );
    }

    #[test]
    fn fill_nulls_declines_what_it_has_no_kernel_for() {
        let x: ArrayRef = Arc::new(StringArray::from(vec![None, Some("a")]));
        // A NULL fill, or one of another type, goes to the general kernel.
        assert!(fill_nulls(&x, &StringArray::from(vec![None::<&str>])).is_none());
        assert!(fill_nulls(&x, &LargeStringArray::from(vec!["a"])).is_none());
        let views: ArrayRef = Arc::new(StringViewArray::from(vec![None, Some("a")]));
        assert!(fill_nulls(&views, &StringViewArray::from(vec!["b"])).is_none());
    }
}
