//! Allocation under volume caps: which ranked candidates become decisions.
//!
//! **Greedy** (DESIGN.md §3): candidates in order of (priority desc, customer asc, action asc),
//! each accepted while its customer has room and every cap containing it has room. It is
//! computed without sorting every candidate:
//! - a cap that could never fill (the most it could take, `min(M, the customer's candidates in
//!   it)` summed over customers, is within its max) never rejects anything, so it is ignored;
//! - a candidate in no cap that can fill is accepted as soon as its customer reaches it with
//!   room, whatever the global order: each customer walks their ranked list and stops only at
//!   a candidate in a cap that can fill (their *head*);
//! - only heads are put in global order (one sort of at most one key per customer), merged with
//!   a heap of the follow-up heads of customers who moved on; once every such cap is full the
//!   rest needs no order at all: capped candidates are rejected, the others accepted by room.
//!
//! The customer's walk is their rank order, which is the global order restricted to them, so
//! every candidate is decided at the same point, with the same state, as in the plain
//! definition (`nba_fast.reference` sorts everything; the property tests compare the two).
//!
//! **Optimal**: maximise the total priority under the same caps and `max_per_customer` by
//! Lagrangian relaxation. With a price λ_c ≥ 0 per cap, each customer independently takes
//! their best `M` candidates by `priority − Σ λ` (those above 0); the dual bound
//! `D(λ) = Σ_customers best(λ) + Σ_c λ_c · max_c` bounds every feasible total from above.
//! Prices are set by block-coordinate minimisation of `D`: caps of one kind of scope (every
//! action cap, say) are disjoint, so one pass over the candidates yields each one's marginal
//! gains, and each price moves to the minimiser of `D` along its coordinate — an order
//! statistic of those gains, found by partial selection. After each round over the kinds the
//! primal is the greedy above run on the price-adjusted priorities —
//! so no cap is ever exceeded — and the better of it and the plain greedy is returned, with the
//! best bound and the certified gap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;

use crate::caps::{Allocation, CapSlots, CompiledCaps, NO_CAP};
use crate::error::Result;
use crate::funnel::FunnelCounts;

/// Every customer's surviving candidates, each customer's in rank order.
pub(crate) struct Lists<'a> {
    /// Customer `i`'s candidates are `starts[i]..starts[i + 1]`.
    pub starts: &'a [usize],
    /// Customer `i`'s position in customer id order (the greedy's second key).
    pub ordinal: &'a [u32],
    /// Per candidate: priority.
    pub priority: &'a [f64],
    /// Per candidate: the action id's position in byte order (the third key).
    pub tie: &'a [u32],
    /// Per candidate: the caps it lies in.
    pub slots: &'a [CapSlots],
}

impl Lists<'_> {
    fn customers(&self) -> usize {
        self.starts.len() - 1
    }
}

/// The outcome of an allocation.
#[derive(Debug, Clone)]
pub(crate) struct Allocated {
    /// Per candidate: accepted.
    pub accepted: Vec<bool>,
    /// Per candidate: the first cap (in the caps' order) that was full when it came up, or
    /// `NO_CAP` (accepted, or never reached because its customer was full).
    pub rejected_by: Vec<u32>,
    /// Per cap: decisions it holds.
    pub used: Vec<u64>,
    /// Total priority of the accepted candidates.
    pub objective: f64,
    /// Best upper bound on any feasible total (Lagrangian dual); `None` for greedy.
    pub dual_bound: Option<f64>,
    /// Passes over the candidates the price search made.
    pub passes: u32,
    /// Total priority of the plain greedy (the same as `objective` for greedy).
    pub greedy_objective: f64,
}

/// A key whose ascending order is `score` descending (−0.0 ties with 0.0), then `ordinal`,
/// then `tie` ascending.
#[inline]
fn order_key(score: f64, ordinal: u32, tie: u32) -> u128 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ((!ascending as u128) << 64) | ((ordinal as u128) << 32) | tie as u128
}

