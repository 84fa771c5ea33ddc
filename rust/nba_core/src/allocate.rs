//! Allocation under volume caps: which ranked candidates become decisions.
//!
//! **Greedy** (DESIGN.md §3): candidates in order of (priority desc, customer asc, action asc),
//! each accepted while its customer has room and every cap containing it has room. It is
//! computed without sorting every candidate:
//! - a cap that could never fill (the most it could take, `min(M, the customer's candidates in
//!   it)` summed over customers, is within its max) never rejects anything, so it is ignored;
//! - a candidate in no cap that can fill is accepted as soon as its customer reaches it with
//!   room, whatever the global order, and one in a cap already full is turned down (caps never
//!   empty): each customer walks their ranked list and stops only at a candidate in a cap that
//!   can fill and is not full (their *head*);
//! - only heads are put in global order (one parallel sort of at most one cursor per
//!   customer); the later stops of customers who moved on (their keys only grow) are filed,
//!   unsorted, into bins by the stretch of heads their key falls in, and a block of turns takes
//!   the bins it covers ([`Agenda`]); once every such cap is full the rest needs no order at
//!   all: capped candidates are rejected, the others accepted by room, each customer in
//!   parallel;
//! - even in order, only a cap's filling changes what a turn sees, so turns are taken in
//!   blocks of consecutive turns: where no cap can fill within a block (each open cap has
//!   more room than the block's customers could take), its customers are decided in
//!   parallel, each walking on through their own stops inside the block. Near a cap's
//!   filling a block is cut before the first head that would fill a cap, and a block still
//!   large enough to split is taken in parallel on trust, kept only if no cap filled inside
//!   it; otherwise it is taken one by one. On `bank-2m`, 41 k of the 1.99 M turns are taken
//!   one by one (216 k before the cut and the trust).
//!
//! The ordered phase is bound by memory latency, so a cursor carries what its turn needs (its
//! order key, its candidate's kind, the customer's walk position, end and taken count): taking
//! the next one reads no per-candidate array; and as the heads' turns come in their sorted
//! order, what a head will read (its next candidate) is prefetched a few turns ahead (on
//! `bank-2m`, 1.99 M turns took about 400 ms without and 290 ms with it).
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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;

use crate::caps::{Allocation, CapSlots, CompiledCaps, NO_CAP};
use crate::error::Result;
use crate::funnel::FunnelCounts;
use crate::memory::prefetch;

/// How many turns ahead the ordered phase prefetches.
const PREFETCH_AHEAD: usize = 32;
/// The most consecutive turns the ordered phase takes as one block.
const MAX_BLOCK: usize = 8192;
/// Turns per parallel task within a block.
const BLOCK_CHUNK: usize = 512;

/// Every customer's surviving candidates, each customer's in rank order.
pub(crate) struct Lists<'a> {
    /// Customer `i`'s candidates are `starts[i]..starts[i + 1]`.
    pub starts: &'a [usize],
    /// Customer `i`'s position in customer id order (the greedy's second key).
    pub ordinal: &'a [u32],
    /// Per candidate: priority.
    pub priority: &'a [f64],
    /// Per candidate: its kind, the index into `tie` and `slots` (in the engine, its action:
    /// candidates of one action share them, so they are stored once per action).
    pub kind: &'a [u32],
    /// Per kind: the action id's position in byte order (the third key).
    pub tie: &'a [u32],
    /// Per kind: the caps it lies in.
    pub slots: &'a [CapSlots],
}

impl Lists<'_> {
    fn customers(&self) -> usize {
        self.starts.len() - 1
    }

    /// The caps candidate `x` lies in.
    #[inline]
    fn slots_of(&self, x: usize) -> &CapSlots {
        &self.slots[self.kind[x] as usize]
    }

    /// Candidate `x`'s action position in byte order.
    #[inline]
    fn tie_of(&self, x: usize) -> u32 {
        self.tie[self.kind[x] as usize]
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

/// The customer ordinal an order key holds.
#[inline]
fn ordinal_of(key: u128) -> u32 {
    (key >> 32) as u32
}

/// Adds `from` to `into`, element by element (per-cap or per-action counts of one part).
fn add_counts(into: &mut [u64], from: &[u64]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// Caps that can fill: the most they could take exceeds their max.
///
/// Per customer the most is `min(M, their candidates in the cap)`. Two shapes of customer are
/// counted without pairing caps one by one: one with at most `M` candidates adds one to
/// each cap of each candidate (counted per kind, spread over the caps at the end); and with
/// `M` = 1 and at most 64 caps, one adds one to each cap in the union of their candidates'
/// cap masks.
fn live_caps(lists: &Lists<'_>, caps: &CompiledCaps, m: usize) -> Vec<bool> {
    let customers = lists.customers();
    let kinds = lists.slots.len();
    let cap_mask = |slots: &CapSlots| {
        slots
            .iter()
            .filter(|&&c| c != NO_CAP)
            .fold(0u64, |mask, &c| mask | 1 << c)
    };
    let masks: Option<Vec<u64>> =
        (m == 1 && caps.len() <= 64).then(|| lists.slots.iter().map(cap_mask).collect());
    // Per chunk of customers: the potential so far and, per kind, the candidates of customers
    // with at most `M` (in plain loops over the chunk: a fold per customer moved both vectors
    // at every step).
    const CHUNK: usize = 1 << 14;
    let (mut potential, per_kind) = (0..customers.div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut potential = vec![0u64; caps.len()];
            let mut per_kind = vec![0u64; kinds];
            // One customer's (cap, count) pairs.
            let mut counts: Vec<(u32, u64)> = Vec::new();
            for i in chunk * CHUNK..customers.min((chunk + 1) * CHUNK) {
                let range = lists.starts[i]..lists.starts[i + 1];
                if range.len() <= m {
                    for x in range {
                        per_kind[lists.kind[x] as usize] += 1;
                    }
                } else if let Some(masks) = &masks {
                    let mut mask = range.fold(0u64, |mask, x| mask | masks[lists.kind[x] as usize]);
                    while mask != 0 {
                        potential[mask.trailing_zeros() as usize] += 1;
                        mask &= mask - 1;
                    }
                } else {
                    counts.clear();
                    for x in range {
                        for &c in lists.slots_of(x).iter().filter(|&&c| c != NO_CAP) {
                            match counts.iter_mut().find(|(cap, _)| *cap == c) {
                                Some((_, n)) => *n += 1,
                                None => counts.push((c, 1)),
                            }
                        }
                    }
                    for &(c, n) in &counts {
                        potential[c as usize] += n.min(m as u64);
                    }
                }
            }
            (potential, per_kind)
        })
        .reduce(
            || (vec![0u64; caps.len()], vec![0u64; kinds]),
            |(mut a, mut ka), (b, kb)| {
                add_counts(&mut a, &b);
                add_counts(&mut ka, &kb);
                (a, ka)
            },
        );
    for (slots, &n) in lists.slots.iter().zip(&per_kind) {
        for &c in slots.iter().filter(|&&c| c != NO_CAP) {
            potential[c as usize] += n;
        }
    }
    potential
        .iter()
        .zip(&caps.max)
        .map(|(&p, &max)| p > max)
        .collect()
}

/// A customer stopped in their walk at a candidate that needs the global order. Everything
/// the ordered phase needs of the customer travels with it, so taking the next one from the
/// queue touches no per-customer array. Cursors order by `key`, which is unique (it holds
/// the customer and the action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    /// The order key of the candidate at `pos`.
    key: u128,
    /// Walk position of the candidate waiting.
    pos: u32,
    /// That candidate's kind (loading it when its turn comes would be a cache miss).
    kind: u32,
    /// End of the customer's walk.
    end: u32,
    /// Candidates the customer has taken so far.
    taken: u32,
}

