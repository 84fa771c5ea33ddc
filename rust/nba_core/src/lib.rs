//! nba_core: the next-best-action decision engine over Apache Arrow record batches.
//!
//! Pure Rust, no Python: the binding crate `nba_py` wraps it. See `DESIGN.md` §3 and
//! `docs/semantics.md` for the semantics every stage implements; `nba_fast.reference` states them
//! in plain Python.
//!
//! The pipeline of one `decide` call, per batch of customers: eligibility rules ([`rules`]),
//! contactability ([`contact`]), propensity lookup ([`propensity`]), priority ([`priority`]),
//! per-customer ranking ([`rank`]); the [`funnel`] counts every drop. [`engine`] streams batches
//! through it on a thread pool ([`pool`]) and assembles the [`output`].

mod allocate;
mod arbitrate;
mod candidates;
pub mod caps;
pub mod catalog;
pub mod contact;
pub mod engine;
pub mod error;
pub mod funnel;
pub mod history;
pub mod ids;
mod memory;
mod output;
pub mod policy;
pub mod pool;
pub mod priority;
pub mod propensity;
pub mod rank;
pub mod rules;

pub use caps::{Allocation, CapScope, VolumeCap};
pub use catalog::{Action, Catalog};
pub use engine::{
    batch_stream, AllocationReport, BatchStream, Decided, Engine, EngineOptions, Inputs,
    PropensityInput,
};
pub use error::{NbaError, Result};
pub use output::decisions_schema;
pub use policy::{ContactPolicy, PolicyKind, PolicyLevel};
