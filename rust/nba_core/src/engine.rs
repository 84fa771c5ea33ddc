//! The engine: a catalog compiled once, then `decide` over a stream of customer batches.
//!
//! Batches are cut to at most `batch_rows` rows and decided in waves, one batch per task on the
//! thread pool; results are concatenated in input order, so the output does not depend on the
//! number of threads or on how the input was batched.

use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use rayon::prelude::*;

use crate::allocate::{settle, usage_batch, Lists};
use crate::candidates::{decide_batch, BatchDecisions, Plan};
use crate::caps::{validate_caps, Allocation, CapScope, CompiledCaps, VolumeCap};
use crate::catalog::{prefix_error, Catalog};
use crate::contact::Contactability;
use crate::error::Result;
use crate::funnel::FunnelCounts;
use crate::history::Codes;
use crate::ids::{IdColumn, IdIndex, IdKind};
use crate::output::decisions_batch;
use crate::policy::{validate_policies, ContactPolicy, PolicyStage};
use crate::pool::thread_pool;
use crate::propensity::{LongPropensities, Propensities};
use crate::rules::{BoundRule, Rule};
use crate::{config_err, data_err, schema_err};

/// Engine options; every one has a sensible default.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Actions accepted per customer (rank ≤ this), at least 1.
    pub max_per_customer: usize,
    /// Largest batch decided as one task.
    pub batch_rows: usize,
    /// Worker threads; `None` = `NBA_FAST_THREADS` or the number of cores.
    pub threads: Option<usize>,
    /// Volume caps of one run (scopes unique).
    pub caps: Vec<VolumeCap>,
    /// How decisions are allocated under the caps.
    pub allocation: Allocation,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_per_customer: 1,
            batch_rows: 32_768,
            threads: None,
            caps: Vec::new(),
            allocation: Allocation::Greedy,
        }
    }
}

/// How the caller gives propensities to `decide`.
#[derive(Debug, Clone, Copy)]
pub enum PropensityInput<'a> {
    /// No propensities: default propensities only.
    Missing,
    /// A long table (`customer_id`, `action_id`, `propensity`).
    Long(&'a [RecordBatch]),
    /// A row-major (customers × actions) matrix in catalog order.
    Dense {
        /// The values, row-major.
        values: &'a [f64],
        /// Rows (customers).
        rows: usize,
        /// Columns (actions).
        columns: usize,
    },
    /// Columns of the customers' batches: (action id, column) pairs.
    Columns(&'a [(String, String)]),
}

/// Record batches read one at a time (an Arrow stream, or a table's batches).
pub type BatchStream<'a> =
    Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send + 'a>;

/// `batches` (a table's, or an Arrow stream's) as a [`BatchStream`], led by an empty batch
/// of `schema` so that even an empty stream's schema is checked.
pub fn batch_stream<'a, I>(schema: SchemaRef, batches: I) -> BatchStream<'a>
where
    I: IntoIterator<Item = std::result::Result<RecordBatch, ArrowError>>,
    I::IntoIter: Send + 'a,
{
    Box::new(std::iter::once(Ok(RecordBatch::new_empty(schema))).chain(batches))
}

/// The per-call inputs of `decide` besides the customers.
pub struct Inputs<'a> {
    /// Propensities of (customer, action) pairs.
    pub propensities: PropensityInput<'a>,
    /// The do-not-contact list.
    pub do_not_contact: Option<&'a [RecordBatch]>,
    /// The interaction history the contact policies read, read batch by batch (only the
    /// events some policy counts are kept).
    pub history: Option<BatchStream<'a>>,
    /// The decision time, µs since the epoch (UTC).
    pub now_us: i64,
}

// By hand: a stream has no `Debug` of its own (and reading it would consume it).
impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("propensities", &self.propensities)
            .field("do_not_contact", &self.do_not_contact)
            .field("history", &self.history.as_ref().map(|_| "<stream>"))
            .field("now_us", &self.now_us)
            .finish()
    }
}