impl Cursor {
    /// A placeholder for a slot to be written.
    const NONE: Self = Self {
        key: 0,
        pos: 0,
        kind: 0,
        end: 0,
        taken: 0,
    };
}

/// Heads of this many consecutive turns share a bin of [`Agenda`].
const BIN: usize = 1024;

/// The turns still to come, in key order: the heads (sorted), and the later stops of customers
/// who moved on, filed unsorted into bins by the stretch of `BIN` heads their key falls in
/// (every key pushed is above every turn already taken, as the greedy's follow-ups are). A
/// block of turns takes its heads and the stops of the bins it covers, sorting them only if it
/// is taken one by one. Stops after the last head wait in `overflow` and become the next
/// round's heads, sorted, once the heads run out. Filing a stop is a search in a small array
/// of fences and a push, where a priority queue would move it several times.
struct Agenda {
    heads: Vec<Cursor>,
    /// The next head to take its turn.
    next: usize,
    /// Per bin: the last key of its heads.
    fences: Vec<u128>,
    /// Per bin: stops whose key falls after the previous bin's fence and up to its own.
    bins: Vec<Vec<Cursor>>,
    /// The first bin that may hold stops.
    first_bin: usize,
    /// Stops after the last head.
    overflow: Vec<Cursor>,
}

impl Agenda {
    fn new(heads: Vec<Cursor>) -> Self {
        let mut agenda = Self {
            heads: Vec::new(),
            next: 0,
            fences: Vec::new(),
            bins: Vec::new(),
            first_bin: 0,
            overflow: Vec::new(),
        };
        agenda.start_round(heads);
        agenda
    }

    /// Makes `heads` (sorted) the turns to take, with no stops filed.
    fn start_round(&mut self, heads: Vec<Cursor>) {
        self.fences = heads
            .chunks(BIN)
            .map(|bin| bin[bin.len() - 1].key)
            .collect();
        self.bins = vec![Vec::new(); self.fences.len()];
        self.first_bin = 0;
        self.next = 0;
        self.heads = heads;
    }

    /// The bin of a stop at `key`: the first whose fence is not below it (`fences.len()`:
    /// after the last head). A branch-free binary search: the branches of a plain one are
    /// unpredictable and cost most of the time.
    #[inline]
    fn bin_of(fences: &[u128], key: u128) -> usize {
        let mut base = 0usize;
        let mut len = fences.len();
        while len > 1 {
            let half = len / 2;
            base = if fences[base + half - 1] < key {
                base + half
            } else {
                base
            };
            len -= half;
        }
        base + usize::from(len == 1 && fences[base] < key)
    }

    /// Files a stop to come.
    fn file(&mut self, cursor: Cursor) {
        self.file_in(Self::bin_of(&self.fences, cursor.key), cursor);
    }

    /// Files a stop to come into its bin (see [`Agenda::bin_of`]).
    #[inline]
    fn file_in(&mut self, bin: usize, cursor: Cursor) {
        debug_assert!(bin >= self.first_bin, "a stop filed behind the turns taken");
        debug_assert_eq!(
            bin,
            self.fences.partition_point(|&fence| fence < cursor.key)
        );
        match self.bins.get_mut(bin) {
            Some(stops) => stops.push(cursor),
            None => self.overflow.push(cursor),
        }
    }

    /// The next block: up to `size` heads (their positions in `heads`) and the last key it
    /// covers; the stops due up to that key are moved into `stops` (unsorted). Once the heads
    /// run out, the stops left become the next round's heads. `None`: no turns left.
    fn next_block(
        &mut self,
        size: usize,
        stops: &mut Vec<Cursor>,
    ) -> Option<(std::ops::Range<usize>, u128)> {
        if self.next == self.heads.len() {
            if self.overflow.is_empty() {
                return None;
            }
            let mut heads = std::mem::take(&mut self.overflow);
            heads.par_sort_unstable_by_key(|c| c.key);
            self.start_round(heads);
        }
        let end = (self.next + size).min(self.heads.len());
        let until = self.heads[end - 1].key;
        let last = (end - 1) / BIN;
        for bin in &mut self.bins[self.first_bin..last] {
            stops.append(bin);
        }
        self.bins[last].retain(|&cursor| {
            let due = cursor.key <= until;
            if due {
                stops.push(cursor);
            }
            !due
        });
        self.first_bin = last;
        let heads = self.next..end;
        self.next = end;
        Some((heads, until))
    }

