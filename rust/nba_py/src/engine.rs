//! `nba_fast._core.Engine`: the Python face of `nba_core::Engine`.
//!
//! Inputs arrive as any Arrow object (PyCapsule interface, via pyo3-arrow); the customers are
//! streamed batch by batch with the GIL released; the two result tables go back as pyarrow.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use nba_core::caps::parse_caps;
use nba_core::{
    batch_stream, Allocation, BatchStream, Catalog, ContactPolicy, Decided, Engine, EngineOptions,
    Inputs, PolicyKind, PolicyLevel, PropensityInput,
};
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::error::PyArrowError;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyArray, PySchema};

use crate::errors::{ConfigError, PyNbaError};

/// Reads a `nba_fast.config.ContactPolicy` (already validated in Python; the core validates
/// again, so a hand-made object cannot slip through).
fn extract_policy(policy: &Bound<'_, PyAny>) -> PyResult<ContactPolicy> {
    let text = |key: &str| -> PyResult<String> { policy.getattr(key)?.extract() };
    let name = text("name")?;
    let kind = match text("kind")?.as_str() {
        "suppress" => PolicyKind::Suppress,
        "limit" => PolicyKind::Limit,
        other => {
            return Err(ConfigError::new_err(format!(
                "policy {name:?}: kind must be \"suppress\" or \"limit\", got {other:?}"
            )))
        }
    };
    let level = match text("level")?.as_str() {
        "action" => PolicyLevel::Action,
        "group" => PolicyLevel::Group,
        "issue" => PolicyLevel::Issue,
        "channel" => PolicyLevel::Channel,
        "customer" => PolicyLevel::Customer,
        other => {
            return Err(ConfigError::new_err(format!(
                "policy {name:?}: unknown level {other:?}"
            )))
        }
    };
    let channel = text("channel")?;
    Ok(ContactPolicy {
        kind,
        level,
        channel: (channel != "*").then_some(channel),
        outcomes: policy.getattr("outcomes")?.extract()?,
        threshold: policy.getattr("threshold")?.extract()?,
        window_days: policy.getattr("window_days")?.extract()?,
        suppress_days: policy.getattr("suppress_days")?.extract()?,
        threshold_column: policy.getattr("threshold_column")?.extract()?,
        name,
    })
}

/// The compiled engine: a validated catalog with its rules parsed once.
#[pyclass(frozen, module = "nba_fast._core", name = "Engine")]
pub struct PyEngine {
    inner: Engine,
}

/// Reads a whole Arrow object (table, batch or stream) into memory.
fn read_all(input: AnyRecordBatch) -> PyResult<(Vec<RecordBatch>, SchemaRef)> {
    let table = input.into_table()?;
    Ok(table.into_inner())
}

/// A batch as a pyarrow table whose columns are exported one by one, so that each is freed
/// when Python drops it. (Exported as one record batch, every column would share the batch's
/// release: keeping any column, or a `select` of a few, would keep the whole table alive;
/// that was 0.9 GB held after `bank-10m`'s decisions were narrowed to three columns.)
fn table(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let schema = batch.schema();
    let pyarrow = py.import(intern!(py, "pyarrow"))?;
    let to_array = pyarrow.getattr(intern!(py, "array"))?;
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            let array =
                PyArray::try_new(column.clone(), field.clone()).map_err(PyArrowError::from)?;
            to_array.call1((array,))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("schema", PySchema::new(schema).into_pyarrow(py)?)?;
    Ok(pyarrow
        .getattr(intern!(py, "Table"))?
        .call_method("from_arrays", (columns,), Some(&kwargs))?
        .unbind())
}

/// The result as a dict: `decisions`, `funnel` (pyarrow tables), `timings` (stage → seconds)
/// and, with caps, `allocation` (a dict with the cap `usage` table).
fn to_pyarrow(py: Python<'_>, decided: Decided) -> PyResult<Py<PyDict>> {
    let out = PyDict::new(py);
    out.set_item("decisions", table(py, decided.decisions)?)?;
    out.set_item("funnel", table(py, decided.funnel)?)?;
    let timings = PyDict::new(py);
    for (stage, seconds) in decided.timings {
        timings.set_item(stage, seconds)?;
    }
    out.set_item("timings", timings)?;
    if let Some(report) = decided.allocation {
        let allocation = PyDict::new(py);
        let method = match report.method {
            Allocation::Greedy => "greedy",
            Allocation::Optimal => "optimal",
        };
        allocation.set_item("method", method)?;
        allocation.set_item("objective", report.objective)?;
        allocation.set_item("greedy_objective", report.greedy_objective)?;
        allocation.set_item("dual_bound", report.dual_bound)?;
        allocation.set_item("gap", report.gap)?;
        allocation.set_item("passes", report.passes)?;
        allocation.set_item("usage", table(py, report.usage)?)?;
        out.set_item("allocation", allocation)?;
    }
    Ok(out.unbind())
}

