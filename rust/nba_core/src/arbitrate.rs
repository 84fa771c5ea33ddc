//! `arbitrate`: priority, rank and selection over already-expanded candidates (Pega's shape).
//!
//! Rows are grouped by customer with one hash per row, customers are put in id order, and groups
//! are ranked in parallel chunks whose outputs concatenate in that order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::DataType;
use rayon::prelude::*;

use crate::allocate::{settle, Lists};
use crate::caps::CompiledCaps;
use crate::catalog::{byte_order_ranks, Action};
use crate::engine::{report, AllocationReport, Decided, Engine};
use crate::error::Result;
use crate::funnel::{Drop, FunnelCounts};
use crate::history::{Codes, NO_CODE};
use crate::ids::{group_rows, is_text, Groups, IdColumn, IdIndex};
use crate::output::decisions_schema;
use crate::policy::{PolicyStage, Scratch};
use crate::pool::thread_pool;
use crate::priority::priority;
use crate::propensity::{action_strings, float_column};
use crate::rank::{rank_in_place, Scored};
use crate::{data_err, schema_err};

/// The candidate table's columns, concatenated over its batches.
struct Candidates {
    ids: IdColumn,
    actions: Vec<u32>,
    propensity: PrimitiveArray<Float64Type>,
    factors: [Option<PrimitiveArray<Float64Type>>; 3],
    texts: [Option<StringArray>; 4],
}

const FACTORS: [&str; 3] = ["value", "context_weight", "lever"];
const TEXTS: [&str; 4] = ["issue", "group", "channel", "treatment"];

impl Engine {
    /// Applies contact policies, priority, rank and selection to candidate rows (DESIGN.md §4
    /// `arbitrate`); `history` feeds the policies.
    pub fn arbitrate(
        &self,
        schema: arrow_schema::SchemaRef,
        batches: &[RecordBatch],
        history: Option<crate::engine::BatchStream<'_>>,
        now_us: i64,
    ) -> Result<Decided> {
        let empty = [RecordBatch::new_empty(schema)];
        let batches = if batches.is_empty() {
            &empty[..]
        } else {
            batches
        };
        let (candidates, action_ids) = read_candidates(batches)?;
        let catalog_actions: Vec<Option<&Action>> = action_ids
            .iter()
            .map(|id| {
                self.catalog()
                    .index_of(id)
                    .map(|i| &self.catalog().actions()[i as usize])
            })
            .collect();
        let id_order = byte_order_ranks(action_ids.iter().map(String::as_str));
        let mut codes = self.codes().clone();
        let row_codes = candidates.codes(&action_ids, &catalog_actions, &mut codes);
        let pool = thread_pool(self.options().threads)?;
        let policies = pool.install(|| {
            PolicyStage::prepare(
                self.policies(),
                &codes,
                history,
                candidates.ids.kind(),
                now_us,
            )
        })?;
        let threshold_columns = if self.policies().is_empty() {
            Vec::new()
        } else {
            let all = arrow_select::concat::concat_batches(&batches[0].schema(), batches)?;
            policies.threshold_columns(&all, "candidates")?
        };

        let (index, numbers) = IdIndex::build(candidates.ids.clone())?;
        let groups = group_rows(&numbers, index.len());
        // Customers in id order: the output order.
        let mut customers: Vec<u32> = (0..index.len() as u32).collect();
        let first_row = |g: u32| groups.rows[groups.starts[g as usize] as usize] as usize;
        customers.par_sort_unstable_by(|&a, &b| {
            candidates
                .ids
                .cmp_at(first_row(a), &candidates.ids, first_row(b))
        });

        let chunk = self.options().batch_rows.max(1);
        let context = Context {
            candidates: &candidates,
            groups: &groups,
            catalog_actions: &catalog_actions,
            id_order: &id_order,
            action_ids: &action_ids,
            max_per_customer: self.options().max_per_customer,
            keep_all: !self.options().caps.is_empty(),
            policies: &policies,
            row_codes: &row_codes,
            threshold_columns: &threshold_columns,
            now_us,
        };
        let chunks: Vec<Result<Chunk>> = pool.install(|| {
            customers
                .par_chunks(chunk)
                .map(|customers| context.rank_chunk(customers))
                .collect()
        });
        let mut funnel = FunnelCounts::new(action_ids.len(), self.policies().len());
        let mut chunks = chunks.into_iter().collect::<Result<Vec<Chunk>>>()?;
        for chunk in &chunks {
            funnel.merge(&chunk.funnel);
        }
        let allocation = if self.options().caps.is_empty() {
            None
        } else {
            let caps = CompiledCaps::new(&self.options().caps, &codes);
            Some(pool.install(|| self.settle_chunks(&mut chunks, &caps, &row_codes, &mut funnel))?)
        };
        let parts = chunks
            .iter()
            .map(|chunk| context.output(chunk))
            .collect::<Result<Vec<RecordBatch>>>()?;
        let schema = decisions_schema(candidates.ids.kind());
        let decisions = arrow_select::concat::concat_batches(&schema, &parts)?;
        let names: Vec<&str> = action_ids.iter().map(String::as_str).collect();
        let cap_names: Vec<String> = self.options().caps.iter().map(|c| c.scope.text()).collect();
        Ok(Decided {
            decisions,
            funnel: funnel.to_batch(&names, &id_order, &self.policy_names(), &cap_names)?,
            allocation,
            timings: Vec::new(),
        })
    }

