//! The `nba_fast._core` extension module: argument extraction, GIL release and error mapping
//! around `nba_core`. Nothing here decides anything.

mod engine;
mod errors;

use pyo3::prelude::*;

/// The private native module; users import `nba_fast`.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<engine::PyEngine>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Unoptimised (opt-level 0): far too slow for real work. The test profile is opt-level 1.
    m.add("DEBUG_BUILD", env!("NBA_FAST_OPT_LEVEL") == "0")?;
    // "release" for `--release` builds: the only ones benchmarks accept.
    m.add("BUILD_PROFILE", env!("NBA_FAST_PROFILE"))?;
    Ok(())
}