    /// Every turn left, in no particular order: the heads not taken, then the stops.
    fn into_rest(self) -> (Vec<Cursor>, usize, Vec<Cursor>) {
        let mut stops: Vec<Cursor> = self.bins.into_iter().flatten().collect();
        stops.extend(self.overflow);
        (self.heads, self.next, stops)
    }
}

/// What the greedy knows of the caps while it walks: which can fill (`live`) and how many
/// decisions each of those holds.
struct Walker<'a> {
    lists: &'a Lists<'a>,
    max: &'a [u64],
    live: &'a [bool],
    /// Candidate at each walk position; `None`: the candidates' own order.
    walk: Option<&'a [u32]>,
    score: &'a [f64],
    m: u32,
    /// Per cap: decisions it holds (counted for live caps only).
    used: Vec<u64>,
}

/// What walking customers decided without the global order: candidates accepted, and
/// candidates turned down: named at once where the first full cap of theirs comes before any
/// of their caps still open, else (as (customer ordinal, walk position)) once every cap's
/// fill time is known.
#[derive(Default)]
struct Walked {
    accepted: Vec<u32>,
    early: Vec<(u32, u32)>,
    /// Candidates turned down whose cap is already certain: (candidate, cap).
    named: Vec<(u32, u32)>,
}

impl<'a> Walker<'a> {
    #[inline]
    fn candidate(&self, pos: usize) -> usize {
        match self.walk {
            Some(walk) => walk[pos] as usize,
            None => pos,
        }
    }

    /// Room left in cap `c` (`None`: it can never fill, or is full already).
    #[inline]
    fn room_left(&self, c: usize) -> Option<u64> {
        let (used, max) = (self.used[c], self.max[c]);
        (self.live[c] && used < max).then(|| max - used)
    }

    #[inline]
    fn is_full(&self, c: u32) -> bool {
        c != NO_CAP && self.live[c as usize] && self.used[c as usize] >= self.max[c as usize]
    }

    /// The first full cap (in the caps' order) among `slots`, or `NO_CAP`.
    #[inline]
    fn first_full(&self, slots: &CapSlots) -> u32 {
        slots
            .iter()
            .copied()
            .filter(|&c| self.is_full(c))
            .min()
            .unwrap_or(NO_CAP)
    }

    /// Starts loading what the turn of `cursor` will read: its candidate's rejection slot
    /// and its next candidate's kind and score (through a `walk`, only the walk itself: the
    /// candidates are known once it is read).
    #[inline]
    fn prefetch_turn(&self, cursor: &Cursor, rejected_by: &[AtomicU32]) {
        let pos = cursor.pos as usize;
        match self.walk {
            Some(walk) => prefetch(walk, pos),
            None => {
                prefetch(rejected_by, pos);
                prefetch(self.lists.kind, pos + 1);
                prefetch(self.score, pos + 1);
            }
        }
    }

    /// Takes the turns of `cursors`, consecutive turns (up to key `until`) within which no
    /// cap can fill: each customer's turn sees the caps as they are, and the customer walks
    /// on, taking their own later stops up to `until` the same way. Writes the turned-down
    /// candidates' caps into `rejected_by`; returns what else was decided, the decisions added
    /// per cap, and the stops after `until` with their bins among `fences` (see
    /// [`Agenda::bin_of`]).
    fn take_turns(
        &self,
        cursors: &[Cursor],
        until: u128,
        rejected_by: &[AtomicU32],
        fences: &[u128],
    ) -> TurnsTaken {
        let mut out = Walked::default();
        let mut used = vec![0u64; self.used.len()];
        let mut later = Vec::new();
        // The first turns too: a chunk is a stretch of the turns, so the ones before it have
        // not asked for them.
        for ahead in cursors.iter().take(PREFETCH_AHEAD) {
            self.prefetch_turn(ahead, rejected_by);
        }
        for (i, &first) in cursors.iter().enumerate() {
            if let Some(ahead) = cursors.get(i + PREFETCH_AHEAD) {
                self.prefetch_turn(ahead, rejected_by);
            }
            let mut cursor = first;
            loop {
                if let Some(slots) = self.take_turn(&mut cursor, rejected_by, &mut out) {
                    for &c in slots.iter().filter(|&&c| c != NO_CAP) {
                        used[c as usize] += u64::from(self.live[c as usize]);
                    }
                }
                match self.walk_on(&cursor, &mut out) {
                    Some(next) if next.key <= until => cursor = next,
                    Some(next) => {
                        later.push(next);
                        break;
                    }
                    None => break,
                }
            }
        }
        let bins = later
            .iter()
            .map(|c| Agenda::bin_of(fences, c.key) as u32)
            .collect();
        TurnsTaken {
            walked: out,
            used,
            later,
            bins,
        }
    }

