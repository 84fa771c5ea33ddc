//! Candidate expansion for one batch of customers: customers × actions through eligibility,
//! contactability, propensity, priority and per-customer ranking.
//!
//! Rules and contactability are evaluated column-wise first (one mask per distinct rule, one
//! reason code per channel); the loop over candidates then only reads those arrays. It
//! allocates per batch, never per row: one scratch buffer of scored actions is reused.

use arrow_array::{Array, BooleanArray, RecordBatch};

use crate::catalog::Catalog;
use crate::contact::Contactability;
use crate::error::Result;
use crate::funnel::{Drop, FunnelCounts};
use crate::ids::IdColumn;
use crate::policy::{PolicyStage, Verdicts};
use crate::priority::priority;
use crate::propensity::{batch_columns, Propensities};
use crate::rank::{rank_in_place, Scored};
use crate::rules::BoundRule;

/// Everything that is the same for every batch of one `decide` call.
pub(crate) struct Plan<'a> {
    pub catalog: &'a Catalog,
    /// Distinct rules bound to the customers' schema.
    pub rules: Vec<BoundRule>,
    /// Rule number of each action (`None` = always eligible).
    pub action_rule: Vec<Option<usize>>,
    /// Whether each action is in its active window at `now`.
    pub active: Vec<bool>,
    pub contact: Contactability,
    pub policies: PolicyStage,
    /// Codes (action, group, issue, channel) of each action, for the policies.
    pub action_codes: Vec<[u32; 4]>,
    /// Bit set of the policies that apply to each action.
    pub action_policies: Vec<u64>,
    pub propensities: Propensities<'a>,
    pub max_per_customer: usize,
    /// Keep every survivor, ranked (volume caps settle them after all batches).
    pub keep_all: bool,
    pub now_us: i64,
}

/// What one batch decided: the accepted candidates (batch row, action, …) and the funnel.
pub(crate) struct BatchDecisions {
    pub ids: IdColumn,
    pub rows: Vec<u32>,
    pub actions: Vec<u32>,
    pub propensity: Vec<f64>,
    pub priority: Vec<f64>,
    /// 1-based ranks. Empty while every survivor is kept for the caps (`Plan::keep_all`):
    /// a customer's candidates are adjacent and in rank order, so the rank is a position, and
    /// it is filled for the accepted ones once the caps are settled.
    pub rank: Vec<i32>,
    pub funnel: FunnelCounts,
}

