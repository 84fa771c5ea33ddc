//! The action catalog: what can be offered, on which channel, with which business factors.
//!
//! Built once per `Engine`; rules are parsed here so a syntax error surfaces at construction,
//! naming the action.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::error::{NbaError, Result};
use crate::rules::Rule;
use crate::{config_err, schema_err};

/// One action of the catalog (DESIGN.md §2).
#[derive(Debug, Clone)]
pub struct Action {
    /// Unique id; ties in ranking break by it in byte order.
    pub id: String,
    /// Pega's business issue (e.g. `Sales`).
    pub issue: String,
    /// Pega's group (e.g. `CreditCards`).
    pub group: String,
    /// Channel name; `email` and `sms` need a contact address.
    pub channel: String,
    /// Template name handed to the renderer, if any.
    pub treatment: Option<String>,
    /// Business value V of P·V·C·L.
    pub value: f64,
    /// Business lever L.
    pub lever: f64,
    /// Context weight C.
    pub context_weight: f64,
    /// Eligibility rule (TRUE when the catalog gives none).
    pub eligibility: Rule,
    /// Active from this instant (µs since the epoch, inclusive).
    pub active_from: Option<i64>,
    /// Active until this instant (µs since the epoch, exclusive).
    pub active_until: Option<i64>,
    /// Propensity used when the propensities give none for a pair.
    pub default_propensity: Option<f64>,
}

impl Action {
    /// An action with the given keys and every optional field at its default.
    pub fn new(id: &str, issue: &str, group: &str, channel: &str) -> Self {
        Self {
            id: id.to_owned(),
            issue: issue.to_owned(),
            group: group.to_owned(),
            channel: channel.to_owned(),
            treatment: None,
            value: 1.0,
            lever: 1.0,
            context_weight: 1.0,
            eligibility: Rule::always_true(),
            active_from: None,
            active_until: None,
            default_propensity: None,
        }
    }

    /// `active_from <= now < active_until`, a missing bound being open.
    pub fn is_active(&self, now_us: i64) -> bool {
        self.active_from.is_none_or(|from| from <= now_us)
            && self.active_until.is_none_or(|until| now_us < until)
    }

    fn validate(&self) -> Result<()> {
        let id = &self.id;
        if id.is_empty() {
            return Err(config_err!("catalog: an action has an empty id"));
        }
        for (field, factor) in [
            ("value", self.value),
            ("lever", self.lever),
            ("context_weight", self.context_weight),
        ] {
            if !factor.is_finite() || factor < 0.0 {
                return Err(config_err!(
                    "action {id:?}: {field} must be finite and >= 0, got {factor}"
                ));
            }
        }
        if let Some(p) = self.default_propensity {
            if !(0.0..=1.0).contains(&p) {
                return Err(config_err!(
                    "action {id:?}: default_propensity must be in [0, 1], got {p}"
                ));
            }
        }
        if let (Some(from), Some(until)) = (self.active_from, self.active_until) {
            if from >= until {
                return Err(config_err!(
                    "action {id:?}: active_from must be before active_until"
                ));
            }
        }
        Ok(())
    }
}

/// The validated catalog with the indexes the engine needs.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    actions: Vec<Action>,
    by_id: HashMap<String, u32>,
    /// `id_order[a]` is action `a`'s position in byte order of ids: the tie-break key.
    id_order: Vec<u32>,
}

impl Catalog {
    /// Validates the actions (unique non-empty ids, factors, windows) and indexes them.
    pub fn new(actions: Vec<Action>) -> Result<Self> {
        let mut by_id = HashMap::with_capacity(actions.len());
        for (index, action) in actions.iter().enumerate() {
            action.validate()?;
            let index = u32::try_from(index)
                .map_err(|_| config_err!("catalog: more than {} actions", u32::MAX))?;
            if by_id.insert(action.id.clone(), index).is_some() {
                return Err(config_err!("catalog: duplicate action id {:?}", action.id));
            }
        }
        let id_order = byte_order_ranks(actions.iter().map(|a| a.id.as_str()));
        Ok(Self {
            actions,
            by_id,
            id_order,
        })
    }

