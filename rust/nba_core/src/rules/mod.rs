//! Eligibility rules: SQL boolean expressions over customer columns (`DESIGN.md` §3; the exact
//! subset is in `docs/semantics.md`, "Eligibility rules").
//!
//! A rule goes through three steps, each at its own moment:
//! - [`Rule::parse`] when the engine is built: `sqlparser` parses, our `parse` keeps the subset;
//! - [`Rule::bind`] once per customers' schema: columns are resolved and every type is checked,
//!   so a bad rule fails before any batch is read;
//! - [`BoundRule::evaluate`] per batch: Arrow kernels over whole columns, SQL three-valued logic.
//!
//! Every message quotes the rule (`rule "age >= 18 AND foo = 1": unknown column "foo"`); the
//! engine prefixes the action.

mod bind;
mod coerce;
mod columns;
mod eval;
mod kernels;
mod parse;
mod plan;
mod types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Schema};

use crate::error::Result;
use columns::ColumnSpec;
use plan::Node;
use types::{Expr, Literal};

/// A parsed rule, independent of any schema. Cheap to clone or share (Send + Sync).
#[derive(Debug, Clone)]
pub struct Rule {
    source: Arc<str>,
    expr: Arc<Expr>,
}

impl Rule {
    /// Parses `source` as one SQL expression of the rule subset. Anything outside the subset is
    /// a [`NbaError::Rule`](crate::NbaError::Rule) naming the construct and quoting the rule.
    /// An empty or whitespace-only source is the rule TRUE.
    pub fn parse(source: &str) -> Result<Rule> {
        let expr = if source.trim().is_empty() {
            Expr::Literal(Literal::Bool(true))
        } else {
            parse::parse(source)?
        };
        Ok(Rule {
            source: source.into(),
            expr: Arc::new(expr),
        })
    }

    /// The rule TRUE, every customer's: the default eligibility of an action.
    pub fn always_true() -> Rule {
        Rule {
            source: "".into(),
            expr: Arc::new(Expr::Literal(Literal::Bool(true))),
        }
    }

    /// The rule's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the rule is the constant TRUE (empty source or literally `TRUE`): the engine
    /// skips it.
    pub fn is_always_true(&self) -> bool {
        *self.expr == Expr::Literal(Literal::Bool(true))
    }

    /// Resolves the rule's columns in `schema` (an exact name, else, for an unquoted name, the
    /// one column equal to it ignoring case) and type-checks the rule. Errors are
    /// [`NbaError::Rule`](crate::NbaError::Rule)s naming the column or the mismatched types.
    pub fn bind(&self, schema: &Schema) -> Result<BoundRule> {
        let bound = bind::bind(&self.source, &self.expr, schema)?;
        Ok(BoundRule {
            source: Arc::clone(&self.source),
            columns: bound.columns,
            root: bound.root,
        })
    }
}

/// A rule type-checked against one schema; evaluates a whole batch column-wise. Send + Sync.
#[derive(Debug, Clone)]
pub struct BoundRule {
    source: Arc<str>,
    columns: Vec<ColumnSpec>,
    root: Node,
}

impl BoundRule {
    /// The rule's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the rule over every row of `batch` (of the schema it was bound against):
    /// one boolean per row, NULL where SQL's three-valued logic gives NULL. `now_us` (µs since
    /// the Unix epoch, UTC) is the `now` of `days_since`. An integer overflow, or a column value
    /// out of the range rules support, is an [`NbaError::Data`](crate::NbaError::Data).
    pub fn evaluate(&self, batch: &RecordBatch, now_us: i64) -> Result<BooleanArray> {
        self.evaluate_with(batch, now_us, &mut BatchColumns::default())
    }

    /// [`evaluate`](Self::evaluate), reading the columns through `loaded`, which the rules
    /// evaluated over the same `batch` share.
    pub fn evaluate_with(
        &self,
        batch: &RecordBatch,
        now_us: i64,
        loaded: &mut BatchColumns,
    ) -> Result<BooleanArray> {
        // Each column is read and normalised once, however often the rule names it.
        let columns = self
            .columns
            .iter()
            .map(|spec| loaded.load(spec, batch, &self.source))
            .collect::<Result<Vec<_>>>()?;
        eval::evaluate(&self.root, &columns, batch.num_rows(), now_us, &self.source)
    }
}

/// The columns of one batch as rules read them (normalised: int32 cast to int64, timestamps to
/// microseconds, …), kept for the next rule over the same batch: a catalog whose rules all
/// name `age` casts it once per batch, not once per rule. Start a new one for each batch.
#[derive(Debug, Default)]
pub struct BatchColumns {
    /// By position in the batch: the column's type there and its normalised array.
    loaded: Vec<Option<(DataType, ArrayRef)>>,
}

impl BatchColumns {
    fn load(&mut self, spec: &ColumnSpec, batch: &RecordBatch, source: &str) -> Result<ArrayRef> {
        if let Some(Some((data_type, array))) = self.loaded.get(spec.index) {
            if *data_type == spec.data_type {
                return Ok(Arc::clone(array));
            }
        }
        let array = columns::load(spec, batch, source)?;
        if self.loaded.len() <= spec.index {
            self.loaded.resize(spec.index + 1, None);
        }
        self.loaded[spec.index] = Some((spec.data_type.clone(), Arc::clone(&array)));
        Ok(array)
    }
}
