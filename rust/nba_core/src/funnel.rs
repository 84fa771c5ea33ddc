//! The funnel: per action, how many candidates each stage kept and why the others were dropped.
//!
//! Every candidate is dropped by the first stage that rejects it, with exactly one [`Drop`]
//! reason; keep stages are derived by subtraction, so the counts always add up.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::error::Result;

/// Why a candidate left the pipeline, in pipeline order (docs/semantics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Drop {
    /// Outside the action's active window.
    Inactive = 0,
    /// The eligibility rule was FALSE or NULL.
    Ineligible,
    /// No email (email action) or phone (SMS action).
    NoAddress,
    /// `opt_out_<channel>` is TRUE.
    OptedOut,
    /// On the do-not-contact list.
    DoNotContact,
    /// No propensity and no default propensity.
    NoPropensity,
}

impl Drop {
    /// Number of drop reasons.
    pub const COUNT: usize = 6;

    /// The funnel's `stage` name of this reason.
    pub fn stage(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Ineligible => "ineligible",
            Self::NoAddress => "no_address",
            Self::OptedOut => "opted_out",
            Self::DoNotContact => "do_not_contact",
            Self::NoPropensity => "no_propensity",
        }
    }
}

/// Per-action counters of one batch or of a whole run.
#[derive(Debug, Clone)]
pub struct FunnelCounts {
    /// Candidates per action.
    pub candidates: Vec<u64>,
    /// `drops[reason][action]`.
    pub drops: [Vec<u64>; Drop::COUNT],
    /// `suppressed[policy][action]`: dropped by that contact policy (the first that drops it).
    pub suppressed: Vec<Vec<u64>>,
    /// Candidates with rank <= max_per_customer.
    pub top_choice: Vec<u64>,
    /// Candidates accepted.
    pub selected: Vec<u64>,
    /// `capped[cap][action]`: candidates a volume cap turned down (the first full one).
    pub capped: Vec<Vec<u64>>,
    /// Top choices (rank <= max_per_customer) that the caps turned down.
    pub capped_out: Vec<u64>,
    /// Accepted candidates below the top choices: where capped-out customers fell back to.
    pub fallback: Vec<u64>,
}

impl FunnelCounts {
    /// Zero counters for `actions` actions and `policies` contact policies.
    pub fn new(actions: usize, policies: usize) -> Self {
        Self {
            candidates: vec![0; actions],
            drops: std::array::from_fn(|_| vec![0; actions]),
            suppressed: vec![vec![0; actions]; policies],
            top_choice: vec![0; actions],
            selected: vec![0; actions],
            capped: Vec::new(),
            capped_out: vec![0; actions],
            fallback: vec![0; actions],
        }
    }

    /// Counts one dropped candidate.
    #[inline]
    pub fn drop(&mut self, reason: Drop, action: usize) {
        self.drops[reason as usize][action] += 1;
    }

    /// Adds `other` into `self` (same actions).
    pub fn merge(&mut self, other: &FunnelCounts) {
        let add = |into: &mut Vec<u64>, from: &Vec<u64>| {
            into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
        };
        add(&mut self.candidates, &other.candidates);
        for (into, from) in self.drops.iter_mut().zip(&other.drops) {
            add(into, from);
        }
        for (into, from) in self.suppressed.iter_mut().zip(&other.suppressed) {
            add(into, from);
        }
        add(&mut self.top_choice, &other.top_choice);
        add(&mut self.selected, &other.selected);
        if self.capped.len() < other.capped.len() {
            self.capped
                .resize(other.capped.len(), vec![0; self.candidates.len()]);
        }
        for (into, from) in self.capped.iter_mut().zip(&other.capped) {
            add(into, from);
        }
        add(&mut self.capped_out, &other.capped_out);
        add(&mut self.fallback, &other.fallback);
    }

    /// The funnel table: (stage, action_id, count) in stage order, then action id byte order.
    /// `action_ids[a]` names action `a`; `id_order` sorts them; `policy_names[p]` names the
    /// contact policies, `cap_names[c]` the volume caps (none: no cap stages). Keep stages list
    /// every action, drop reasons only the actions they dropped something of.
    pub fn to_batch(
        &self,
        action_ids: &[&str],
        id_order: &[u32],
        policy_names: &[String],
        cap_names: &[String],
    ) -> Result<RecordBatch> {
        let mut by_id: Vec<usize> = (0..action_ids.len()).collect();
        by_id.sort_by_key(|&a| id_order[a]);
        let drops = |reason: Drop| {
            let stage = reason.stage().to_owned();
            (stage, self.drops[reason as usize].clone(), false)
        };
        let mut remaining = self.candidates.clone();
        let mut rows: Vec<(String, Vec<u64>, bool)> =
            vec![("candidate".to_owned(), remaining.clone(), true)];
        let groups: [(&[Drop], &'static str); 2] = [
            (&[Drop::Inactive, Drop::Ineligible], "eligible"),
            (
                &[Drop::NoAddress, Drop::OptedOut, Drop::DoNotContact],
                "contactable",
            ),
        ];
        for (reasons, keep_stage) in groups {
            for &reason in reasons {
                let dropped = &self.drops[reason as usize];
                remaining.iter_mut().zip(dropped).for_each(|(r, d)| *r -= d);
                rows.push(drops(reason));
            }
            rows.push((keep_stage.to_owned(), remaining.clone(), true));
        }
        for (name, dropped) in policy_names.iter().zip(&self.suppressed) {
            remaining.iter_mut().zip(dropped).for_each(|(r, d)| *r -= d);
            rows.push((format!("suppressed:{name}"), dropped.clone(), false));
        }
        rows.push(("not_suppressed".to_owned(), remaining, true));
        rows.push(drops(Drop::NoPropensity));
        rows.push(("top_choice".to_owned(), self.top_choice.clone(), true));
        if !cap_names.is_empty() {
            let none = vec![0; self.candidates.len()];
            for (c, name) in cap_names.iter().enumerate() {
                let counts = self.capped.get(c).unwrap_or(&none);
                rows.push((format!("capped:{name}"), counts.clone(), false));
            }
            rows.push(("capped_out".to_owned(), self.capped_out.clone(), true));
            rows.push(("fallback".to_owned(), self.fallback.clone(), true));
        }
        rows.push(("selected".to_owned(), self.selected.clone(), true));

        let mut stages: Vec<&str> = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        let mut counts: Vec<i64> = Vec::new();
        for (stage, values, is_keep) in &rows {
            for &a in &by_id {
                if *is_keep || values[a] > 0 {
                    stages.push(stage.as_str());
                    ids.push(action_ids[a]);
                    counts.push(values[a] as i64);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("stage", DataType::Utf8, false),
            Field::new("action_id", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(stages)),
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from(counts)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