/// Caps that can fill: the most they could take exceeds their max.
fn live_caps(lists: &Lists<'_>, caps: &CompiledCaps, m: usize) -> Vec<bool> {
    let customers = lists.customers();
    let potential = (0..customers)
        .into_par_iter()
        .fold(
            || vec![0u64; caps.len()],
            |mut potential, i| {
                let mut counts: Vec<(u32, u64)> = Vec::new();
                for slots in &lists.slots[lists.starts[i]..lists.starts[i + 1]] {
                    for &c in slots.iter().filter(|&&c| c != NO_CAP) {
                        match counts.iter_mut().find(|(cap, _)| *cap == c) {
                            Some((_, n)) => *n += 1,
                            None => counts.push((c, 1)),
                        }
                    }
                }
                for (c, n) in counts {
                    potential[c as usize] += n.min(m as u64);
                }
                potential
            },
        )
        .reduce(
            || vec![0u64; caps.len()],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    potential
        .iter()
        .zip(&caps.max)
        .map(|(&p, &max)| p > max)
        .collect()
}

/// The bookkeeping of one greedy run: which candidates are still undecided, and for each cap
/// that can fill, how many of them could still use it. A cap whose use plus that count is within
/// its max can no longer fill ("dead"); once every such cap is full or dead, the global order
/// no longer matters and each customer finishes their own walk.
struct Ledger<'a> {
    lists: &'a Lists<'a>,
    caps: &'a CompiledCaps,
    live: &'a [bool],
    walk: &'a [u32],
    /// Per candidate: decided (accepted, rejected, or past its full customer).
    decided: Vec<bool>,
    /// Per candidate (by index): in a full cap.
    blocked: Vec<bool>,
    /// Per cap: undecided, unblocked candidates in it.
    free: Vec<u64>,
    used: Vec<u64>,
    /// Per cap: live, not full, not dead.
    open: Vec<bool>,
    open_count: usize,
    /// Per cap: its candidates (by index), for when it fills.
    members: Vec<Vec<u32>>,
    /// The order key of the candidate being accepted (0 before the first).
    now: u128,
    /// Per cap: the order key of the candidate whose acceptance filled it (0: full from the
    /// start; `u128::MAX`: not full). A candidate coming up at key `k` finds cap `c` full
    /// exactly when `filled_at[c] < k`, as caps never empty.
    filled_at: Vec<u128>,
}

impl<'a> Ledger<'a> {
    fn new(
        lists: &'a Lists<'a>,
        caps: &'a CompiledCaps,
        live: &'a [bool],
        walk: &'a [u32],
    ) -> Self {
        let n = lists.priority.len();
        let mut free = vec![0u64; caps.len()];
        for slots in lists.slots {
            for &c in slots.iter().filter(|&&c| c != NO_CAP && live[c as usize]) {
                free[c as usize] += 1;
            }
        }
        // Sized up front: growing them by doubling would copy and fault in every page again.
        let mut members: Vec<Vec<u32>> = free
            .iter()
            .map(|&count| Vec::with_capacity(count as usize))
            .collect();
        free.iter_mut().for_each(|f| *f = 0);
        for (x, slots) in lists.slots.iter().enumerate() {
            for &c in slots.iter().filter(|&&c| c != NO_CAP && live[c as usize]) {
                free[c as usize] += 1;
                members[c as usize].push(x as u32);
            }
        }
        let open: Vec<bool> = live.to_vec();
        let open_count = open.iter().filter(|&&o| o).count();
        let mut ledger = Self {
            lists,
            caps,
            live,
            walk,
            decided: vec![false; n],
            blocked: vec![false; n],
            free,
            used: vec![0; caps.len()],
            open,
            open_count,
            members,
            now: 0,
            filled_at: vec![u128::MAX; caps.len()],
        };
        for (c, &max) in caps.max.iter().enumerate() {
            if live[c] && max == 0 {
                ledger.filled(c);
            }
        }
        ledger
    }

    fn is_live(&self, x: usize) -> bool {
        self.lists.slots[x]
            .iter()
            .any(|&c| c != NO_CAP && self.live[c as usize])
    }

    fn close(&mut self, c: usize) {
        if self.open[c] {
            self.open[c] = false;
            self.open_count -= 1;
        }
    }

    fn check_dead(&mut self, c: usize) {
        if self.open[c] && self.used[c] + self.free[c] <= self.caps.max[c] {
            self.close(c);
        }
    }

    /// Candidate at walk position `pos` is settled (accepted, rejected or skipped).
    fn settle(&mut self, pos: usize) {
        let x = self.walk[pos] as usize;
        if std::mem::replace(&mut self.decided[x], true) {
            return;
        }
        if self.blocked[x] {
            return;
        }
        for k in 0..5 {
            let c = self.lists.slots[x][k];
            if c != NO_CAP && self.live[c as usize] {
                self.free[c as usize] -= 1;
                self.check_dead(c as usize);
            }
        }
    }