    /// Settles the caps over the chunks' ranked candidates (customers in id order, each
    /// starting at rank 1) and keeps the accepted ones.
    fn settle_chunks(
        &self,
        chunks: &mut [Chunk],
        caps: &CompiledCaps,
        row_codes: &[[u32; 4]],
        funnel: &mut FunnelCounts,
    ) -> Result<AllocationReport> {
        let mut starts = vec![0usize];
        let (mut priority, mut tie, mut slots, mut actions) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks.iter() {
            for &(row, s, rank) in &chunk.selected {
                if rank == 1 && !priority.is_empty() {
                    starts.push(priority.len());
                }
                priority.push(s.priority);
                tie.push(s.tie);
                slots.push(caps.slots(&row_codes[row as usize]));
                actions.push(s.action);
            }
        }
        if !priority.is_empty() {
            starts.push(priority.len());
        }
        let ordinal: Vec<u32> = (0..starts.len().saturating_sub(1) as u32).collect();
        // Each row has its own codes (a row may override the catalog's group or issue), so
        // each candidate is its own kind.
        let kind: Vec<u32> = (0..priority.len() as u32).collect();
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            kind: &kind,
            tie: &tie,
            slots: &slots,
        };
        let method = self.options().allocation;
        let m = self.options().max_per_customer;
        let allocated = settle(&lists, &actions, caps, m, method, funnel);
        let mut x = 0usize;
        for chunk in chunks.iter_mut() {
            let keep = &allocated.accepted[x..x + chunk.selected.len()];
            x += chunk.selected.len();
            let mut flags = keep.iter();
            chunk
                .selected
                .retain(|_| flags.next().copied().unwrap_or(false));
        }
        report(caps, &allocated, method)
    }
}

/// One chunk of customers' accepted candidates: (row, action, propensity, priority, rank).
struct Chunk {
    selected: Vec<(u32, Scored, i32)>,
    funnel: FunnelCounts,
}

struct Context<'a> {
    candidates: &'a Candidates,
    groups: &'a Groups,
    catalog_actions: &'a [Option<&'a Action>],
    id_order: &'a [u32],
    action_ids: &'a [String],
    max_per_customer: usize,
    /// Keep every survivor, ranked, for the caps.
    keep_all: bool,
    policies: &'a PolicyStage,
    /// Per candidate row: codes of its action, group, issue and channel.
    row_codes: &'a [[u32; 4]],
    threshold_columns: &'a [Option<arrow_array::Int64Array>],
    now_us: i64,
}