#[pymethods]
impl PyEngine {
    /// Compiles the catalog (an Arrow table with the columns of `nba_fast.config.CATALOG_SCHEMA`).
    #[new]
    #[pyo3(signature = (catalog, *, policies = Vec::new(), caps = Vec::new(), allocation = "greedy", max_per_customer = 1, batch_rows = 32_768, threads = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        catalog: AnyRecordBatch,
        policies: Vec<Bound<'_, PyAny>>,
        caps: Vec<(String, i64)>,
        allocation: &str,
        max_per_customer: usize,
        batch_rows: usize,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let (batches, schema) = read_all(catalog)?;
        let batch = arrow_select_concat(&schema, &batches)?;
        let catalog = Catalog::from_batch(&batch).map_err(PyNbaError)?;
        let allocation = match allocation {
            "greedy" => Allocation::Greedy,
            "optimal" => Allocation::Optimal,
            other => {
                return Err(ConfigError::new_err(format!(
                    "allocation must be \"greedy\" or \"optimal\", got {other:?}"
                )))
            }
        };
        let options = EngineOptions {
            max_per_customer,
            batch_rows,
            threads,
            caps: parse_caps(&caps).map_err(PyNbaError)?,
            allocation,
        };
        let policies = policies
            .iter()
            .map(extract_policy)
            .collect::<PyResult<Vec<_>>>()?;
        let inner = Engine::new(catalog, policies, options).map_err(PyNbaError)?;
        Ok(Self { inner })
    }

    /// Decides for a stream of customers; returns the result dict (see `to_pyarrow`).
    #[pyo3(signature = (customers, *, now_us, propensities = None, propensity_matrix = None, propensity_columns = None, do_not_contact = None, history = None))]
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        py: Python<'_>,
        customers: AnyRecordBatch,
        now_us: i64,
        propensities: Option<AnyRecordBatch>,
        propensity_matrix: Option<PyReadonlyArray2<'_, f64>>,
        propensity_columns: Option<Vec<(String, String)>>,
        do_not_contact: Option<AnyRecordBatch>,
        history: Option<AnyRecordBatch>,
    ) -> PyResult<Py<PyDict>> {
        let reader = customers.into_reader()?;
        let history = history.map(stream).transpose()?;
        let long = propensities.map(read_all).transpose()?;
        let dnc = do_not_contact.map(read_all).transpose()?;
        let matrix = match &propensity_matrix {
            Some(array) => {
                let shape = array.shape();
                let values = array.as_slice().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(
                        "propensity matrix must be C-contiguous float64",
                    )
                })?;
                Some((values, shape[0], shape[1]))
            }
            None => None,
        };
        let input = match (&long, matrix, &propensity_columns) {
            (Some((batches, _)), _, _) => PropensityInput::Long(batches),
            (None, Some((values, rows, columns)), _) => PropensityInput::Dense {
                values,
                rows,
                columns,
            },
            (None, None, Some(pairs)) => PropensityInput::Columns(pairs),
            (None, None, None) => PropensityInput::Missing,
        };
        let schema = reader.schema();
        let inputs = Inputs {
            propensities: input,
            do_not_contact: dnc.as_ref().map(|(batches, _)| batches.as_slice()),
            history,
            now_us,
        };
        let decided = py
            .detach(|| self.inner.decide(schema, reader, inputs))
            .map_err(PyNbaError)?;
        to_pyarrow(py, decided)
    }

    /// Ranks already-expanded candidates; returns the result dict (see `to_pyarrow`).
    #[pyo3(signature = (candidates, *, now_us, history = None))]
    fn arbitrate(
        &self,
        py: Python<'_>,
        candidates: AnyRecordBatch,
        now_us: i64,
        history: Option<AnyRecordBatch>,
    ) -> PyResult<Py<PyDict>> {
        let (batches, schema) = read_all(candidates)?;
        let history = history.map(stream).transpose()?;
        let decided = py
            .detach(|| self.inner.arbitrate(schema, &batches, history, now_us))
            .map_err(PyNbaError)?;
        to_pyarrow(py, decided)
    }

    /// Number of actions in the catalog.
    fn __len__(&self) -> usize {
        self.inner.catalog().len()
    }
}

/// An Arrow object read batch by batch (a table's batches, or a stream pulled as the engine
/// reads it).
fn stream(input: AnyRecordBatch) -> PyResult<BatchStream<'static>> {
    let reader = input.into_reader()?;
    Ok(batch_stream(reader.schema(), reader))
}

fn arrow_select_concat(schema: &SchemaRef, batches: &[RecordBatch]) -> PyResult<RecordBatch> {
    match batches {
        [one] => Ok(one.clone()),
        _ => arrow_select::concat::concat_batches(schema, batches)
            .map_err(|err| PyNbaError(err.into()).into()),
    }
}