    /// Cap `f` is full: its undecided candidates are blocked, which frees the other caps.
    fn filled(&mut self, f: usize) {
        self.close(f);
        self.filled_at[f] = self.now;
        let members = std::mem::take(&mut self.members[f]);
        for &x in &members {
            let x = x as usize;
            if std::mem::replace(&mut self.blocked[x], true) || self.decided[x] {
                // Already out of every `free` count.
                continue;
            }
            for k in 0..5 {
                let c = self.lists.slots[x][k];
                if c != NO_CAP && self.live[c as usize] {
                    self.free[c as usize] -= 1;
                    self.check_dead(c as usize);
                }
            }
        }
    }

    /// The first full cap (in the caps' order) holding candidate `x`, or `NO_CAP`.
    fn first_full(&self, x: usize) -> u32 {
        self.lists.slots[x]
            .iter()
            .filter(|&&c| {
                c != NO_CAP
                    && self.live[c as usize]
                    && self.used[c as usize] >= self.caps.max[c as usize]
            })
            .min()
            .copied()
            .unwrap_or(NO_CAP)
    }

    /// Accepts candidate `x` (at walk position `pos`): one unit of each of its caps.
    fn accept(&mut self, pos: usize) {
        let x = self.walk[pos] as usize;
        let slots = self.lists.slots[x];
        // Count the use before leaving the free counts, so no cap looks dead too early.
        for &c in slots
            .iter()
            .filter(|&&c| c != NO_CAP && self.live[c as usize])
        {
            self.used[c as usize] += 1;
        }
        self.settle(pos);
        for &c in slots
            .iter()
            .filter(|&&c| c != NO_CAP && self.live[c as usize])
        {
            if self.used[c as usize] == self.caps.max[c as usize] {
                self.filled(c as usize);
            }
        }
    }

    /// Customer `i` is full: the rest of their walk, from `pos`, is settled unseen.
    fn skip_rest(&mut self, i: usize, pos: usize) {
        for rest in pos..self.lists.starts[i + 1] {
            self.settle(rest);
        }
    }
}

