//! The worker thread pools, built lazily and per process.
//!
//! A pool inherited through `fork` (Spark, Dask and multiprocessing workers) has no threads in the
//! child and would deadlock, so each pool remembers the process that built it and is rebuilt in
//! a new one. Sized by the caller, else by `NBA_FAST_THREADS`, else by the number of cores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::config_err;
use crate::error::Result;

type Pools = HashMap<usize, Arc<ThreadPool>>;

static POOLS: Mutex<Option<(u32, Pools)>> = Mutex::new(None);

/// The default number of threads: `NBA_FAST_THREADS`, else the number of cores.
pub fn default_threads() -> Result<usize> {
    match std::env::var("NBA_FAST_THREADS") {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(config_err!(
                "NBA_FAST_THREADS must be a positive integer, got {text:?}"
            )),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// A pool of `threads` workers (default: [`default_threads`]) for this process.
pub fn thread_pool(threads: Option<usize>) -> Result<Arc<ThreadPool>> {
    let threads = match threads {
        Some(n) => n,
        None => default_threads()?,
    };
    let pid = std::process::id();
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        // Pools of a parent process have no threads here; forget them (never join them).
        if let Some((_, stale)) = guard.take() {
            std::mem::forget(stale);
        }
        *guard = Some((pid, HashMap::new()));
    }
    let pools = match guard.as_mut() {
        Some((_, pools)) => pools,
        None => return Err(config_err!("thread pool registry unavailable")),
    };
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("nba-fast-{i}"))
        .build()
        .map_err(|err| config_err!("cannot start {threads} threads: {err}"))?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}
