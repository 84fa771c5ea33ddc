//! The Python exception classes, declared once, and the one mapping from `NbaError` to them.

use nba_core::NbaError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    nba_fast,
    NbaFastError,
    PyException,
    "Base class of every nba_fast error."
);
create_exception!(
    nba_fast,
    SchemaError,
    NbaFastError,
    "A column is missing or has the wrong type."
);
create_exception!(
    nba_fast,
    RuleError,
    NbaFastError,
    "An eligibility rule is invalid for the data."
);
create_exception!(
    nba_fast,
    ConfigError,
    NbaFastError,
    "The catalog, a policy, a cap or an option is invalid."
);
create_exception!(
    nba_fast,
    DataError,
    NbaFastError,
    "A value in the input data is invalid."
);

/// `NbaError` wrapped so that this crate may implement `From<…> for PyErr` (orphan rule).
pub struct PyNbaError(pub NbaError);

impl From<NbaError> for PyNbaError {
    fn from(err: NbaError) -> Self {
        Self(err)
    }
}

impl From<PyNbaError> for PyErr {
    fn from(err: PyNbaError) -> PyErr {
        match err.0 {
            NbaError::Schema(msg) => SchemaError::new_err(msg),
            NbaError::Rule(msg) => RuleError::new_err(msg),
            NbaError::Config(msg) => ConfigError::new_err(msg),
            NbaError::Data(msg) => DataError::new_err(msg),
            NbaError::Arrow(err) => DataError::new_err(err.to_string()),
        }
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NbaFastError", py.get_type::<NbaFastError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("RuleError", py.get_type::<RuleError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    Ok(())
}