/// The global greedy, walking each customer's candidates in the order `walk` (indices into
/// the candidates, grouped per customer as `lists.starts` says) by `score`.
fn greedy_by(
    lists: &Lists<'_>,
    caps: &CompiledCaps,
    m: usize,
    live: &[bool],
    walk: &[u32],
    score: &[f64],
) -> Allocated {
    let n = lists.priority.len();
    let customers = lists.customers();
    let mut accepted = vec![false; n];
    let mut rejected_by = vec![NO_CAP; n];
    let mut taken = vec![0usize; customers];
    let mut ledger = Ledger::new(lists, caps, live, walk);

    // Candidates turned down before their turn (see `advance`), as (customer, walk position).
    let mut early: Vec<(u32, u32)> = Vec::new();
    // Walks customer `i` from position `pos`, accepting candidates in no cap that can fill and
    // turning down those in a cap already full (it stays full, and the customer's taken count
    // cannot change before their turn: only their own later candidates could change it);
    // returns the position of the next candidate that needs the global order, if any.
    let advance = |i: usize,
                   mut pos: usize,
                   ledger: &mut Ledger<'_>,
                   accepted: &mut [bool],
                   taken: &mut [usize],
                   early: &mut Vec<(u32, u32)>| {
        while taken[i] < m && pos < lists.starts[i + 1] {
            let x = walk[pos] as usize;
            if ledger.blocked[x] {
                // Which cap turned it down is settled once every fill time is known.
                early.push((i as u32, pos as u32));
                ledger.settle(pos);
                pos += 1;
                continue;
            }
            if ledger.is_live(x) {
                return Some(pos);
            }
            accepted[x] = true;
            taken[i] += 1;
            ledger.settle(pos);
            pos += 1;
        }
        ledger.skip_rest(i, pos);
        None
    };
    let key = |i: usize, pos: usize| {
        let x = walk[pos] as usize;
        order_key(score[x], lists.ordinal[i], lists.tie[x])
    };

    let mut heads: Vec<(u128, u32, u32)> = Vec::new();
    for i in 0..customers {
        let start = lists.starts[i];
        if let Some(pos) = advance(i, start, &mut ledger, &mut accepted, &mut taken, &mut early) {
            heads.push((key(i, pos), i as u32, pos as u32));
        }
    }
    heads.par_sort_unstable_by_key(|h| h.0);

    let mut follow_ups: BinaryHeap<Reverse<(u128, u32, u32)>> = BinaryHeap::new();
    let mut next_head = 0;
    while ledger.open_count > 0 {
        let from_heads = heads.get(next_head).copied();
        let from_heap = follow_ups.peek().map(|r| r.0);
        let (_, i, pos) = match (from_heads, from_heap) {
            (Some(h), Some(f)) if f.0 < h.0 => follow_ups.pop().map(|r| r.0).unwrap_or(f),
            (Some(h), _) => {
                next_head += 1;
                h
            }
            (None, Some(f)) => follow_ups.pop().map(|r| r.0).unwrap_or(f),
            (None, None) => break,
        };
        let (i, pos) = (i as usize, pos as usize);
        let x = walk[pos] as usize;
        let full = ledger.first_full(x);
        if full == NO_CAP {
            accepted[x] = true;
            taken[i] += 1;
            ledger.now = key(i, pos);
            ledger.accept(pos);
        } else {
            rejected_by[x] = full;
            ledger.settle(pos);
        }
        let next = advance(
            i,
            pos + 1,
            &mut ledger,
            &mut accepted,
            &mut taken,
            &mut early,
        );
        if let Some(next) = next {
            follow_ups.push(Reverse((key(i, next), i as u32, next as u32)));
        }
    }
    // Every cap that can fill is full or can no longer fill: the order no longer matters
    // (a full cap stays full, a dead one has room for every candidate left in it), so the
    // customers left finish their walks independently, in parallel.
    let full: Vec<bool> = (0..caps.len())
        .map(|c| live[c] && ledger.used[c] >= caps.max[c])
        .collect();
    let first_full = |x: usize| -> u32 {
        lists.slots[x]
            .iter()
            .filter(|&&c| c != NO_CAP && full[c as usize])
            .min()
            .copied()
            .unwrap_or(NO_CAP)
    };
    let mut pending: Vec<(u32, u32)> = heads[next_head..]
        .iter()
        .map(|&(_, i, pos)| (i, pos))
        .chain(follow_ups.into_iter().map(|r| (r.0 .1, r.0 .2)))
        .collect();
    pending.par_sort_unstable();
    let decided: Vec<(u32, u32, u32)> = pending
        .par_iter()
        .flat_map_iter(|&(i, pos)| {
            let customer = i;
            let i = i as usize;
            let mut room = m - taken[i];
            let mut out = Vec::new();
            let mut pos = pos as usize;
            while room > 0 && pos < lists.starts[i + 1] {
                let x = walk[pos] as usize;
                let by = first_full(x);
                out.push((customer, pos as u32, by));
                if by == NO_CAP {
                    room -= 1;
                }
                pos += 1;
            }
            out
        })
        .collect();
    for (i, pos, by) in decided {
        let x = walk[pos as usize] as usize;
        if by == NO_CAP {
            accepted[x] = true;
        } else {
            // Named below, once every fill time is known.
            early.push((i, pos));
        }
    }
    let mut used = vec![0u64; caps.len()];
    let mut objective = 0.0;
    for x in (0..n).filter(|&x| accepted[x]) {
        objective += lists.priority[x];
        for &c in lists.slots[x].iter().filter(|&&c| c != NO_CAP) {
            used[c as usize] += 1;
        }
    }
    // A cap that could no longer fill may still have filled exactly after the ordered phase:
    // it filled at its last accepted candidate in the global order.
    let mut filled_at = ledger.filled_at.clone();
    let late: Vec<usize> = (0..caps.len())
        .filter(|&c| live[c] && filled_at[c] == u128::MAX && used[c] >= caps.max[c])
        .collect();
    if !late.is_empty() {
        let last = (0..customers)
            .into_par_iter()
            .fold(
                || vec![0u128; caps.len()],
                |mut last, i| {
                    let (first, end) = (lists.starts[i], lists.starts[i + 1]);
                    for (pos, &x) in walk[first..end].iter().enumerate() {
                        let (pos, x) = (first + pos, x as usize);
                        if accepted[x] {
                            for &c in lists.slots[x].iter().filter(|&&c| c != NO_CAP) {
                                let k = key(i, pos);
                                last[c as usize] = last[c as usize].max(k);
                            }
                        }
                    }
                    last
                },
            )
            .reduce(
                || vec![0u128; caps.len()],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x = (*x).max(*y));
                    a
                },
            );
        for c in late {
            filled_at[c] = last[c];
        }
    }
    // Candidates turned down early or after the ordered phase: the first cap, in the caps'
    // order, already full when their turn (their order key) came, as if they had waited for it
    // (in the ordered phase `first_full` saw exactly that).
    let named: Vec<(u32, u32)> = early
        .par_iter()
        .map(|&(i, pos)| {
            let x = walk[pos as usize] as usize;
            let turn = key(i as usize, pos as usize);
            let by = lists.slots[x]
                .iter()
                .filter(|&&c| c != NO_CAP && live[c as usize] && filled_at[c as usize] < turn)
                .min()
                .copied()
                .unwrap_or(NO_CAP);
            (x as u32, by)
        })
        .collect();
    for (x, by) in named {
        rejected_by[x as usize] = by;
    }
    Allocated {
        accepted,
        rejected_by,
        used,
        objective,
        dual_bound: None,
        passes: 0,
        greedy_objective: objective,
    }
}