impl Inputs<'_> {
    /// No propensities, lists or history, at `now_us`.
    pub fn at(now_us: i64) -> Self {
        Self {
            propensities: PropensityInput::Missing,
            do_not_contact: None,
            history: None,
            now_us,
        }
    }
}

/// What a run produces.
#[derive(Debug, Clone)]
pub struct Decided {
    /// One row per accepted (customer, action), ordered by customer then rank.
    pub decisions: RecordBatch,
    /// (stage, action_id, count) rows.
    pub funnel: RecordBatch,
    /// How the caps were settled; `None` without caps.
    pub allocation: Option<AllocationReport>,
    /// Wall-clock seconds per stage, in order.
    pub timings: Vec<(&'static str, f64)>,
}

/// How the volume caps were settled.
#[derive(Debug, Clone)]
pub struct AllocationReport {
    /// Greedy or optimal.
    pub method: Allocation,
    /// Total priority of the decisions.
    pub objective: f64,
    /// Total priority the plain greedy reaches.
    pub greedy_objective: f64,
    /// Upper bound on any feasible total (optimal only).
    pub dual_bound: Option<f64>,
    /// (bound − objective) / bound (optimal only).
    pub gap: Option<f64>,
    /// Passes over the candidates of the price search (optimal only).
    pub passes: u32,
    /// (scope, max, used) per cap.
    pub usage: RecordBatch,
}

/// Records the wall-clock time of consecutive stages.
pub(crate) struct Stopwatch {
    last: std::time::Instant,
    pub laps: Vec<(&'static str, f64)>,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Ends stage `name` (it began where the previous one ended).
    pub fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// A compiled catalog plus options.
#[derive(Debug)]
pub struct Engine {
    catalog: Catalog,
    options: EngineOptions,
    /// Distinct rules (by source text), parsed once.
    rules: Vec<Rule>,
    /// Rule number per action; `None` for always-true rules.
    action_rule: Vec<Option<usize>>,
    /// Contact policies, in the order they apply.
    policies: Vec<ContactPolicy>,
    /// Codes of the catalog's action ids (= catalog index), groups, issues and channels.
    codes: Codes,
}

impl Engine {
    /// Validates the options and policies, and deduplicates the rules of the catalog.
    pub fn new(
        catalog: Catalog,
        policies: Vec<ContactPolicy>,
        options: EngineOptions,
    ) -> Result<Self> {
        validate_policies(&policies)?;
        validate_caps(&options.caps)?;
        if !catalog.is_empty() {
            for cap in &options.caps {
                if let CapScope::Action(id) = &cap.scope {
                    if catalog.index_of(id).is_none() {
                        return Err(config_err!(
                            "caps: scope \"action:{id}\" names no action of the catalog"
                        ));
                    }
                }
            }
        }
        if options.max_per_customer < 1 {
            return Err(config_err!(
                "max_per_customer must be at least 1, got {}",
                options.max_per_customer
            ));
        }
        if options.batch_rows < 1 {
            return Err(config_err!("batch_rows must be at least 1"));
        }
        if options.threads == Some(0) {
            return Err(config_err!("threads must be at least 1"));
        }
        let mut rules: Vec<Rule> = Vec::new();
        let mut action_rule = Vec::with_capacity(catalog.len());
        for action in catalog.actions() {
            let rule = &action.eligibility;
            if rule.is_always_true() {
                action_rule.push(None);
                continue;
            }
            let number = match rules.iter().position(|r| r.source() == rule.source()) {
                Some(n) => n,
                None => {
                    rules.push(rule.clone());
                    rules.len() - 1
                }
            };
            action_rule.push(Some(number));
        }
        let mut codes = Codes::default();
        for action in catalog.actions() {
            codes.intern(0, &action.id);
            codes.intern(1, &action.group);
            codes.intern(2, &action.issue);
            codes.intern(3, &action.channel);
        }
        Ok(Self {
            catalog,
            options,
            rules,
            action_rule,
            policies,
            codes,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The contact policies.
    pub fn policies(&self) -> &[ContactPolicy] {
        &self.policies
    }

    /// The codes of the catalog's fields (policies compare them).
    pub(crate) fn codes(&self) -> &Codes {
        &self.codes
    }

    /// The policy names, for the funnel.
    pub(crate) fn policy_names(&self) -> Vec<String> {
        self.policies.iter().map(|p| p.name.clone()).collect()
    }

    /// Decides for every customer of the stream (DESIGN.md §3).
    pub fn decide<I>(&self, schema: SchemaRef, customers: I, inputs: Inputs<'_>) -> Result<Decided>
    where
        I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
    {
        let id_field = schema
            .field_with_name("customer_id")
            .map_err(|_| schema_err!("customers: column \"customer_id\" is missing"))?;
        let id_kind = IdKind::of(id_field.data_type()).ok_or_else(|| {
            schema_err!(
                "customers: column \"customer_id\" must be an integer or a string, got {}",
                id_field.data_type()
            )
        })?;
        let pool = thread_pool(self.options.threads)?;
        let mut watch = Stopwatch::start();
        let plan = pool.install(|| self.plan(&schema, id_kind, inputs, &mut watch))?;
        let wave_size = pool.current_num_threads() * 2;

        let mut results: Vec<BatchDecisions> = Vec::new();
        let mut wave: Vec<(RecordBatch, usize)> = Vec::with_capacity(wave_size);
        let mut offset = 0usize;
        let mut run_wave = |wave: &mut Vec<(RecordBatch, usize)>| -> Result<()> {
            let decided: Vec<Result<BatchDecisions>> = pool.install(|| {
                wave.par_iter()
                    .map(|(batch, first_row)| decide_batch(&plan, batch, *first_row))
                    .collect()
            });
            wave.clear();
            for result in decided {
                results.push(result?);
            }
            Ok(())
        };
        let dense_rows = match plan.propensities {
            Propensities::Dense { rows, .. } => Some(rows),
            _ => None,
        };
        for batch in customers {
            let batch = batch.map_err(|err| {
                data_err!("customers: the stream failed after {offset} rows: {err}")
            })?;
            if let Some(rows) = dense_rows {
                if offset + batch.num_rows() > rows {
                    return Err(data_err!(
                        "propensities: the array has {rows} rows but there are more customers"
                    ));
                }
            }
            let mut start = 0;
            while start < batch.num_rows() {
                let len = self.options.batch_rows.min(batch.num_rows() - start);
                wave.push((batch.slice(start, len), offset + start));
                start += len;
                if wave.len() == wave_size {
                    run_wave(&mut wave)?;
                }
            }
            offset += batch.num_rows();
        }
        run_wave(&mut wave)?;
        if let Propensities::Dense { rows, .. } = plan.propensities {
            if rows != offset {
                return Err(data_err!(
                    "propensities: the array has {rows} rows but there are {offset} customers"
                ));
            }
        }
        watch.lap("decide");
        // The history index and the other per-call lookups are done with: free them before
        // the caps are settled, the run's peak.
        drop(plan);
        crate::memory::release_freed();
        pool.install(|| self.finish(results, id_kind, watch))
    }

    fn plan<'a>(
        &'a self,
        schema: &SchemaRef,
        id_kind: IdKind,
        inputs: Inputs<'a>,
        watch: &mut Stopwatch,
    ) -> Result<Plan<'a>> {
        let now_us = inputs.now_us;
        let rules: Vec<BoundRule> = self
            .rules
            .iter()
            .enumerate()
            .map(|(number, rule)| {
                rule.bind(schema).map_err(|err| {
                    let action = self
                        .action_rule
                        .iter()
                        .position(|&r| r == Some(number))
                        .map(|a| self.catalog.actions()[a].id.as_str())
                        .unwrap_or_default();
                    prefix_error(err, &format!("action {action:?}: eligibility "))
                })
            })
            .collect::<Result<_>>()?;
        let contact =
            Contactability::prepare(&self.catalog, schema, id_kind, inputs.do_not_contact)?;
        watch.lap("prepare");
        let policies =
            PolicyStage::prepare(&self.policies, &self.codes, inputs.history, id_kind, now_us)?;
        watch.lap("history_index");
        // Fail before any batch if a threshold column is missing or mistyped.
        policies.threshold_columns(&RecordBatch::new_empty(schema.clone()), "customers")?;
        let action_codes: Vec<[u32; 4]> = self
            .catalog
            .actions()
            .iter()
            .map(|a| {
                [
                    self.codes.get(0, &a.id),
                    self.codes.get(1, &a.group),
                    self.codes.get(2, &a.issue),
                    self.codes.get(3, &a.channel),
                ]
            })
            .collect();
        let action_policies = action_codes
            .iter()
            .map(|codes| policies.applicable(codes[3]))
            .collect();
        let propensities = match inputs.propensities {
            PropensityInput::Missing => Propensities::Missing,
            PropensityInput::Long(batches) => {
                Propensities::Long(LongPropensities::build(batches, &self.catalog, id_kind)?)
            }
            PropensityInput::Dense {
                values,
                rows,
                columns,
            } => Propensities::dense(values, rows, columns, &self.catalog)?,
            PropensityInput::Columns(pairs) => Propensities::columns(pairs, &self.catalog, schema)?,
        };
        watch.lap("propensity_index");
        Ok(Plan {
            catalog: &self.catalog,
            rules,
            action_rule: self.action_rule.clone(),
            active: self
                .catalog
                .actions()
                .iter()
                .map(|a| a.is_active(now_us))
                .collect(),
            contact,
            policies,
            action_codes,
            action_policies,
            propensities,
            max_per_customer: self.options.max_per_customer,
            keep_all: !self.options.caps.is_empty(),
            now_us,
        })
    }

    /// Merges the batches' results: checks ids are unique, settles the caps, orders by
    /// customer, builds tables.
    fn finish(
        &self,
        mut results: Vec<BatchDecisions>,
        id_kind: IdKind,
        mut watch: Stopwatch,
    ) -> Result<Decided> {
        let mut funnel = FunnelCounts::new(self.catalog.len(), self.policies.len());
        for result in &results {
            funnel.merge(&result.funnel);
        }
        let id_columns: Vec<&IdColumn> = results.iter().map(|r| &r.ids).collect();
        let sorted = strictly_increasing(&id_columns);
        if !sorted {
            check_unique(&id_columns, id_kind)?;
        }
        let allocation = if self.options.caps.is_empty() {
            None
        } else {
            let report = self.apply_caps(&mut results, sorted, &mut funnel)?;
            watch.lap("allocate");
            Some(report)
        };
        let decisions = decisions_batch(&results, id_kind, &self.catalog, !sorted)?;
        let ids: Vec<&str> = self
            .catalog
            .actions()
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        let cap_names: Vec<String> = self.options.caps.iter().map(|c| c.scope.text()).collect();
        let funnel = funnel.to_batch(
            &ids,
            self.catalog.id_order(),
            &self.policy_names(),
            &cap_names,
        )?;
        watch.lap("output");
        Ok(Decided {
            decisions,
            funnel,
            allocation,
            timings: watch.laps,
        })
    }

    /// Settles the caps over every batch's ranked survivors and keeps the accepted ones.
    fn apply_caps(
        &self,
        results: &mut [BatchDecisions],
        sorted: bool,
        funnel: &mut FunnelCounts,
    ) -> Result<AllocationReport> {
        let caps = CompiledCaps::new(&self.options.caps, &self.codes);
        let action_slots: Vec<_> = self
            .catalog
            .actions()
            .iter()
            .map(|a| {
                caps.slots(&[
                    self.codes.get(0, &a.id),
                    self.codes.get(1, &a.group),
                    self.codes.get(2, &a.issue),
                    self.codes.get(3, &a.channel),
                ])
            })
            .collect();
        let id_order = self.catalog.id_order();
        let total: usize = results.iter().map(|r| r.rows.len()).sum();
        if u32::try_from(total).is_err() {
            return Err(data_err!(
                "caps: more than {} ranked candidates in one run",
                u32::MAX
            ));
        }
        // Flat arrays over every batch's ranked candidates, filled batch by batch in parallel;
        // each batch hands over its priorities and actions (they are rebuilt for the accepted
        // ones below), so they are not held twice.
        let new_customers: Vec<usize> = results
            .par_iter()
            .map(|r| {
                (0..r.rows.len())
                    .filter(|&k| k == 0 || r.rows[k] != r.rows[k - 1])
                    .count()
            })
            .collect();
        let customer_count: usize = new_customers.iter().sum();
        let id_counts: Vec<usize> = results.iter().map(|r| r.ids.len()).collect();
        let offsets = prefix_starts(&id_counts);
        let offset: usize = id_counts.iter().sum();
        if u32::try_from(offset).is_err() {
            return Err(data_err!(
                "caps: more than {} customers in one run",
                u32::MAX
            ));
        }
        let lengths: Vec<usize> = results.iter().map(|r| r.rows.len()).collect();
        let firsts = prefix_starts(&lengths);
        let mut priority = vec![0.0f64; total];
        let mut actions = vec![0u32; total];
        let mut starts = vec![0usize; customer_count + 1];
        // Per customer with candidates: their position in the batches' customers, one after
        // the other; with the ids in order, that is their ordinal.
        let mut ordinal = vec![0u32; customer_count];
        {
            let priority = split_lengths(&mut priority, &lengths);
            let actions = split_lengths(&mut actions, &lengths);
            let starts = split_lengths(&mut starts[..customer_count], &new_customers);
            let ordinal = split_lengths(&mut ordinal, &new_customers);
            results
                .par_iter_mut()
                .zip(priority.into_par_iter().zip(actions))
                .zip(starts.into_par_iter().zip(ordinal).zip(&firsts))
                .zip(&offsets)
                .for_each(
                    |(((result, (priority, actions)), ((starts, ordinal), &first)), &offset)| {
                        priority.copy_from_slice(&std::mem::take(&mut result.priority));
                        actions.copy_from_slice(&std::mem::take(&mut result.actions));
                        let rows = &result.rows;
                        let mut j = 0;
                        for k in 0..rows.len() {
                            if k == 0 || rows[k] != rows[k - 1] {
                                starts[j] = first + k;
                                ordinal[j] = (offset + rows[k] as usize) as u32;
                                j += 1;
                            }
                        }
                    },
                );
        }
        starts[customer_count] = total;
        // The batches' priorities and actions, now in the flat arrays.
        crate::memory::release_freed();
        if !sorted {
            // Each customer's (batch, row), to compare their ids.
            let mut customers: Vec<(u32, u32)> = Vec::with_capacity(customer_count);
            let mut j = 0;
            for (b, &count) in new_customers.iter().enumerate() {
                customers.extend(
                    ordinal[j..j + count]
                        .iter()
                        .map(|&position| (b as u32, position - offsets[b] as u32)),
                );
                j += count;
            }
            let mut order: Vec<u32> = (0..customers.len() as u32).collect();
            order.par_sort_unstable_by(|&x, &y| {
                let (bx, rx) = customers[x as usize];
                let (by, ry) = customers[y as usize];
                results[bx as usize]
                    .ids
                    .cmp_at(rx as usize, &results[by as usize].ids, ry as usize)
            });
            for (position, &i) in order.iter().enumerate() {
                ordinal[i as usize] = position as u32;
            }
        }
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            kind: &actions,
            tie: id_order,
            slots: &action_slots,
        };
        let m = self.options.max_per_customer;
        let allocated = settle(&lists, &actions, &caps, m, self.options.allocation, funnel);
        results.par_iter_mut().zip(firsts).for_each(|(result, x)| {
            let range = x..x + result.rows.len();
            keep_accepted(
                result,
                &allocated.accepted[range.clone()],
                &priority[range.clone()],
                &actions[range],
            );
        });
        report(&caps, &allocated, self.options.allocation)
    }
}

/// Where each of consecutive pieces of the given lengths starts.
pub(crate) fn prefix_starts(lengths: &[usize]) -> Vec<usize> {
    let mut start = 0usize;
    lengths
        .iter()
        .map(|&len| {
            start += len;
            start - len
        })
        .collect()
}

/// `slice` cut into consecutive pieces of the given lengths (which sum to its length).
pub(crate) fn split_lengths<'a, T>(mut slice: &'a mut [T], lengths: &[usize]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let (piece, rest) = slice.split_at_mut(len);
        pieces.push(piece);
        slice = rest;
    }
    pieces
}

/// Keeps one batch's accepted candidates (`keep`), in one pass: their rows, propensities,
/// priorities and actions (the last two from the flat arrays, which hold them meanwhile), and
/// their ranks, the 1-based positions in their customer's ranked run (a customer's candidates
/// are adjacent and in rank order).
fn keep_accepted(result: &mut BatchDecisions, keep: &[bool], priority: &[f64], actions: &[u32]) {
    let count = keep.iter().filter(|&&k| k).count();
    let mut kept_rows = Vec::with_capacity(count);
    let mut kept_rank = Vec::with_capacity(count);
    let mut kept_propensity = Vec::with_capacity(count);
    let mut kept_priority = Vec::with_capacity(count);
    let mut kept_actions = Vec::with_capacity(count);
    let rows = &result.rows;
    let mut rank = 0;
    for k in 0..rows.len() {
        rank = if k > 0 && rows[k - 1] == rows[k] {
            rank + 1
        } else {
            1
        };
        if keep[k] {
            kept_rows.push(rows[k]);
            kept_rank.push(rank);
            kept_propensity.push(result.propensity[k]);
            kept_priority.push(priority[k]);
            kept_actions.push(actions[k]);
        }
    }
    result.rows = kept_rows;
    result.rank = kept_rank;
    result.propensity = kept_propensity;
    result.priority = kept_priority;
    result.actions = kept_actions;
}

/// The report of a settled allocation.
pub(crate) fn report(
    caps: &CompiledCaps,
    allocated: &crate::allocate::Allocated,
    method: Allocation,
) -> Result<AllocationReport> {
    Ok(AllocationReport {
        method,
        objective: allocated.objective,
        greedy_objective: allocated.greedy_objective,
        dual_bound: allocated.dual_bound,
        gap: allocated
            .dual_bound
            .map(|bound| crate::allocate::relative_gap(bound, allocated.objective)),
        passes: allocated.passes,
        usage: usage_batch(caps, &allocated.used)?,
    })
}

/// Whether the ids, read in order across the columns, are strictly increasing (hence unique
/// and already in output order).
fn strictly_increasing(columns: &[&IdColumn]) -> bool {
    let mut previous: Option<(&IdColumn, usize)> = None;
    for column in columns {
        for row in 0..column.len() {
            if let Some((prev, prev_row)) = previous {
                if prev.cmp_at(prev_row, column, row) != std::cmp::Ordering::Less {
                    return false;
                }
            }
            previous = Some((column, row));
        }
    }
    true
}

/// A `DataError` naming the first duplicate customer id, if any.
fn check_unique(columns: &[&IdColumn], kind: IdKind) -> Result<()> {
    let arrays: Vec<_> = columns.iter().map(|c| c.to_array()).collect();
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    let all = if refs.is_empty() {
        arrow_array::new_empty_array(&kind.data_type())
    } else {
        arrow_select::concat::concat(&refs)?
    };
    let all = IdColumn::from_array(&all, "customers")?;
    let (index, numbers) = IdIndex::build(all.clone())?;
    if index.len() == all.len() {
        return Ok(());
    }
    let mut seen = vec![false; index.len()];
    for (row, &number) in numbers.iter().enumerate() {
        if std::mem::replace(&mut seen[number as usize], true) {
            return Err(data_err!(
                "customers: customer_id {} appears more than once",
                all.display(row)
            ));
        }
    }
    Ok(())
}