    /// Reads the catalog from an Arrow batch with the columns of `nba_fast.config.CATALOG_SCHEMA`
    /// (only `id`, `issue`, `group` and `channel` are required).
    pub fn from_batch(batch: &RecordBatch) -> Result<Self> {
        let ids = required_strings(batch, "id")?;
        let issues = required_strings(batch, "issue")?;
        let groups = required_strings(batch, "group")?;
        let channels = required_strings(batch, "channel")?;
        let treatments = optional_strings(batch, "treatment")?;
        let rules = optional_strings(batch, "eligibility")?;
        let values = optional_floats(batch, "value")?;
        let levers = optional_floats(batch, "lever")?;
        let weights = optional_floats(batch, "context_weight")?;
        let defaults = optional_floats(batch, "default_propensity")?;
        let froms = optional_times(batch, "active_from")?;
        let untils = optional_times(batch, "active_until")?;
        let mut actions = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let id = ids[row]
                .clone()
                .ok_or_else(|| config_err!("catalog: row {row} has no id"))?;
            let need = |column: &[Option<String>], field: &str| {
                column[row]
                    .clone()
                    .ok_or_else(|| config_err!("action {id:?}: {field} is required"))
            };
            let rule_source = rules
                .as_ref()
                .and_then(|r| r[row].clone())
                .unwrap_or_default();
            let eligibility = Rule::parse(&rule_source)
                .map_err(|err| prefix_error(err, &format!("action {id:?}: eligibility ")))?;
            actions.push(Action {
                issue: need(&issues, "issue")?,
                group: need(&groups, "group")?,
                channel: need(&channels, "channel")?,
                treatment: treatments.as_ref().and_then(|t| t[row].clone()),
                value: values.as_ref().and_then(|v| v[row]).unwrap_or(1.0),
                lever: levers.as_ref().and_then(|v| v[row]).unwrap_or(1.0),
                context_weight: weights.as_ref().and_then(|v| v[row]).unwrap_or(1.0),
                eligibility,
                active_from: froms.as_ref().and_then(|v| v[row]),
                active_until: untils.as_ref().and_then(|v| v[row]),
                default_propensity: defaults.as_ref().and_then(|v| v[row]),
                id,
            });
        }
        Self::new(actions)
    }

    /// The actions in catalog order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True for the empty catalog (`arbitrate` without one).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Index of the action with this id.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Position of each action in the byte order of ids (the tie-break key).
    pub fn id_order(&self) -> &[u32] {
        &self.id_order
    }
}

/// For each string, its position when all are sorted in byte order (ids are unique).
pub(crate) fn byte_order_ranks<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let ids: Vec<&str> = ids.collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].as_bytes().cmp(ids[b].as_bytes()));
    let mut ranks = vec![0u32; ids.len()];
    for (rank, &index) in order.iter().enumerate() {
        ranks[index] = rank as u32;
    }
    ranks
}

/// Re-wraps an error with a prefix naming where it happened, keeping its kind.
pub(crate) fn prefix_error(err: NbaError, prefix: &str) -> NbaError {
    match err {
        NbaError::Schema(m) => NbaError::Schema(format!("{prefix}{m}")),
        NbaError::Rule(m) => NbaError::Rule(format!("{prefix}{m}")),
        NbaError::Config(m) => NbaError::Config(format!("{prefix}{m}")),
        NbaError::Data(m) => NbaError::Data(format!("{prefix}{m}")),
        other => other,
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

fn required_strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    optional_strings(batch, name)?.ok_or_else(|| schema_err!("catalog: column {name:?} is missing"))
}

fn optional_strings(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<String>>>> {
    let Some(array) = column(batch, name) else {
        return Ok(None);
    };
    let array = arrow_cast::cast(array, &DataType::Utf8).map_err(|_| {
        schema_err!(
            "catalog: column {name:?} must be strings, got {}",
            array.data_type()
        )
    })?;
    let strings = array.as_string::<i32>();
    Ok(Some(strings.iter().map(|s| s.map(str::to_owned)).collect()))
}

fn optional_floats(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<f64>>>> {
    let Some(array) = column(batch, name) else {
        return Ok(None);
    };
    if !array.data_type().is_numeric() {
        return Err(schema_err!(
            "catalog: column {name:?} must be numeric, got {}",
            array.data_type()
        ));
    }
    let array = arrow_cast::cast(array, &DataType::Float64)?;
    Ok(Some(array.as_primitive::<Float64Type>().iter().collect()))
}

fn optional_times(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<i64>>>> {
    let Some(array) = column(batch, name) else {
        return Ok(None);
    };
    if !matches!(
        array.data_type(),
        DataType::Timestamp(_, _) | DataType::Null
    ) {
        return Err(schema_err!(
            "catalog: column {name:?} must be a timestamp, got {}",
            array.data_type()
        ));
    }
    // Casting keeps the time zone, so the values stay UTC epoch microseconds whatever the zone.
    let target = match array.data_type() {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    };
    let array = arrow_cast::cast(array, &target)?;
    Ok(Some(
        array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
    ))
}