impl Context<'_> {
    fn rank_chunk(&self, customers: &[u32]) -> Result<Chunk> {
        let c = self.candidates;
        let policy_count = self.policies.policies.len();
        let mut funnel = FunnelCounts::new(self.catalog_actions.len(), policy_count);
        let mut thresholds: Vec<u32> = Vec::with_capacity(policy_count);
        let mut scratch = Scratch::default();
        let mut selected = Vec::new();
        let mut scored: Vec<(Scored, u32)> = Vec::new();
        let mut ranked: Vec<Scored> = Vec::new();
        let mut seen: Vec<u32> = Vec::new();
        for &g in customers {
            let g = g as usize;
            let rows = &self.groups.rows
                [self.groups.starts[g] as usize..self.groups.starts[g + 1] as usize];
            // A duplicate (customer, action) pair is an error even if one of its rows would be
            // dropped later: the input is ambiguous.
            seen.clear();
            seen.extend(rows.iter().map(|&row| c.actions[row as usize]));
            seen.sort_unstable();
            if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                return Err(data_err!(
                    "candidates: customer {} has action {:?} more than once",
                    c.ids.display(rows[0] as usize),
                    self.action_ids[w[0] as usize]
                ));
            }
            let events = match &self.policies.history {
                Some(history) => history.for_customer(&c.ids, rows[0] as usize),
                None => &[],
            };
            scratch.start(events);
            scored.clear();
            for &row in rows {
                let row_usize = row as usize;
                let action = c.actions[row_usize];
                funnel.candidates[action as usize] += 1;
                if policy_count > 0 {
                    // In arbitrate the threshold column is read from each candidate's own row.
                    self.policies.thresholds_for(
                        self.threshold_columns,
                        row_usize,
                        &|| c.ids.display(row_usize),
                        &mut thresholds,
                    )?;
                    let codes = &self.row_codes[row_usize];
                    let dropped_by = self.policies.first_drop(
                        self.policies.applicable(codes[3]),
                        codes,
                        events,
                        &thresholds,
                        self.now_us,
                        &mut scratch,
                    );
                    if let Some(p) = dropped_by {
                        funnel.suppressed[p][action as usize] += 1;
                        continue;
                    }
                }
                let catalog = self.catalog_actions[action as usize];
                let propensity = if c.propensity.is_valid(row_usize) {
                    Some(c.propensity.value(row_usize))
                } else {
                    catalog.and_then(|a| a.default_propensity)
                };
                let Some(propensity) = propensity else {
                    funnel.drop(Drop::NoPropensity, action as usize);
                    continue;
                };
                let mut factors = [1.0f64; 3];
                for (k, factor) in factors.iter_mut().enumerate() {
                    let from_row = c.factors[k].as_ref().filter(|col| col.is_valid(row_usize));
                    *factor = match (from_row, catalog) {
                        (Some(col), _) => col.value(row_usize),
                        (None, Some(a)) => [a.value, a.context_weight, a.lever][k],
                        (None, None) => 1.0,
                    };
                }
                let value =
                    priority(propensity, factors[0], factors[1], factors[2]).map_err(|err| {
                        data_err!("candidates: customer {}: {err}", c.ids.display(row_usize))
                    })?;
                scored.push((
                    Scored {
                        action,
                        tie: self.id_order[action as usize],
                        propensity,
                        priority: value,
                    },
                    row,
                ));
            }
            ranked.clear();
            ranked.extend(scored.iter().map(|(s, _)| *s));
            let keep = if self.keep_all {
                ranked.len()
            } else {
                self.max_per_customer
            };
            let top = rank_in_place(&mut ranked, keep);
            for (rank, s) in ranked[..top].iter().enumerate() {
                if rank < self.max_per_customer {
                    funnel.top_choice[s.action as usize] += 1;
                    if !self.keep_all {
                        funnel.selected[s.action as usize] += 1;
                    }
                }
                let row = scored
                    .iter()
                    .find(|(x, _)| x.action == s.action)
                    .map_or(rows[0], |(_, r)| *r);
                selected.push((row, *s, rank as i32 + 1));
            }
        }
        Ok(Chunk { selected, funnel })
    }

    fn output(&self, chunk: &Chunk) -> Result<RecordBatch> {
        let c = self.candidates;
        let n = chunk.selected.len();
        let rows = UInt32Array::from_iter_values(chunk.selected.iter().map(|(row, _, _)| *row));
        let ids = arrow_select::take::take(&c.ids.to_array(), &rows, None)?;
        let mut action_col = StringBuilder::with_capacity(n, n * 8);
        let mut texts: Vec<StringBuilder> = (0..4)
            .map(|_| StringBuilder::with_capacity(n, n * 8))
            .collect();
        let mut floats: Vec<Float64Builder> =
            (0..5).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut rank = Int32Builder::with_capacity(n);
        for &(row, s, r) in &chunk.selected {
            let row = row as usize;
            let catalog = self.catalog_actions[s.action as usize];
            action_col.append_value(&self.action_ids[s.action as usize]);
            for (k, builder) in texts.iter_mut().enumerate() {
                let from_row = c.texts[k]
                    .as_ref()
                    .filter(|col| col.is_valid(row))
                    .map(|col| col.value(row));
                let from_catalog = catalog.and_then(|a| match k {
                    0 => Some(a.issue.as_str()),
                    1 => Some(a.group.as_str()),
                    2 => Some(a.channel.as_str()),
                    _ => a.treatment.as_deref(),
                });
                builder.append_option(from_row.or(from_catalog));
            }
            floats[0].append_value(s.propensity);
            for k in 0..3 {
                let from_row = c.factors[k]
                    .as_ref()
                    .filter(|col| col.is_valid(row))
                    .map(|col| col.value(row));
                let from_catalog = catalog.map(|a| [a.value, a.context_weight, a.lever][k]);
                floats[k + 1].append_value(from_row.or(from_catalog).unwrap_or(1.0));
            }
            floats[4].append_value(s.priority);
            rank.append_value(r);
        }
        let mut columns: Vec<ArrayRef> = vec![ids, Arc::new(action_col.finish())];
        columns.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(rank.finish()));
        Ok(RecordBatch::try_new(
            decisions_schema(c.ids.kind()),
            columns,
        )?)
    }
}

