//! Contact policies: "if N outcomes within W days, suppress for S days" (Pega's contact policy)
//! and "at most N within the last W days" (a frequency cap), over the interaction history.
//!
//! The checks read a customer's events from the [`History`](crate::history::History) index,
//! already sorted by time and carrying integer codes, so no string is compared per candidate.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::DataType;

use crate::error::Result;
use crate::history::{Codes, Event, History, PolicyFilter, NO_CODE};
use crate::ids::IdKind;
use crate::{config_err, data_err, schema_err};

/// Microseconds in a day (1 day = 86,400 s exactly).
pub const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// The two kinds of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Dropped if some event t_j had ≥ N counted events in (t_j − W, t_j] and now < t_j + S.
    Suppress,
    /// Dropped if ≥ N counted events lie in (now − W, now].
    Limit,
}

/// Which history events a policy counts for a candidate: those sharing this with its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyLevel {
    /// The same action id.
    Action,
    /// The same group.
    Group,
    /// The same issue.
    Issue,
    /// The same channel.
    Channel,
    /// Every event of the customer.
    Customer,
}

/// One contact policy, as configured.
#[derive(Debug, Clone)]
pub struct ContactPolicy {
    /// Unique name; the funnel stage is `suppressed:NAME`.
    pub name: String,
    /// Suppress or limit.
    pub kind: PolicyKind,
    /// What an event must share with the candidate to count.
    pub level: PolicyLevel,
    /// The channel it applies to and counts on; `None` for `*` (all).
    pub channel: Option<String>,
    /// The history outcomes it counts.
    pub outcomes: Vec<String>,
    /// N ≥ 1.
    pub threshold: u32,
    /// W > 0, in days.
    pub window_days: f64,
    /// S ≥ 0, in days (`suppress` only).
    pub suppress_days: Option<f64>,
    /// A customers' integer column overriding N per customer (`limit` only).
    pub threshold_column: Option<String>,
}

/// `round_half_even(days * 86_400_000_000.0)`: a duration in whole microseconds.
pub fn duration_micros(days: f64) -> i64 {
    (days * MICROS_PER_DAY).round_ties_even() as i64
}

impl ContactPolicy {
    /// Checks the policy on its own (names are checked across policies by the engine).
    pub fn validate(&self) -> Result<()> {
        let name = &self.name;
        if name.is_empty() {
            return Err(config_err!("policies: a policy has an empty name"));
        }
        if self.outcomes.is_empty() {
            return Err(config_err!("policy {name:?}: outcomes must not be empty"));
        }
        if self.threshold < 1 {
            return Err(config_err!("policy {name:?}: threshold must be at least 1"));
        }
        if !(self.window_days.is_finite() && self.window_days > 0.0) {
            return Err(config_err!(
                "policy {name:?}: window_days must be a finite number > 0, got {}",
                self.window_days
            ));
        }
        match (self.kind, self.suppress_days) {
            (PolicyKind::Suppress, Some(s)) if s.is_finite() && s >= 0.0 => {}
            (PolicyKind::Suppress, Some(s)) => {
                return Err(config_err!(
                    "policy {name:?}: suppress_days must be a finite number >= 0, got {s}"
                ))
            }
            (PolicyKind::Suppress, None) => {
                return Err(config_err!("policy {name:?}: suppress_days is required"))
            }
            (PolicyKind::Limit, Some(_)) => {
                return Err(config_err!(
                    "policy {name:?}: suppress_days is only for kind \"suppress\""
                ))
            }
            (PolicyKind::Limit, None) => {}
        }
        if self.kind == PolicyKind::Suppress && self.threshold_column.is_some() {
            return Err(config_err!(
                "policy {name:?}: threshold_column is only for kind \"limit\""
            ));
        }
        Ok(())
    }
}

/// A policy with its durations in microseconds and its channel as a code.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub name: String,
    pub kind: PolicyKind,
    pub level: PolicyLevel,
    /// Channel code, `None` for `*`; a channel no action or event has gets a code nothing has.
    pub channel: Option<u32>,
    pub threshold: u32,
    pub window_us: i64,
    pub suppress_us: i64,
}