/// Settles ranked candidates under the caps: the accepted flags, with the funnel's cap stages
/// counted into `funnel` (`actions[x]`, `ranks[x]`: candidate x's action and 1-based rank).
pub(crate) fn settle(
    lists: &Lists<'_>,
    actions: &[u32],
    ranks: &[i32],
    caps: &CompiledCaps,
    m: usize,
    allocation: Allocation,
    funnel: &mut FunnelCounts,
) -> Allocated {
    let allocated = match allocation {
        Allocation::Greedy => greedy(lists, caps, m),
        Allocation::Optimal => optimal(lists, caps, m, PriceSearch::default()),
    };
    let action_count = funnel.candidates.len();
    funnel.capped = vec![vec![0; action_count]; caps.len()];
    for x in 0..actions.len() {
        let a = actions[x] as usize;
        let top = ranks[x] as usize <= m;
        if allocated.accepted[x] {
            funnel.selected[a] += 1;
            if !top {
                funnel.fallback[a] += 1;
            }
        } else if top {
            funnel.capped_out[a] += 1;
        }
        let by = allocated.rejected_by[x];
        if by != NO_CAP {
            funnel.capped[by as usize][a] += 1;
        }
    }
    allocated
}

/// The cap usage table: (scope, max, used) per cap, in the caps' order.
pub(crate) fn usage_batch(caps: &CompiledCaps, used: &[u64]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("scope", DataType::Utf8, false),
        Field::new("max", DataType::Int64, false),
        Field::new("used", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(caps.names.clone())),
        Arc::new(Int64Array::from_iter_values(
            caps.max.iter().map(|&m| m as i64),
        )),
        Arc::new(Int64Array::from_iter_values(used.iter().map(|&u| u as i64))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The global greedy of DESIGN.md §3.
pub(crate) fn greedy(lists: &Lists<'_>, caps: &CompiledCaps, m: usize) -> Allocated {
    let live = live_caps(lists, caps, m);
    let walk: Vec<u32> = (0..lists.priority.len() as u32).collect();
    greedy_by(lists, caps, m, &live, &walk, lists.priority)
}

/// Options of the price search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PriceSearch {
    /// Stop when (bound − total) / bound is at most this.
    pub tolerance: f64,
    /// The most passes over the candidates.
    pub max_passes: u32,
}

impl Default for PriceSearch {
    fn default() -> Self {
        Self {
            tolerance: 1e-4,
            max_passes: 40,
        }
    }
}

/// The price-adjusted value of candidate `x`, leaving out cap `skip`'s price.
#[inline]
fn adjusted(lists: &Lists<'_>, prices: &[f64], x: usize, skip: u32) -> f64 {
    let mut value = lists.priority[x];
    for &c in lists.slots[x].iter().filter(|&&c| c != NO_CAP && c != skip) {
        value -= prices[c as usize];
    }
    value
}

/// Sum of the best `m` positive values (sorted descending in place).
fn best_sum(values: &mut [f64], m: usize) -> f64 {
    values.sort_unstable_by(|a, b| b.total_cmp(a));
    values.iter().take(m).filter(|&&v| v > 0.0).sum()
}

/// One pass: the dual value at `prices` and, for every cap of kind `slot` (a [`CapSlots`]
/// position; `None`: only the dual), the gains `d` above which a customer takes one more of
/// its candidates in that cap, the other prices held (see the module docs). Caps of one kind
/// are disjoint, so one pass serves them all.
fn dual_pass(
    lists: &Lists<'_>,
    prices: &[f64],
    m: usize,
    slot: Option<usize>,
) -> (f64, Vec<Vec<f64>>) {
    let customers = lists.customers();
    let caps = prices.len();
    // Fixed chunks of customers, combined in order: the sums, hence the prices and the
    // result, do not depend on the number of threads.
    const CHUNK: usize = 4096;
    let parts: Vec<(f64, Vec<Vec<f64>>)> = (0..customers.div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut sum = 0.0f64;
            let mut gains: Vec<Vec<f64>> = vec![Vec::new(); caps];
            let (mut all, mut inside, mut outside) = (Vec::new(), Vec::new(), Vec::new());
            for i in chunk * CHUNK..customers.min((chunk + 1) * CHUNK) {
                let range = lists.starts[i]..lists.starts[i + 1];
                all.clear();
                all.extend(range.clone().map(|x| adjusted(lists, prices, x, NO_CAP)));
                sum += best_sum(&mut all, m);
                let Some(slot) = slot else {
                    continue;
                };
                // Each distinct cap of this kind among the customer's candidates, once.
                for y in range.clone() {
                    let cap = lists.slots[y][slot];
                    let seen_before = (range.start..y).any(|z| lists.slots[z][slot] == cap);
                    if cap == NO_CAP || seen_before {
                        continue;
                    }
                    inside.clear();
                    outside.clear();
                    for x in range.clone() {
                        if lists.slots[x][slot] == cap {
                            inside.push(adjusted(lists, prices, x, cap));
                        } else {
                            outside.push(adjusted(lists, prices, x, NO_CAP));
                        }
                    }
                    inside.sort_unstable_by(|a, b| b.total_cmp(a));
                    outside.sort_unstable_by(|a, b| b.total_cmp(a));
                    for k in 1..=m.min(inside.len()) {
                        // The k-th candidate inside the cap is taken while its value beats the
                        // (m − k + 1)-th outside (or nothing).
                        let rival = outside.get(m - k).copied().unwrap_or(0.0).max(0.0);
                        let gain = inside[k - 1] - rival;
                        if gain > 0.0 {
                            gains[cap as usize].push(gain);
                        }
                    }
                }
            }
            (sum, gains)
        })
        .collect();
    let mut sum = 0.0;
    let mut gains: Vec<Vec<f64>> = vec![Vec::new(); caps];
    for (part_sum, part_gains) in parts {
        sum += part_sum;
        for (into, from) in gains.iter_mut().zip(part_gains) {
            into.extend(from);
        }
    }
    (sum, gains)
}