    /// Takes `cursor`'s turn with the caps as they are: accepts its candidate and returns the
    /// caps it counts in (the caller counts it), unless one of them is full: then that cap
    /// (the first in the caps' order) is written into `rejected_by`.
    #[inline]
    fn take_turn(
        &self,
        cursor: &mut Cursor,
        rejected_by: &[AtomicU32],
        out: &mut Walked,
    ) -> Option<&'a CapSlots> {
        let x = self.candidate(cursor.pos as usize);
        let all: &'a [CapSlots] = self.lists.slots;
        let slots = &all[cursor.kind as usize];
        let full = self.first_full(slots);
        if full == NO_CAP {
            out.accepted.push(x as u32);
            cursor.taken += 1;
            Some(slots)
        } else {
            rejected_by[x].store(full, Relaxed);
            None
        }
    }

    /// The customer's next stop after `cursor`'s turn (see [`Walker::advance`]).
    #[inline]
    fn walk_on(&self, cursor: &Cursor, out: &mut Walked) -> Option<Cursor> {
        self.advance(
            ordinal_of(cursor.key),
            cursor.pos as usize + 1,
            cursor.end as usize,
            cursor.taken,
            out,
        )
    }

    /// Walks a customer from `pos`: accepts candidates in no cap that can fill and turns down
    /// those in a cap already full (it stays full, and the customer's taken count cannot
    /// change before their turn: only their own later candidates could change it). Returns
    /// the cursor at the next candidate that needs the global order, if any.
    fn advance(
        &self,
        ordinal: u32,
        mut pos: usize,
        end: usize,
        mut taken: u32,
        out: &mut Walked,
    ) -> Option<Cursor> {
        while taken < self.m && pos < end {
            let x = self.candidate(pos);
            let slots = self.lists.slots_of(x);
            let full = self.first_full(slots);
            if full != NO_CAP {
                // Named now unless a cap before `full` in the caps' order may still fill
                // before this candidate's turn.
                let open_before = slots
                    .iter()
                    .any(|&c| c < full && self.live[c as usize] && !self.is_full(c));
                if open_before {
                    out.early.push((ordinal, pos as u32));
                } else {
                    out.named.push((x as u32, full));
                }
            } else if slots.iter().any(|&c| c != NO_CAP && self.live[c as usize]) {
                return Some(Cursor {
                    key: order_key(self.score[x], ordinal, self.lists.tie_of(x)),
                    pos: pos as u32,
                    kind: self.lists.kind[x],
                    end: end as u32,
                    taken,
                });
            } else {
                out.accepted.push(x as u32);
                taken += 1;
            }
            pos += 1;
        }
        None
    }
}

/// What one task of a parallel block decided (see [`Walker::take_turns`]).
struct TurnsTaken {
    walked: Walked,
    /// Per cap: decisions added.
    used: Vec<u64>,
    /// The stops after the block.
    later: Vec<Cursor>,
    /// Per stop in `later`: its bin in the agenda.
    bins: Vec<u32>,
}

/// How many of `heads` come before the first that would fill a cap (`left`: per cap, the room
/// left, `u64::MAX` for none to watch; spent as it goes) if every head before it is accepted.
fn cut_before(heads: &[Cursor], slots: &[CapSlots], left: &mut [u64]) -> usize {
    for (i, head) in heads.iter().enumerate() {
        for &c in slots[head.kind as usize].iter().filter(|&&c| c != NO_CAP) {
            let left = &mut left[c as usize];
            if *left != u64::MAX {
                *left -= 1;
                if *left == 0 {
                    return i;
                }
            }
        }
    }
    heads.len()
}

/// `a` and `b`, each sorted by key, merged into `into` (cleared first).
fn merge_sorted(a: &[Cursor], b: &[Cursor], into: &mut Vec<Cursor>) {
    into.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].key < b[j].key {
            into.push(a[i]);
            i += 1;
        } else {
            into.push(b[j]);
            j += 1;
        }
    }
    into.extend_from_slice(&a[i..]);
    into.extend_from_slice(&b[j..]);
}