impl Candidates {
    /// Per row, the codes of (action, group, issue, channel): the row's own text, else the
    /// catalog action's, else [`NO_CODE`]. New values are added to `codes`.
    fn codes(
        &self,
        action_ids: &[String],
        catalog: &[Option<&Action>],
        codes: &mut Codes,
    ) -> Vec<[u32; 4]> {
        let action_codes: Vec<u32> = action_ids.iter().map(|id| codes.intern(0, id)).collect();
        (0..self.actions.len())
            .map(|row| {
                let action = self.actions[row] as usize;
                let mut out = [action_codes[action], NO_CODE, NO_CODE, NO_CODE];
                for (field, text) in [(1, 1usize), (2, 0), (3, 2)] {
                    // texts are [issue, group, channel, treatment]; codes [action, group, issue, channel]
                    let from_row = self.texts[text]
                        .as_ref()
                        .filter(|col| col.is_valid(row))
                        .map(|col| col.value(row));
                    let from_catalog = catalog[action].map(|a| match field {
                        1 => a.group.as_str(),
                        2 => a.issue.as_str(),
                        _ => a.channel.as_str(),
                    });
                    if let Some(value) = from_row.or(from_catalog) {
                        out[field] = codes.intern(field, value);
                    }
                }
                out
            })
            .collect()
    }
}

/// Concatenates and validates the candidate columns; numbers the distinct action ids.
fn read_candidates(batches: &[RecordBatch]) -> Result<(Candidates, Vec<String>)> {
    // The batches share one schema; the caller passes at least one (possibly empty) batch.
    let column = |name: &str| -> Result<Option<ArrayRef>> {
        if batches
            .first()
            .is_none_or(|b| b.column_by_name(name).is_none())
        {
            return Ok(None);
        }
        let arrays: Vec<&dyn Array> = batches
            .iter()
            .filter_map(|b| b.column_by_name(name))
            .map(|a| a.as_ref())
            .collect();
        Ok(Some(arrow_select::concat::concat(&arrays)?))
    };
    let required = |name: &str| -> Result<ArrayRef> {
        column(name)?.ok_or_else(|| schema_err!("candidates: column {name:?} is missing"))
    };
    let ids = required("customer_id")?;
    let ids = IdColumn::from_array(&ids, "candidates")?;
    let actions_raw = required("action_id")?;
    let action_text = action_strings(&actions_raw, "candidates")?;
    let mut numbering: HashMap<&str, u32> = HashMap::new();
    let mut action_ids: Vec<String> = Vec::new();
    let mut actions = Vec::with_capacity(action_text.len());
    for row in 0..action_text.len() {
        if action_text.is_null(row) {
            return Err(data_err!("candidates: action_id is null in row {row}"));
        }
        let id = action_text.value(row);
        let n = *numbering.entry(id).or_insert_with(|| {
            action_ids.push(id.to_owned());
            (action_ids.len() - 1) as u32
        });
        actions.push(n);
    }
    let propensity_raw = required("propensity")?;
    let propensity = float_column(&propensity_raw, "candidates", "propensity")?;
    for row in 0..propensity.len() {
        let p = propensity.value(row);
        if propensity.is_valid(row) && !(0.0..=1.0).contains(&p) {
            return Err(data_err!(
                "candidates: propensity {p} for customer {} and action {:?} is not a probability in [0, 1]",
                ids.display(row),
                action_text.value(row)
            ));
        }
    }
    let mut factors: [Option<PrimitiveArray<Float64Type>>; 3] = [None, None, None];
    for (k, name) in FACTORS.iter().enumerate() {
        if let Some(raw) = column(name)? {
            let values = float_column(&raw, "candidates", name)?;
            for row in 0..values.len() {
                let v = values.value(row);
                if values.is_valid(row) && !(v.is_finite() && v >= 0.0) {
                    return Err(data_err!(
                        "candidates: {name} {v} for customer {} and action {:?} must be finite and >= 0",
                        ids.display(row),
                        action_text.value(row)
                    ));
                }
            }
            factors[k] = Some(values);
        }
    }
    let mut texts: [Option<StringArray>; 4] = [None, None, None, None];
    for (k, name) in TEXTS.iter().enumerate() {
        if let Some(raw) = column(name)? {
            if !is_text(raw.data_type()) {
                return Err(schema_err!(
                    "candidates: column {name:?} must be strings, got {}",
                    raw.data_type()
                ));
            }
            let cast = arrow_cast::cast(&raw, &DataType::Utf8)?;
            texts[k] = Some(cast.as_string::<i32>().clone());
        }
    }
    Ok((
        Candidates {
            ids,
            actions,
            propensity,
            factors,
            texts,
        },
        action_ids,
    ))
}