impl CompiledPolicy {
    /// Events at or before this time cannot change the verdict at `now_us`: a `limit` counts
    /// (now − W, now]; a `suppress` trigger t_j needs now < t_j + S, and the events it counts
    /// lie in (t_j − W, t_j] — with N = 1 the trigger alone suffices.
    pub fn horizon(&self, now_us: i64) -> i64 {
        match self.kind {
            PolicyKind::Limit => now_us.saturating_sub(self.window_us),
            PolicyKind::Suppress if self.threshold <= 1 => now_us.saturating_sub(self.suppress_us),
            PolicyKind::Suppress => now_us
                .saturating_sub(self.suppress_us)
                .saturating_sub(self.window_us),
        }
    }

    /// Whether the candidate is dropped, given the times (ascending, all ≤ now) of the events
    /// this policy counts for it, and its threshold N.
    pub fn drops(&self, times: &[i64], threshold: u32, now_us: i64) -> bool {
        let needed = threshold as usize;
        match self.kind {
            PolicyKind::Limit => {
                if needed == 0 {
                    return true;
                }
                // Events in (now − W, now]: all are ≤ now, so count those after now − W.
                let start = now_us.saturating_sub(self.window_us);
                let inside = times.len() - times.partition_point(|&t| t <= start);
                inside >= needed
            }
            PolicyKind::Suppress => {
                // Two pointers: for each t_j, the events in (t_j − W, t_j] are times[i..=j].
                let mut i = 0;
                for (j, &t) in times.iter().enumerate() {
                    let start = t.saturating_sub(self.window_us);
                    // `i <= j` bounds the scan when W rounds to 0 µs (an empty window).
                    while i <= j && times[i] <= start {
                        i += 1;
                    }
                    if j + 1 - i >= needed && now_us < t.saturating_add(self.suppress_us) {
                        return true;
                    }
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn policy(
        kind: PolicyKind,
        threshold: u32,
        window_days: f64,
        suppress_days: f64,
    ) -> CompiledPolicy {
        CompiledPolicy {
            name: "test".to_owned(),
            kind,
            level: PolicyLevel::Customer,
            channel: None,
            threshold,
            window_us: duration_micros(window_days),
            suppress_us: duration_micros(suppress_days),
        }
    }

    #[test]
    fn seed_example_sixty_days_after_one_within_thirty() {
        let p = policy(PolicyKind::Suppress, 1, 30.0, 60.0);
        let now = 1_000 * DAY;
        let ago = |days: f64| now - duration_micros(days);
        for days in [1.0, 29.0, 59.99] {
            assert!(
                p.drops(&[ago(days)], 1, now),
                "{days} days ago is suppressed"
            );
        }
        for days in [60.0, 61.0] {
            assert!(!p.drops(&[ago(days)], 1, now), "{days} days ago is not");
        }
    }

    #[test]
    fn limit_window_is_half_open() {
        let p = policy(PolicyKind::Limit, 1, 7.0, 0.0);
        let now = 100 * DAY;
        assert!(!p.drops(&[now - 7 * DAY], 1, now));
        assert!(p.drops(&[now - 7 * DAY + 1], 1, now));
        assert!(p.drops(&[now], 1, now));
        assert!(p.drops(&[], 0, now), "a threshold of 0 drops everything");
    }

    #[test]
    fn suppress_needs_n_events_within_the_window_of_one_of_them() {
        let p = policy(PolicyKind::Suppress, 2, 1.0, 10.0);
        let now = 100 * DAY;
        // Two events exactly one window apart: (t2 − W, t2] excludes t1.
        assert!(!p.drops(&[now - 3 * DAY, now - 2 * DAY], 2, now));
        assert!(p.drops(&[now - 3 * DAY, now - 2 * DAY - 1], 2, now));
        // Suppression ends exactly at t_j + S.
        assert!(!p.drops(&[now - 10 * DAY - 1, now - 10 * DAY], 2, now));
        assert!(p.drops(&[now - 10 * DAY, now - 10 * DAY + 1], 2, now));
    }

    #[test]
    fn a_window_that_rounds_to_nothing_counts_nothing() {
        let p = policy(PolicyKind::Suppress, 1, 1e-12, 10.0);
        assert_eq!(p.window_us, 0);
        assert!(!p.drops(&[0, 0, 5], 1, 100));
    }
}

/// The contact-policy stage of one call: compiled policies and the indexed history.
#[derive(Debug)]
pub(crate) struct PolicyStage {
    pub policies: Vec<CompiledPolicy>,
    pub history: Option<History>,
    /// Per policy: the column of its per-customer threshold, if any.
    threshold_columns: Vec<Option<String>>,
}

impl PolicyStage {
    /// Compiles `policies` against the codes of the run's actions and indexes the history.
    pub fn prepare(
        policies: &[ContactPolicy],
        codes: &Codes,
        history: Option<crate::engine::BatchStream<'_>>,
        id_kind: IdKind,
        now_us: i64,
    ) -> Result<Self> {
        let compiled: Vec<CompiledPolicy> = policies
            .iter()
            .map(|p| CompiledPolicy {
                name: p.name.clone(),
                kind: p.kind,
                level: p.level,
                channel: p.channel.as_ref().map(|c| codes.get(3, c)),
                threshold: p.threshold,
                window_us: duration_micros(p.window_days),
                suppress_us: p.suppress_days.map_or(0, duration_micros),
            })
            .collect();
        let history = match history {
            Some(batches) => {
                let filter = PolicyFilter {
                    channels: compiled.iter().map(|p| p.channel).collect(),
                    outcomes: policies.iter().map(|p| p.outcomes.as_slice()).collect(),
                    horizons: compiled.iter().map(|p| p.horizon(now_us)).collect(),
                };
                Some(History::build(batches, id_kind, codes, &filter, now_us)?)
            }
            None => None,
        };
        Ok(Self {
            policies: compiled,
            history,
            threshold_columns: policies
                .iter()
                .map(|p| p.threshold_column.clone())
                .collect(),
        })
    }

    /// Bit set of the policies that apply to an action on channel `channel` (a code).
    pub fn applicable(&self, channel: u32) -> u64 {
        self.policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.channel.is_none_or(|c| c == channel && c != NO_CODE))
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The per-customer threshold columns of one batch (`table` names it in errors).
    pub fn threshold_columns(
        &self,
        batch: &RecordBatch,
        table: &str,
    ) -> Result<Vec<Option<Int64Array>>> {
        self.threshold_columns
            .iter()
            .map(|column| {
                let Some(name) = column else { return Ok(None) };
                let array = batch.column_by_name(name).ok_or_else(|| {
                    schema_err!("{table}: column {name:?} (a policy's threshold_column) is missing")
                })?;
                let integer = match array.data_type() {
                    DataType::Dictionary(_, value) => value.is_integer(),
                    other => other.is_integer() || other == &DataType::Null,
                };
                if !integer {
                    return Err(schema_err!(
                        "{table}: column {name:?} (a policy's threshold_column) must be integers, got {}",
                        array.data_type()
                    ));
                }
                let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
                let cast = arrow_cast::cast_with_options(array, &DataType::Int64, &options)?;
                Ok(Some(cast.as_primitive::<Int64Type>().clone()))
            })
            .collect()
    }

    /// Fills `thresholds` with each policy's N for the customer in `row`.
    pub fn thresholds_for(
        &self,
        columns: &[Option<Int64Array>],
        row: usize,
        customer: &dyn Fn() -> String,
        thresholds: &mut Vec<u32>,
    ) -> Result<()> {
        thresholds.clear();
        for (policy, column) in self.policies.iter().zip(columns) {
            let n = match column {
                Some(values) if values.is_valid(row) => {
                    let v = values.value(row);
                    if v < 0 {
                        return Err(data_err!(
                            "customer {}: policy {:?}'s threshold_column holds {v}, which must be >= 0",
                            customer(),
                            policy.name
                        ));
                    }
                    // A threshold beyond any count of events is as good as u32::MAX.
                    u32::try_from(v).unwrap_or(u32::MAX)
                }
                _ => policy.threshold,
            };
            thresholds.push(n);
        }
        Ok(())
    }

    /// The first policy (in order) among `applicable` that drops a candidate with the given
    /// action codes, or `None`. `scratch` is reused across calls; reset it with the customer's
    /// events (`Scratch::start`) when the customer changes: it remembers each (policy, level
    /// key, threshold) verdict, which the customer's other actions sharing that group, issue or
    /// channel reuse, and which policies count any of the customer's events at all.
    pub fn first_drop(
        &self,
        applicable: u64,
        action: &[u32; 4],
        events: &[Event],
        thresholds: &[u32],
        now_us: i64,
        scratch: &mut Scratch,
    ) -> Option<usize> {
        // Policies in bit order, which is their order; one with none of the customer's events
        // drops only as a `limit` whose threshold for this customer is 0.
        let mut todo = applicable;
        while todo != 0 {
            let p = todo.trailing_zeros() as usize;
            todo &= todo - 1;
            let policy = &self.policies[p];
            let threshold = thresholds[p];
            if scratch.present & (1 << p) == 0 {
                if policy.kind == PolicyKind::Limit && threshold == 0 {
                    return Some(p);
                }
                continue;
            }
            let key = level_key(policy.level, action);
            let cached = scratch.get(p, key, threshold);
            let drops = match cached {
                Some(drops) => drops,
                None => {
                    let drops = policy_drops(
                        p,
                        policy,
                        action,
                        events,
                        threshold,
                        now_us,
                        &mut scratch.times,
                    );
                    scratch.put(p, key, threshold, drops);
                    drops
                }
            };
            if drops {
                return Some(p);
            }
        }
        None
    }
}

/// One customer's policy verdicts, worked out once from their events when every candidate of
/// the customer has the same thresholds (`decide`): the candidates then only compare codes.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    /// The (policy, level key) pairs that drop, ascending by policy.
    drops: Vec<(u32, u32)>,
    /// Bit p: policy p drops every candidate it applies to (a `limit` of 0 for this customer).
    all: u64,
    /// Scratch: the distinct level keys of one policy's events, and how many events each has.
    keys: Vec<u32>,
    counts: Vec<u32>,
    times: Vec<i64>,
}

impl PolicyStage {
    /// Works out which (policy, level key) pairs drop a customer with `events` (ascending by
    /// time) and per-policy `thresholds`: for each policy, the distinct keys of the events it
    /// counts, each checked on the times of its own events. A key without events drops only
    /// under a `limit` of 0, which `Verdicts::all` records.
    pub fn verdicts(&self, events: &[Event], thresholds: &[u32], now_us: i64, out: &mut Verdicts) {
        out.drops.clear();
        out.all = 0;
        let present = events.iter().fold(0u64, |bits, e| bits | e.policies);
        for (p, policy) in self.policies.iter().enumerate() {
            let bit = 1u64 << p;
            let threshold = thresholds[p];
            if policy.kind == PolicyKind::Limit && threshold == 0 {
                out.all |= bit;
                continue;
            }
            if present & bit == 0 {
                continue;
            }
            // Every counted event lies after the policy's horizon (see `CompiledPolicy::horizon`):
            // a `limit` then drops on the count alone, and a `suppress` of N = 1 (with a
            // window of at least a microsecond, which holds its trigger) on any event.
            let by_count = match policy.kind {
                PolicyKind::Limit => true,
                PolicyKind::Suppress => threshold <= 1 && policy.window_us > 0,
            };
            out.keys.clear();
            out.counts.clear();
            for e in events.iter().filter(|e| e.policies & bit != 0) {
                let key = level_key(policy.level, &e.codes);
                if key == NO_CODE {
                    continue;
                }
                match out.keys.iter().position(|&k| k == key) {
                    Some(i) => out.counts[i] += 1,
                    None => {
                        out.keys.push(key);
                        out.counts.push(1);
                    }
                }
            }
            for k in 0..out.keys.len() {
                let key = out.keys[k];
                let drops = if by_count {
                    out.counts[k] >= threshold.max(1)
                } else {
                    out.times.clear();
                    out.times.extend(
                        events
                            .iter()
                            .filter(|e| {
                                e.policies & bit != 0 && level_key(policy.level, &e.codes) == key
                            })
                            .map(|e| e.time),
                    );
                    policy.drops(&out.times, threshold, now_us)
                };
                if drops {
                    out.drops.push((p as u32, key));
                }
            }
        }
    }
}

impl Verdicts {
    /// The first policy (in order) among `applicable` that drops a candidate of an action with
    /// `codes`, or `None`.
    #[inline]
    pub fn first_drop(
        &self,
        stage: &PolicyStage,
        applicable: u64,
        codes: &[u32; 4],
    ) -> Option<usize> {
        let all = self.all & applicable;
        let first_all = if all == 0 { 64 } else { all.trailing_zeros() };
        for &(p, key) in &self.drops {
            if p >= first_all {
                break;
            }
            if applicable & (1 << p) != 0
                && level_key(stage.policies[p as usize].level, codes) == key
            {
                return Some(p as usize);
            }
        }
        (first_all < 64).then_some(first_all as usize)
    }
}

/// Whether `policy` (number `p`) drops a candidate of `action`, counting the events it counts.
fn policy_drops(
    p: usize,
    policy: &CompiledPolicy,
    action: &[u32; 4],
    events: &[Event],
    threshold: u32,
    now_us: i64,
    times: &mut Vec<i64>,
) -> bool {
    times.clear();
    times.extend(
        events
            .iter()
            .filter(|e| e.policies & (1 << p) != 0 && level_matches(policy.level, &e.codes, action))
            .map(|e| e.time),
    );
    policy.drops(times, threshold, now_us)
}

/// Reusable scratch space of the policy checks of one worker.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    times: Vec<i64>,
    /// `verdicts[policy][level key]`: (generation, threshold, drops) of the current customer
    /// when the generation is current. Indexed by code, so a lookup is one load.
    verdicts: Vec<Vec<(u32, u32, bool)>>,
    generation: u32,
    /// Bit p: policy p counts at least one of the current customer's events.
    present: u64,
}

impl Scratch {
    /// Forgets the verdicts: the next candidates are those of the customer with `events`.
    pub fn start(&mut self, events: &[Event]) {
        self.present = events.iter().fold(0, |bits, e| bits | e.policies);
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: stale entries could look current.
            self.verdicts.iter_mut().for_each(|v| v.clear());
            self.generation = 1;
        }
    }

    #[inline]
    fn get(&self, policy: usize, key: u32, threshold: u32) -> Option<bool> {
        let entry = self.verdicts.get(policy)?.get(key as usize)?;
        // Generation 0 is never current: fresh slots hold it.
        (self.generation != 0 && entry.0 == self.generation && entry.1 == threshold)
            .then_some(entry.2)
    }

    fn put(&mut self, policy: usize, key: u32, threshold: u32, drops: bool) {
        if key == NO_CODE {
            return;
        }
        if self.verdicts.len() <= policy {
            self.verdicts.resize_with(policy + 1, Vec::new);
        }
        let slots = &mut self.verdicts[policy];
        if slots.len() <= key as usize {
            slots.resize(key as usize + 1, (0, 0, false));
        }
        slots[key as usize] = (self.generation, threshold, drops);
    }
}

/// The code that decides which events a policy counts: the action's field at the policy's
/// level (the same for every action of a customer at level `customer`).
#[inline]
fn level_key(level: PolicyLevel, action: &[u32; 4]) -> u32 {
    match level {
        PolicyLevel::Action => action[0],
        PolicyLevel::Group => action[1],
        PolicyLevel::Issue => action[2],
        PolicyLevel::Channel => action[3],
        PolicyLevel::Customer => 0,
    }
}

/// Whether an event shares the policy level's field with the candidate's action. A field the
/// candidate lacks (NULL in `arbitrate`) matches nothing.
#[inline]
fn level_matches(level: PolicyLevel, event: &[u32; 4], action: &[u32; 4]) -> bool {
    let field = match level {
        PolicyLevel::Action => 0,
        PolicyLevel::Group => 1,
        PolicyLevel::Issue => 2,
        PolicyLevel::Channel => 3,
        PolicyLevel::Customer => return true,
    };
    action[field] != NO_CODE && event[field] == action[field]
}

/// Checks a set of policies: each valid, names unique, at most 64 (one bit each).
pub fn validate_policies(policies: &[ContactPolicy]) -> Result<()> {
    if policies.len() > 64 {
        return Err(config_err!(
            "policies: at most 64 contact policies, got {}",
            policies.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    for policy in policies {
        policy.validate()?;
        if !names.insert(policy.name.as_str()) {
            return Err(config_err!(
                "policies: duplicate policy name {:?}",
                policy.name
            ));
        }
    }
    Ok(())
}