/// The price of a cap that minimises the dual given the other prices: any λ between the
/// (max+1)-th and the max-th largest gain leaves exactly `max` gains above it. The middle of
/// that interval is taken, so the customers the price admits prefer the cap strictly and the
/// repaired primal does not hinge on ties.
fn best_price(mut gains: Vec<f64>, max: u64) -> f64 {
    let max = max as usize;
    if gains.len() <= max {
        return 0.0;
    }
    let (above, nth, _) = gains.select_nth_unstable_by(max, |a, b| b.total_cmp(a));
    let lower = nth.max(0.0);
    match above.iter().copied().min_by(|a, b| a.total_cmp(b)) {
        Some(upper) => 0.5 * (lower + upper),
        None => lower,
    }
}

/// The allocation maximising total priority (see the module docs).
pub(crate) fn optimal(
    lists: &Lists<'_>,
    caps: &CompiledCaps,
    m: usize,
    search: PriceSearch,
) -> Allocated {
    let live = live_caps(lists, caps, m);
    let walk: Vec<u32> = (0..lists.priority.len() as u32).collect();
    let mut best = greedy_by(lists, caps, m, &live, &walk, lists.priority);
    let greedy_objective = best.objective;
    let live_list: Vec<u32> = (0..caps.len() as u32)
        .filter(|&c| live[c as usize])
        .collect();
    if live_list.is_empty() {
        // No cap binds: everyone's top M is feasible, hence optimal.
        best.dual_bound = Some(best.objective);
        return best;
    }
    let mut prices = vec![0.0f64; caps.len()];
    let price_term = |prices: &[f64]| -> f64 {
        live_list
            .iter()
            .map(|&c| prices[c as usize] * caps.max[c as usize] as f64)
            .sum()
    };
    let mut bound = f64::INFINITY;
    let mut passes = 0u32;
    // The kinds of scope with a cap that can fill: each is one block of prices.
    let mut kinds: Vec<usize> = live_list.iter().map(|&c| caps.kind[c as usize]).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut round_prices = prices.clone();
    'search: loop {
        for &kind in &kinds {
            let (sum, mut gains) = dual_pass(lists, &prices, m, Some(kind));
            passes += 1;
            bound = bound.min(sum + price_term(&prices));
            for &c in live_list.iter().filter(|&&c| caps.kind[c as usize] == kind) {
                let gains = std::mem::take(&mut gains[c as usize]);
                prices[c as usize] = best_price(gains, caps.max[c as usize]);
            }
            if passes >= search.max_passes {
                break 'search;
            }
        }
        let candidate = priced_greedy(lists, caps, m, &live, &prices);
        passes += 1;
        if candidate.objective > best.objective {
            best = Allocated {
                greedy_objective,
                ..candidate
            };
        }
        let gap = relative_gap(bound, best.objective);
        let stalled = round_prices == prices;
        round_prices.clone_from(&prices);
        if gap <= search.tolerance || passes >= search.max_passes || stalled {
            break;
        }
    }
    // The bound at the last prices, which no pass has evaluated yet.
    let (sum, _) = dual_pass(lists, &prices, m, None);
    passes += 1;
    bound = bound.min(sum + price_term(&prices));
    best.dual_bound = Some(bound.max(best.objective));
    best.passes = passes;
    best
}