/// Decides one batch; `first_row` is the batch's offset in the whole input (for dense
/// propensities and error messages).
// One index walks several parallel per-row arrays (masks, reason codes, ids): a range loop is clearest.
#[allow(clippy::needless_range_loop)]
pub(crate) fn decide_batch(
    plan: &Plan<'_>,
    batch: &RecordBatch,
    first_row: usize,
) -> Result<BatchDecisions> {
    let rows = batch.num_rows();
    let catalog = plan.catalog;
    let actions = catalog.len();
    let column = batch
        .column_by_name("customer_id")
        .ok_or_else(|| crate::schema_err!("customers: column \"customer_id\" is missing"))?;
    let ids = IdColumn::from_array(column, "customers")?;
    let masks: Vec<BooleanArray> = plan
        .rules
        .iter()
        .map(|rule| rule.evaluate(batch, plan.now_us))
        .collect::<Result<_>>()?;
    let contact = plan.contact.evaluate(batch, &ids);

    let thresholds_columns = plan.policies.threshold_columns(batch, "customers")?;
    let mut thresholds: Vec<u32> = Vec::with_capacity(plan.policies.policies.len());
    let mut verdicts = Verdicts::default();
    let mut funnel = FunnelCounts::new(actions, plan.policies.policies.len());
    funnel
        .candidates
        .iter_mut()
        .for_each(|count| *count = rows as u64);
    let capacity = rows.saturating_mul(plan.max_per_customer.min(actions));
    let mut out = BatchDecisions {
        ids: ids.to_owned_buffers(),
        rows: Vec::with_capacity(capacity),
        actions: Vec::with_capacity(capacity),
        propensity: Vec::with_capacity(capacity),
        priority: Vec::with_capacity(capacity),
        rank: if plan.keep_all {
            Vec::new()
        } else {
            Vec::with_capacity(capacity)
        },
        funnel: FunnelCounts::new(0, 0),
    };
    let id_order = catalog.id_order();
    let mut scored: Vec<Scored> = Vec::with_capacity(actions);
    let mut looked_up: Vec<f64> = vec![f64::NAN; actions];
    let propensity_columns = match &plan.propensities {
        Propensities::Columns(names) => batch_columns(names, batch, &ids, catalog)?,
        _ => Vec::new(),
    };
    let histories = match &plan.policies.history {
        Some(history) => history.for_customers(&ids),
        None => Vec::new(),
    };
    for row in 0..rows {
        // NaN marks "no propensity for this pair" in the per-row lookup buffer.
        let given: &[f64] = match &plan.propensities {
            Propensities::Missing => &[],
            Propensities::Dense { values, .. } => {
                let start = (first_row + row) * actions;
                &values[start..start + actions]
            }
            Propensities::Long(long) => {
                looked_up.fill(f64::NAN);
                for &(action, p) in long.for_customer(&ids, row) {
                    looked_up[action as usize] = p;
                }
                &looked_up
            }
            Propensities::Columns(_) => {
                for (slot, values) in looked_up.iter_mut().zip(&propensity_columns) {
                    *slot = match values {
                        Some(values) if values.is_valid(row) => values.value(row),
                        _ => f64::NAN,
                    };
                }
                &looked_up
            }
        };
        let events = histories.get(row).copied().unwrap_or(&[]);
        if !plan.policies.policies.is_empty() {
            // Every customer's: a bad value is an error whatever the candidates.
            plan.policies.thresholds_for(
                &thresholds_columns,
                row,
                &|| ids.display(row),
                &mut thresholds,
            )?;
            plan.policies
                .verdicts(events, &thresholds, plan.now_us, &mut verdicts);
        }
        scored.clear();
        for (a, action) in catalog.actions().iter().enumerate() {
            if !plan.active[a] {
                funnel.drop(Drop::Inactive, a);
                continue;
            }
            if let Some(rule) = plan.action_rule[a] {
                let mask = &masks[rule];
                if !(mask.is_valid(row) && mask.value(row)) {
                    funnel.drop(Drop::Ineligible, a);
                    continue;
                }
            }
            let code = contact[plan.contact.action_channel[a]][row];
            if code != 0 {
                funnel.drop(drop_of_code(code), a);
                continue;
            }
            let applicable = plan.action_policies[a];
            if applicable != 0 {
                let dropped_by =
                    verdicts.first_drop(&plan.policies, applicable, &plan.action_codes[a]);
                if let Some(p) = dropped_by {
                    funnel.suppressed[p][a] += 1;
                    continue;
                }
            }
            let p = match given.get(a) {
                Some(&p) if !p.is_nan() => p,
                _ => match action.default_propensity {
                    Some(p) => p,
                    None => {
                        funnel.drop(Drop::NoPropensity, a);
                        continue;
                    }
                },
            };
            let value =
                priority(p, action.value, action.context_weight, action.lever).map_err(|err| {
                    crate::data_err!(
                        "customer {} action {:?}: {err}",
                        ids.display(row),
                        action.id
                    )
                })?;
            scored.push(Scored {
                action: a as u32,
                tie: id_order[a],
                propensity: p,
                priority: value,
            });
        }
        let keep = if plan.keep_all {
            scored.len()
        } else {
            plan.max_per_customer
        };
        let top = rank_in_place(&mut scored, keep);
        for (rank, s) in scored[..top].iter().enumerate() {
            if rank < plan.max_per_customer {
                funnel.top_choice[s.action as usize] += 1;
                if !plan.keep_all {
                    funnel.selected[s.action as usize] += 1;
                }
            }
            out.rows.push(row as u32);
            out.actions.push(s.action);
            out.propensity.push(s.propensity);
            out.priority.push(s.priority);
            if !plan.keep_all {
                out.rank.push(rank as i32 + 1);
            }
        }
    }
    out.funnel = funnel;
    Ok(out)
}

fn drop_of_code(code: u8) -> Drop {
    match code - 1 {
        x if x == Drop::NoAddress as u8 => Drop::NoAddress,
        x if x == Drop::OptedOut as u8 => Drop::OptedOut,
        _ => Drop::DoNotContact,
    }
}