/// The global greedy, walking each customer's candidates in the order `walk` (indices into
/// the candidates, grouped per customer as `lists.starts` says; `None`: the candidates' own
/// order) by `score`.
fn greedy_by(
    lists: &Lists<'_>,
    caps: &CompiledCaps,
    m: usize,
    live: &[bool],
    walk: Option<&[u32]>,
    score: &[f64],
) -> Allocated {
    let n = lists.priority.len();
    let customers = lists.customers();
    let mut walker = Walker {
        lists,
        max: &caps.max,
        live,
        walk,
        score,
        m: u32::try_from(m).unwrap_or(u32::MAX),
        used: vec![0; caps.len()],
    };
    // Per cap: the order key of the candidate whose acceptance filled it (0: full from the
    // start; `u128::MAX`: not full). A candidate coming up at key `k` finds cap `c` full
    // exactly when `filled_at[c] < k`, as caps never empty.
    let mut filled_at = vec![u128::MAX; caps.len()];
    let mut open = 0usize;
    for c in 0..caps.len() {
        if live[c] && caps.max[c] == 0 {
            filled_at[c] = 0;
        } else if live[c] {
            open += 1;
        }
    }

    // Every customer walks to their first candidate that needs the global order (their
    // head), independently: before the first of those, no cap that can fill changes.
    // Each chunk of customers writes its heads into its own stretch of one array, compacted
    // after: at millions of customers, gathering per-chunk vectors would hold them twice.
    const CHUNK: usize = 4096;
    // Filled in parallel: the first write of fresh pages is a page fault each (50 MB on
    // bank-2m), and `vec!` would take them all on one thread.
    let mut heads: Vec<Cursor> = (0..customers)
        .into_par_iter()
        .map(|_| Cursor::NONE)
        .collect();
    let (counts, mut walks): (Vec<usize>, Vec<Walked>) = heads
        .par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(chunk, out)| {
            let mut walked = Walked::default();
            let mut count = 0;
            for i in chunk * CHUNK..customers.min((chunk + 1) * CHUNK) {
                let (start, end) = (lists.starts[i], lists.starts[i + 1]);
                if let Some(head) = walker.advance(lists.ordinal[i], start, end, 0, &mut walked) {
                    out[count] = head;
                    count += 1;
                }
            }
            (count, walked)
        })
        .unzip();
    let mut len = 0;
    for (chunk, &count) in counts.iter().enumerate() {
        heads.copy_within(chunk * CHUNK..chunk * CHUNK + count, len);
        len += count;
    }
    heads.truncate(len);
    heads.par_sort_unstable_by_key(|h| h.key);
    let mut walked = Walked::default();

    // The ordered phase: the heads in order, merged with the customers' later stops, until
    // every cap that can fill is full. Turns are taken in blocks of consecutive turns. While
    // no cap can fill within a block (each open cap has more room left than the block's
    // customers could take), nothing a turn sees changes inside it, so its customers are
    // decided in parallel, each walking on to their own later stops that fall in the block;
    // otherwise the block's turns are taken one by one. The block grows while it can and
    // shrinks where a cap is about to fill.
    // Written in place by the parallel blocks (each candidate by its own customer's task).
    let rejected_by: Vec<AtomicU32> = (0..n)
        .into_par_iter()
        .map(|_| AtomicU32::new(NO_CAP))
        .collect();
    let mut agenda = Agenda::new(heads);
    // The stops due within the block (unsorted); the block in order (one by one).
    let mut stops: Vec<Cursor> = Vec::new();
    let mut block: Vec<Cursor> = Vec::new();
    let mut size = 1usize;
    // Stops that fall inside the block being taken one by one.
    let mut due: BinaryHeap<Reverse<Cursor>> = BinaryHeap::new();
    // Per cap: room left (`u64::MAX` where the cap cannot fill or is full), for `cut_before`.
    let mut left = vec![0u64; caps.len()];
    while open > 0 {
        // The block: the next `size` heads with every stop due up to the last of them, cut
        // before the first head that would fill a cap were every head before it accepted
        // (the later stops of those turned down may fill one sooner: then the block is
        // taken one by one).
        for (c, left) in left.iter_mut().enumerate() {
            *left = walker.room_left(c).unwrap_or(u64::MAX);
        }
        if left.iter().any(|&l| l <= size as u64) {
            let next = &agenda.heads[agenda.next..];
            size = cut_before(&next[..size.min(next.len())], lists.slots, &mut left).max(1);
        }
        stops.clear();
        let Some((range, until)) = agenda.next_block(size, &mut stops) else {
            break;
        };
        let block_heads = &agenda.heads[range];
        let room: u64 = block_heads
            .iter()
            .chain(&stops)
            .map(|c| u64::from(walker.m.saturating_sub(c.taken)))
            .sum();
        let no_fill = (0..caps.len()).all(|c| walker.room_left(c).is_none_or(|r| room < r));
        // Where a cap could fill, a block large enough to split is still taken in parallel,
        // on trust: if afterwards no open cap has reached its max, none filled inside it and
        // every turn saw what it would have seen one by one. Otherwise its outcome is dropped
        // and the block is taken one by one. The parallel attempt wrote only one thing in
        // place: the cap of each of the block's own turns that met a cap full before the
        // block (a stop made inside it is in no full cap, so it is accepted); taken one by
        // one, each of those turns meets that cap full again and writes its first full cap.
        let trusted = !no_fill && block_heads.len() + stops.len() >= BLOCK_CHUNK;
        let parts: Option<Vec<TurnsTaken>> = (no_fill || trusted).then(|| {
            let fences = &agenda.fences;
            block_heads
                .par_chunks(BLOCK_CHUNK)
                .chain(stops.par_chunks(BLOCK_CHUNK))
                .map(|chunk| walker.take_turns(chunk, until, &rejected_by, fences))
                .collect()
        });
        let parts = parts.filter(|parts| {
            no_fill || {
                let mut added = vec![0u64; caps.len()];
                for part in parts {
                    add_counts(&mut added, &part.used);
                }
                (0..caps.len()).all(|c| walker.room_left(c).is_none_or(|r| added[c] < r))
            }
        });
        if let Some(parts) = parts {
            for part in parts {
                walks.push(part.walked);
                add_counts(&mut walker.used, &part.used);
                for (cursor, bin) in part.later.into_iter().zip(part.bins) {
                    agenda.file_in(bin as usize, cursor);
                }
            }
            debug_assert!(
                (0..caps.len()).all(|c| {
                    let was_full = filled_at[c] < u128::MAX;
                    !live[c] || (walker.used[c] >= caps.max[c]) == was_full
                }),
                "a block filled a cap"
            );
            size = (size * 2).min(MAX_BLOCK);
            continue;
        }
        size = (size / 2).max(1);
        stops.sort_unstable_by_key(|c| c.key);
        merge_sorted(block_heads, &stops, &mut block);
        let mut i = 0;
        loop {
            let cursor = match (block.get(i), due.peek()) {
                (Some(b), Some(Reverse(d))) if d.key < b.key => due.pop().map(|Reverse(d)| d),
                (Some(&b), _) => {
                    i += 1;
                    Some(b)
                }
                (None, Some(_)) => due.pop().map(|Reverse(d)| d),
                (None, None) => None,
            };
            let Some(mut cursor) = cursor else {
                break;
            };
            if let Some(ahead) = block.get(i + PREFETCH_AHEAD) {
                walker.prefetch_turn(ahead, &rejected_by);
            }
            if let Some(slots) = walker.take_turn(&mut cursor, &rejected_by, &mut walked) {
                for &c in slots {
                    if c != NO_CAP && live[c as usize] {
                        walker.used[c as usize] += 1;
                        if walker.used[c as usize] == caps.max[c as usize] {
                            filled_at[c as usize] = cursor.key;
                            open -= 1;
                        }
                    }
                }
            }
            match walker.walk_on(&cursor, &mut walked) {
                Some(next) if next.key <= until => due.push(Reverse(next)),
                Some(next) => agenda.file(next),
                None => {}
            }
        }
    }
    // Every cap that can fill is full: the order no longer matters (a full cap stays full),
    // so the customers left finish their walks independently, in parallel.
    let finish = |pending: &[Cursor]| -> Vec<Walked> {
        pending
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut walked = Walked::default();
                for cursor in chunk {
                    let stop = walker.advance(
                        ordinal_of(cursor.key),
                        cursor.pos as usize,
                        cursor.end as usize,
                        cursor.taken,
                        &mut walked,
                    );
                    debug_assert!(stop.is_none(), "a cap that can fill is not full");
                }
                walked
            })
            .collect()
    };
    walks.push(walked);
    let (heads, next_head, stops) = agenda.into_rest();
    walks.extend(finish(&heads[next_head..]));
    drop(heads);
    walks.extend(finish(&stops));
    // What the walks decided, written in place in parallel: each candidate is named by at
    // most one walk.
    let accepted: Vec<AtomicBool> = (0..n)
        .into_par_iter()
        .map(|_| AtomicBool::new(false))
        .collect();
    walks.par_iter().for_each(|walked| {
        for &x in &walked.accepted {
            accepted[x as usize].store(true, Relaxed);
        }
        // Turned down outside the ordered phase, by a cap known to be full then.
        for &(x, by) in &walked.named {
            rejected_by[x as usize].store(by, Relaxed);
        }
        // Turned down early: by the first cap, in the caps' order, already full when their
        // turn (their order key) came, as if they had waited for it (in the ordered phase
        // `first_full` saw exactly that).
        for &(ordinal, pos) in &walked.early {
            let x = walker.candidate(pos as usize);
            let turn = order_key(score[x], ordinal, lists.tie_of(x));
            let by = lists
                .slots_of(x)
                .iter()
                .copied()
                .filter(|&c| c != NO_CAP && live[c as usize] && filled_at[c as usize] < turn)
                .min()
                .unwrap_or(NO_CAP);
            rejected_by[x].store(by, Relaxed);
        }
    });
    drop(walks);
    // (std collects these in place: each pair has the same size and alignment.)
    let accepted: Vec<bool> = accepted.into_iter().map(AtomicBool::into_inner).collect();
    let rejected_by: Vec<u32> = rejected_by.into_iter().map(AtomicU32::into_inner).collect();
    // Per fixed chunk of candidates, combined in order: the total does not depend on the
    // number of threads.
    let (objective, used) = accepted
        .par_chunks(1 << 16)
        .enumerate()
        .map(|(chunk, flags)| {
            let mut used = vec![0u64; caps.len()];
            let mut objective = 0.0;
            let first = chunk << 16;
            for x in (first..first + flags.len()).filter(|&x| flags[x - first]) {
                objective += lists.priority[x];
                for &c in lists.slots_of(x).iter().filter(|&&c| c != NO_CAP) {
                    used[c as usize] += 1;
                }
            }
            (objective, used)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(
            (0.0, vec![0u64; caps.len()]),
            |(total, mut used), (part, add)| {
                add_counts(&mut used, &add);
                (total + part, used)
            },
        );
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
/// counted into `funnel` (`actions[x]`: candidate x's action; each customer's candidates are
/// in rank order, so the first is rank 1).
pub(crate) fn settle(
    lists: &Lists<'_>,
    actions: &[u32],
    caps: &CompiledCaps,
    m: usize,
    allocation: Allocation,
    funnel: &mut FunnelCounts,
) -> Allocated {
    let allocated = match allocation {
        Allocation::Greedy => greedy(lists, caps, m),
        Allocation::Optimal => optimal(lists, caps, m, PriceSearch::default()),
    };
    // One table per part: rows of per-action counts (selected, fallback, capped out, then
    // turned down per cap, then a row that takes the candidates no cap turned down). Every
    // candidate adds to each row it may count in, 0 or 1, with no branch: whether it was
    // accepted or turned down follows no pattern, and branches on it cost more than the adds.
    let action_count = funnel.candidates.len();
    let (selected, fallback, capped_out, capped) = (0, 1, 2, 3);
    let none = capped + caps.len();
    let rows = none + 1;
    let zero = || vec![0u64; rows * action_count];
    let counts = (0..lists.customers())
        .into_par_iter()
        .with_min_len(1 << 14)
        .fold(zero, |mut counts, i| {
            let start = lists.starts[i];
            // x indexes three per-candidate arrays and gives the rank: a range loop is clearest.
            #[allow(clippy::needless_range_loop)]
            for x in start..lists.starts[i + 1] {
                let a = actions[x] as usize;
                // A customer's candidates are in rank order: rank x − start + 1.
                let top = u64::from(x - start < m);
                let accepted = u64::from(allocated.accepted[x]);
                counts[selected * action_count + a] += accepted;
                counts[fallback * action_count + a] += accepted * (1 - top);
                counts[capped_out * action_count + a] += (1 - accepted) * top;
                // `NO_CAP` is above every cap: it goes to the last row.
                let by = (allocated.rejected_by[x] as usize).min(none - capped);
                counts[(capped + by) * action_count + a] += 1;
            }
            counts
        })
        .reduce(zero, |mut total, part| {
            add_counts(&mut total, &part);
            total
        });
    let row = |r: usize| &counts[r * action_count..(r + 1) * action_count];
    add_counts(&mut funnel.selected, row(selected));
    add_counts(&mut funnel.fallback, row(fallback));
    add_counts(&mut funnel.capped_out, row(capped_out));
    funnel.capped = (capped..none).map(|r| row(r).to_vec()).collect();
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
    greedy_by(lists, caps, m, &live, None, lists.priority)
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
    for &c in lists
        .slots_of(x)
        .iter()
        .filter(|&&c| c != NO_CAP && c != skip)
    {
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
                    let cap = lists.slots_of(y)[slot];
                    let seen_before = (range.start..y).any(|z| lists.slots_of(z)[slot] == cap);
                    if cap == NO_CAP || seen_before {
                        continue;
                    }
                    inside.clear();
                    outside.clear();
                    for x in range.clone() {
                        if lists.slots_of(x)[slot] == cap {
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
/// repaired primal does not hinge on ties. A cap of max 0 has no upper end: its price is put
/// strictly above every gain (it adds nothing to the dual, as it is multiplied by 0), since a
/// price equal to the largest gain left that customer indifferent, and the other caps' prices
/// were then set as if the cap's candidate were still its alternative.
fn best_price(mut gains: Vec<f64>, max: u64) -> f64 {
    let max = max as usize;
    if gains.len() <= max {
        // Every customer who gains from the cap fits: any price below the smallest gain
        // admits them all. Half of it rather than 0, so that a customer who gains exactly
        // nothing (a tie between the cap's candidate and the best outside it) is not admitted
        // too, taking room the repaired primal needed.
        return gains
            .iter()
            .copied()
            .min_by(|a, b| a.total_cmp(b))
            .map_or(0.0, |smallest| 0.5 * smallest);
    }
    let (above, nth, _) = gains.select_nth_unstable_by(max, |a, b| b.total_cmp(a));
    let lower = nth.max(0.0);
    match above.iter().copied().min_by(|a, b| a.total_cmp(b)) {
        Some(upper) => 0.5 * (lower + upper),
        None => 2.0 * lower + 1.0,
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
    let mut best = greedy_by(lists, caps, m, &live, None, lists.priority);
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
                .then_with(|| lists.tie_of(a as usize).cmp(&lists.tie_of(b as usize)))
        })
    });
    greedy_by(lists, caps, m, live, Some(&walk), &score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{parse_caps, CompiledCaps};
    use crate::history::Codes;

    /// Customers with (action, priority) lists; actions "a0".."a9" in groups "g0".."g4" (by
    /// pairs: a0 and a1 in g0), issues "i0".."i2" (a mod 3) and channels by parity (even:
    /// email), so group, issue and channel caps cross.
    fn setup(
        lists: &[Vec<(u32, f64)>],
        caps: &[(&str, i64)],
    ) -> (Vec<usize>, Vec<f64>, Vec<u32>, Vec<CapSlots>, CompiledCaps) {
        let mut codes = Codes::default();
        for a in 0..10 {
            codes.intern(0, &format!("a{a}"));
        }
        for g in 0..5 {
            codes.intern(1, &format!("g{g}"));
        }
        for i in 0..3 {
            codes.intern(2, &format!("i{i}"));
        }
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
                slots.push(compiled.slots(&[a, a / 2, a % 3, a % 2]));
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
        let kind: Vec<u32> = (0..priority.len() as u32).collect();
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            tie: &tie,
            kind: &kind,
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
            let kind: Vec<u32> = (0..priority.len() as u32).collect();
            let lists = Lists {
                starts: &starts,
                ordinal: &ordinal,
                priority: &priority,
                tie: &tie,
                kind: &kind,
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
        let kind: Vec<u32> = (0..priority.len() as u32).collect();
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            tie: &tie,
            kind: &kind,
            slots: &slots,
        };
        assert_eq!(greedy(&lists, &caps, 1).objective, 10.0);
        let best = optimal(&lists, &caps, 1, PriceSearch::default());
        assert_eq!(best.objective, 18.5);
        let gap = relative_gap(best.dual_bound.unwrap(), best.objective);
        assert!(gap < 1e-9, "gap {gap}");
    }

    /// The plain definition (DESIGN.md §3): every candidate in global order, accepted while
    /// its customer has room and every cap of its has room; a turned-down candidate names the
    /// first full cap in the caps' order. Returns (accepted, rejected_by, used).
    fn plain_greedy(
        lists: &Lists<'_>,
        caps: &CompiledCaps,
        m: usize,
    ) -> (Vec<bool>, Vec<u32>, Vec<u64>) {
        let n = lists.priority.len();
        let customer_of: Vec<usize> = (0..lists.customers())
            .flat_map(|i| std::iter::repeat_n(i, lists.starts[i + 1] - lists.starts[i]))
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&x| {
            order_key(
                lists.priority[x],
                lists.ordinal[customer_of[x]],
                lists.tie_of(x),
            )
        });
        let mut taken = vec![0usize; lists.customers()];
        let mut used = vec![0u64; caps.len()];
        let (mut accepted, mut rejected_by) = (vec![false; n], vec![NO_CAP; n]);
        for x in order {
            let i = customer_of[x];
            if taken[i] >= m {
                continue;
            }
            let slots = lists.slots_of(x);
            let full = slots
                .iter()
                .copied()
                .filter(|&c| c != NO_CAP && used[c as usize] >= caps.max[c as usize])
                .min()
                .unwrap_or(NO_CAP);
            if full == NO_CAP {
                accepted[x] = true;
                taken[i] += 1;
                for &c in slots.iter().filter(|&&c| c != NO_CAP) {
                    used[c as usize] += 1;
                }
            } else {
                rejected_by[x] = full;
            }
        }
        (accepted, rejected_by, used)
    }

    const SCOPES: [&str; 11] = [
        "action:a0",
        "action:a1",
        "action:a2",
        "action:a3",
        "channel:email",
        "channel:sms",
        "group:g0",
        "group:g1",
        "issue:i0",
        "issue:i1",
        "all",
    ];

    /// Runs the greedy and the plain definition on `customers` (per customer: action →
    /// priority step) under `caps` (scope → max), the customers' ordinals rotated by `shuffle`.
    fn compare_with_plain(
        customers: &[std::collections::BTreeMap<u32, u8>],
        caps: &std::collections::BTreeMap<usize, i64>,
        m: usize,
        shuffle: u64,
    ) -> std::result::Result<(), proptest::test_runner::TestCaseError> {
        let data: Vec<Vec<(u32, f64)>> = customers
            .iter()
            .map(|actions| {
                actions
                    .iter()
                    .map(|(&a, &p)| (a, f64::from(p) * 0.5))
                    .collect()
            })
            .collect();
        let caps: Vec<(&str, i64)> = caps.iter().map(|(&k, &max)| (SCOPES[k], max)).collect();
        let (starts, priority, tie, slots, compiled) = setup(&data, &caps);
        let kind: Vec<u32> = (0..priority.len() as u32).collect();
        // A permutation of the customers' ordinals: customers need not come in id order.
        let count = data.len() as u32;
        let ordinal: Vec<u32> = (0..count)
            .map(|i| {
                let step = (shuffle % u64::from(count.max(1))) as u32;
                (i + step) % count.max(1)
            })
            .collect();
        let lists = Lists {
            starts: &starts,
            ordinal: &ordinal,
            priority: &priority,
            kind: &kind,
            tie: &tie,
            slots: &slots,
        };
        let result = greedy(&lists, &compiled, m);
        let (accepted, rejected_by, used) = plain_greedy(&lists, &compiled, m);
        proptest::prop_assert_eq!(result.accepted, accepted);
        proptest::prop_assert_eq!(result.rejected_by, rejected_by);
        proptest::prop_assert_eq!(result.used, used);
        Ok(())
    }

    proptest::proptest! {
        /// The greedy (cursors, agenda, walks in parallel) gives what the plain definition
        /// gives, on lists with tied priorities, customers out of id order, and caps of every
        /// kind, some full from the start, some that can never fill.
        #[test]
        fn the_greedy_is_the_plain_definition(
            customers in proptest::collection::vec(
                proptest::collection::btree_map(0u32..6, 0u8..5, 0..6),
                0..120,
            ),
            caps in proptest::collection::btree_map(0usize..SCOPES.len(), 0i64..40, 0..5),
            m in 1usize..4,
            shuffle in proptest::num::u64::ANY,
        ) {
            compare_with_plain(&customers, &caps, m, shuffle)?;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(24))]
        /// The same with thousands of customers and caps in the thousands: the ordered phase
        /// takes blocks of turns large enough to be split over several parallel tasks, and
        /// shrinks them around each cap's filling.
        #[test]
        fn the_greedy_in_large_blocks_is_the_plain_definition(
            customers in proptest::collection::vec(
                proptest::collection::btree_map(0u32..6, 0u8..5, 1..6),
                2000..6000,
            ),
            caps in proptest::collection::btree_map(0usize..SCOPES.len(), 0i64..4000, 1..5),
            m in 1usize..3,
            shuffle in proptest::num::u64::ANY,
        ) {
            compare_with_plain(&customers, &caps, m, shuffle)?;
        }
    }

    fn cursor(key: u128) -> Cursor {
        Cursor {
            key,
            pos: 0,
            kind: 0,
            end: 0,
            taken: 0,
        }
    }

    proptest::proptest! {
        /// The agenda hands out the turns a sorted list would, when each stop filed is above
        /// the last turn handed out (as the greedy's follow-ups are): each block, the next
        /// heads and exactly the stops up to its last key; once the heads run out, the stops
        /// left as the next heads. Stops land just above the block (low bits) or far above.
        #[test]
        fn the_agenda_hands_out_turns_in_key_order(
            heads in proptest::collection::btree_set(0u128..u128::MAX / 2, 0..3000),
            steps in proptest::collection::vec(
                (1usize..700, proptest::collection::vec((0u32..128, 1u64..1000), 0..40)),
                0..60,
            ),
        ) {
            let mut model_heads: Vec<u128> = heads.iter().copied().collect();
            let mut model_stops: Vec<u128> = Vec::new();
            let mut taken = 0;
            let mut agenda = Agenda::new(model_heads.iter().map(|&k| cursor(k)).collect());
            let mut stops = Vec::new();
            for (size, pushes) in &steps {
                if taken == model_heads.len() {
                    model_stops.sort_unstable();
                    model_heads = std::mem::take(&mut model_stops);
                    taken = 0;
                }
                stops.clear();
                let block = agenda.next_block(*size, &mut stops);
                if model_heads.is_empty() {
                    proptest::prop_assert!(block.is_none());
                    break;
                }
                let Some((range, until)) = block else {
                    proptest::prop_assert!(false, "a block was due");
                    break;
                };
                let end = (taken + size).min(model_heads.len());
                let expected = &model_heads[taken..end];
                taken = end;
                let got: Vec<u128> = agenda.heads[range].iter().map(|c| c.key).collect();
                proptest::prop_assert_eq!(&got[..], expected);
                proptest::prop_assert_eq!(until, expected[expected.len() - 1]);
                let mut due: Vec<u128> = stops.iter().map(|c| c.key).collect();
                due.sort_unstable();
                let mut model_due: Vec<u128> =
                    model_stops.iter().copied().filter(|&k| k <= until).collect();
                model_due.sort_unstable();
                model_stops.retain(|&k| k > until);
                proptest::prop_assert_eq!(due, model_due);
                for &(shift, step) in pushes {
                    // (The shift may carry the step out of range: 0 is not a stop to come.)
                    let key = until.saturating_add((step as u128) << shift);
                    let fresh =
                        !model_stops.contains(&key) && !model_heads[taken..].contains(&key);
                    if key > until && fresh {
                        agenda.file(cursor(key));
                        model_stops.push(key);
                    }
                }
            }
            let (rest_heads, next, rest_stops) = agenda.into_rest();
            let mut left: Vec<u128> = rest_heads[next..]
                .iter()
                .chain(&rest_stops)
                .map(|c| c.key)
                .collect();
            left.sort_unstable();
            let mut model_left: Vec<u128> =
                model_heads[taken..].iter().chain(&model_stops).copied().collect();
            model_left.sort_unstable();
            proptest::prop_assert_eq!(left, model_left);
        }

        /// The branch-free search finds the bin the standard one does.
        #[test]
        fn bins_are_found_as_by_partition_point(
            fences in proptest::collection::btree_set(0u128..1000, 0..40),
            key in 0u128..1001,
        ) {
            let fences: Vec<u128> = fences.into_iter().collect();
            proptest::prop_assert_eq!(
                Agenda::bin_of(&fences, key),
                fences.partition_point(|&fence| fence < key)
            );
        }
    }

    #[test]
    fn a_cap_of_max_0_is_priced_above_every_gain() {
        assert!(best_price(vec![6.4, 3.4, 1.6], 0) > 6.4);
        assert_eq!(best_price(vec![3.0, 1.0], 1), 2.0);
        assert_eq!(best_price(vec![3.0], 1), 1.5);
        assert_eq!(best_price(Vec::new(), 1), 0.0);
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
