//! Customer columns as rules see them: which Arrow types a rule may use, and how each is
//! normalised (once per batch) to int64, float64, a string array, boolean, or int64 microseconds.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt64Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_cast::cast;
use arrow_schema::{ArrowError, DataType, TimeUnit};

use super::types::Type;
use crate::error::{NbaError, Result};
use crate::{data_err, schema_err};

/// Microseconds per day, the unit of `days_since` and the scale of `date32`.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A column a bound rule reads: its place in the batch and its type there.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSpec {
    /// Position in the schema the rule was bound against.
    pub index: usize,
    /// The schema's name for it (messages).
    pub name: String,
    /// Its Arrow type in that schema; a batch must carry exactly this type.
    pub data_type: DataType,
}

/// The rule type of an Arrow column type, or `None` when rules cannot use it.
pub(crate) fn rule_type(data_type: &DataType) -> Option<Type> {
    use DataType::*;
    Some(match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Type::Int,
        Float16 | Float32 | Float64 => Type::Float,
        Utf8 | LargeUtf8 | Utf8View => Type::Str,
        Dictionary(_, values) if matches!(values.as_ref(), Utf8 | LargeUtf8 | Utf8View) => {
            Type::Str
        }
        Boolean => Type::Bool,
        Timestamp(..) | Date32 | Date64 => Type::Time,
        _ => return None,
    })
}

/// The Arrow type of a normalised column of type `data_type`. Strings keep their own type:
/// the comparison and LIKE kernels take each string type (dictionaries included) as it is.
pub(crate) fn normalised_type(data_type: &DataType) -> DataType {
    match rule_type(data_type) {
        Some(Type::Int | Type::Time) => DataType::Int64,
        Some(Type::Float) => DataType::Float64,
        Some(Type::Bool) => DataType::Boolean,
        _ => data_type.clone(),
    }
}

/// Reads and normalises one column of `batch`. `source` is the rule, quoted in messages.
pub(crate) fn load(spec: &ColumnSpec, batch: &RecordBatch, source: &str) -> Result<ArrayRef> {
    let name = &spec.name;
    let array = batch
        .columns()
        .get(spec.index)
        .filter(|array| array.data_type() == &spec.data_type)
        .ok_or_else(|| {
            schema_err!(
                "rule {source:?}: column {name:?} is not a {} column in this batch",
                spec.data_type
            )
        })?;
    let out_of_range = |value: String| {
        data_err!("rule {source:?}: column {name:?} holds {value}, out of the range rules support")
    };
    use DataType::*;
    Ok(match &spec.data_type {
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => cast(array, &Int64)?,
        Float16 | Float32 => cast(array, &Float64)?,
        UInt64 => to_micros::<UInt64Type>(
            array,
            |v| i64::try_from(v).ok(),
            |v| out_of_range(v.to_string()),
        )?,
        Timestamp(TimeUnit::Second, _) => to_micros::<TimestampSecondType>(
            array,
            |v| v.checked_mul(1_000_000),
            |v| out_of_range(format!("{v} s")),
        )?,
        Timestamp(TimeUnit::Millisecond, _) => to_micros::<TimestampMillisecondType>(
            array,
            |v| v.checked_mul(1_000),
            |v| out_of_range(format!("{v} ms")),
        )?,
        // Same values; only the Arrow type (and its time zone, which does not move the instant)
        // is dropped.
        Timestamp(TimeUnit::Microsecond, _) => {
            to_micros::<TimestampMicrosecondType>(array, Some, |v| out_of_range(v.to_string()))?
        }
        // Floor, not truncation: -1 ns lies in the microsecond before the epoch.
        Timestamp(TimeUnit::Nanosecond, _) => to_micros::<TimestampNanosecondType>(
            array,
            |v| Some(v.div_euclid(1_000)),
            |v| out_of_range(v.to_string()),
        )?,
        Date32 => to_micros::<Date32Type>(
            array,
            |days| i64::from(days).checked_mul(MICROS_PER_DAY),
            |v| out_of_range(format!("day {v}")),
        )?,
        Date64 => to_micros::<Date64Type>(
            array,
            |ms| ms.checked_mul(1_000),
            |v| out_of_range(format!("{v} ms")),
        )?,
        _ => Arc::clone(array),
    })
}

/// Maps a primitive column to int64 on its valid slots; `reject` words the error for the first
/// value `convert` refuses. Slots under a null are never converted, so garbage there cannot fail
/// a batch.
fn to_micros<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    convert: impl Fn(T::Native) -> Option<i64>,
    reject: impl FnOnce(T::Native) -> NbaError,
) -> Result<ArrayRef> {
    let values = array
        .as_primitive_opt::<T>()
        .ok_or_else(|| ArrowError::CastError(format!("expected a {} array", T::DATA_TYPE)))?;
    let converted = values
        .try_unary::<_, Int64Type, _>(|v| convert(v).ok_or(v))
        .map_err(reject)?;
    Ok(Arc::new(converted))
}