/// (bound − total) / bound, 0 when both are 0.
pub(crate) fn relative_gap(bound: f64, total: f64) -> f64 {
    if bound <= 0.0 {
        0.0
    } else {
        ((bound - total) / bound).max(0.0)
    }
}

/// The greedy on price-adjusted priorities: each customer's candidates re-ranked by them.
fn priced_greedy(
    lists: &Lists<'_>,
    caps: &CompiledCaps,
    m: usize,
    live: &[bool],
    prices: &[f64],
) -> Allocated {
    let n = lists.priority.len();
    let score: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|x| adjusted(lists, prices, x, NO_CAP))
        .collect();
    let mut walk: Vec<u32> = (0..n as u32).collect();
    let customers = lists.customers();
    let mut rest: &mut [u32] = &mut walk;
    let mut slices: Vec<&mut [u32]> = Vec::with_capacity(customers);
    for i in 0..customers {
        let (head, tail) = rest.split_at_mut(lists.starts[i + 1] - lists.starts[i]);
        slices.push(head);
        rest = tail;
    }
    slices.into_par_iter().for_each(|s| {
        s.sort_unstable_by(|&a, &b| {
            score[b as usize]
                .partial_cmp(&score[a as usize])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| lists.tie[a as usize].cmp(&lists.tie[b as usize]))
        })
    });
    greedy_by(lists, caps, m, live, &walk, &score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{parse_caps, CompiledCaps};
    use crate::history::Codes;

    /// Customers with (action, priority) lists; actions "a0".."a9", one group, channels by
    /// parity.
    fn setup(
        lists: &[Vec<(u32, f64)>],
        caps: &[(&str, i64)],
    ) -> (Vec<usize>, Vec<f64>, Vec<u32>, Vec<CapSlots>, CompiledCaps) {
        let mut codes = Codes::default();
        for a in 0..10 {
            codes.intern(0, &format!("a{a}"));
        }
        codes.intern(1, "g");
        codes.intern(2, "i");
        codes.intern(3, "email");
        codes.intern(3, "sms");
        let caps: Vec<(String, i64)> = caps.iter().map(|(s, m)| (s.to_string(), *m)).collect();
        let compiled = CompiledCaps::new(&parse_caps(&caps).unwrap(), &codes);
        let mut starts = vec![0];
        let (mut priority, mut tie, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for list in lists {
            let mut sorted = list.clone();
            sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            for (a, p) in sorted {
                priority.push(p);
                tie.push(a);
                slots.push(compiled.slots(&[a, 0, 0, a % 2]));
            }
            starts.push(priority.len());
        }
        (starts, priority, tie, slots, compiled)
    }

    #[test]
    fn a_capped_out_customer_falls_back_to_the_next_best() {
        let data = vec![vec![(0, 5.0), (1, 4.0)], vec![(0, 6.0), (1, 1.0)]];
        let (starts, priority, tie, slots, caps) = setup(&data, &[("action:a0", 1)]);
        let ordinal = [0, 1];
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            tie: &tie,
            slots: &slots,
        };
        let result = greedy(&lists, &caps, 1);
        // Customer 1 (6.0) takes a0; customer 0 falls back to a1.
        assert_eq!(result.accepted, vec![false, true, true, false]);
        assert_eq!(result.rejected_by[0], 0);
        assert_eq!(result.used, vec![1]);
        // Optimal: 5 + 6 under a0 ≤ 1 → best is 6 + 4 = 10 (customer 0 a1) vs 5 + 1 = 6.
        let best = optimal(&lists, &caps, 1, PriceSearch::default());
        assert_eq!(best.objective, 10.0);
        assert!(best.dual_bound.unwrap() >= 10.0 - 1e-9);
    }

    #[test]
    fn a_candidate_turned_down_early_names_the_caps_full_at_its_turn() {
        // Caps: #0 email ≤ 1, #1 action a0 ≤ 0 (full from the start). Customer 1's a0 (email)
        // is turned down as soon as it is reached; which cap it names depends on whether the
        // email cap had filled by its turn, as in the plain definition (`nba_fast.reference`).
        for (other, expected) in [(10.0, 0), (5.0, 1)] {
            // Customer 0: a2 (email) at `other`. Customer 1: a0 (email) 9.0, a1 (sms) 1.0.
            let data = vec![vec![(2, other)], vec![(0, 9.0), (1, 1.0)]];
            let caps = [("channel:email", 1), ("action:a0", 0)];
            let (starts, priority, tie, slots, caps) = setup(&data, &caps);
            let ordinal = [0, 1];
            let lists = Lists {
                starts: &starts,
                ordinal: &ordinal,
                priority: &priority,
                tie: &tie,
                slots: &slots,
            };
            let result = greedy(&lists, &caps, 1);
            assert_eq!(result.accepted, vec![true, false, true], "other {other}");
            assert_eq!(result.rejected_by[1], expected, "other {other}");
            assert_eq!(result.rejected_by[0], NO_CAP);
            assert_eq!(result.used, vec![1, 0]);
        }
    }

    #[test]
    fn optimal_beats_greedy_where_greedy_is_myopic() {
        // Customer 0: a0 10, a1 9.  Customer 1: a0 9.5 only.  Cap a0 ≤ 1.
        // Greedy: c0 takes a0 (10), c1 gets nothing: 10. Optimal: c0 a1 (9) + c1 a0 (9.5).
        let data = vec![vec![(0, 10.0), (1, 9.0)], vec![(0, 9.5)]];
        let (starts, priority, tie, slots, caps) = setup(&data, &[("action:a0", 1)]);
        let ordinal = [0, 1];
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            tie: &tie,
            slots: &slots,
        };
        assert_eq!(greedy(&lists, &caps, 1).objective, 10.0);
        let best = optimal(&lists, &caps, 1, PriceSearch::default());
        assert_eq!(best.objective, 18.5);
        let gap = relative_gap(best.dual_bound.unwrap(), best.objective);
        assert!(gap < 1e-9, "gap {gap}");
    }

    #[test]
    fn order_keys_sort_by_score_then_customer_then_action() {
        assert!(order_key(2.0, 9, 9) < order_key(1.0, 0, 0));
        assert!(order_key(1.0, 0, 9) < order_key(1.0, 1, 0));
        assert!(order_key(1.0, 0, 0) < order_key(1.0, 0, 1));
        assert_eq!(order_key(0.0, 0, 0), order_key(-0.0, 0, 0));
        assert!(order_key(0.0, 0, 0) < order_key(-1.0, 0, 0));
    }
}
