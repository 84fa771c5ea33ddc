//! The one error type of the core. Each variant maps to one Python exception class
//! (`SchemaError`, `RuleError`, `ConfigError`, `DataError`) in the binding crate; the message
//! always names the column, action, rule or value at fault.

use arrow_schema::ArrowError;

/// Everything that can go wrong in the core. A panic is a bug; bad input is one of these.
#[derive(Debug, thiserror::Error)]
pub enum NbaError {
    /// A column is missing or has a type the engine cannot use.
    #[error("{0}")]
    Schema(String),
    /// An eligibility rule does not parse, names an unknown column or mixes incompatible types.
    #[error("{0}")]
    Rule(String),
    /// The catalog, a policy, a cap or an engine option is invalid.
    #[error("{0}")]
    Config(String),
    /// A value in the data is invalid: null or duplicate ids, propensity out of range, …
    #[error("{0}")]
    Data(String),
    /// An Arrow kernel failed on data the checks above let through.
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
}

/// The core's result type.
pub type Result<T, E = NbaError> = std::result::Result<T, E>;

/// Shorthands that keep call sites short: `schema_err!("column {name:?} is missing")`.
#[macro_export]
macro_rules! schema_err {
    ($($arg:tt)*) => { $crate::error::NbaError::Schema(format!($($arg)*)) };
}
/// See [`schema_err!`].
#[macro_export]
macro_rules! rule_err {
    ($($arg:tt)*) => { $crate::error::NbaError::Rule(format!($($arg)*)) };
}
/// See [`schema_err!`].
#[macro_export]
macro_rules! config_err {
    ($($arg:tt)*) => { $crate::error::NbaError::Config(format!($($arg)*)) };
}
/// See [`schema_err!`].
#[macro_export]
macro_rules! data_err {
    ($($arg:tt)*) => { $crate::error::NbaError::Data(format!($($arg)*)) };
}
