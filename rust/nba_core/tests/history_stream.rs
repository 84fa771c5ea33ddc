//! The history as a stream through the Rust API: `batch_stream` checks the schema even of an
//! empty stream, a stream split any way decides the same, and a failing stream is an error.

use std::sync::Arc;

use arrow_array::TimestampMicrosecondArray;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, RecordBatchIterator, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use nba_core::{
    batch_stream, Action, Catalog, ContactPolicy, Decided, Engine, EngineOptions, Inputs, NbaError,
    PolicyKind, PolicyLevel,
};

const NOW: i64 = 1_700_000_000_000_000;

fn engine() -> Engine {
    let mut gold = Action::new("gold", "Sales", "Cards", "email");
    gold.default_propensity = Some(0.5);
    let mut loan = Action::new("loan", "Sales", "Loans", "email");
    loan.default_propensity = Some(0.4);
    let cooldown = ContactPolicy {
        name: "cooldown".into(),
        kind: PolicyKind::Suppress,
        level: PolicyLevel::Group,
        channel: Some("email".into()),
        outcomes: vec!["sent".into()],
        threshold: 1,
        window_days: 30.0,
        suppress_days: Some(60.0),
        threshold_column: None,
    };
    let catalog = Catalog::new(vec![gold, loan]).expect("valid catalog");
    Engine::new(catalog, vec![cooldown], EngineOptions::default()).expect("valid engine")
}

fn history_schema(with_outcome: bool) -> SchemaRef {
    let mut fields = vec![Field::new("customer_id", DataType::Int64, false)];
    for name in ["action_id", "issue", "group", "channel", "outcome"] {
        if name != "outcome" || with_outcome {
            fields.push(Field::new(name, DataType::Utf8, true));
        }
    }
    fields.push(Field::new(
        "timestamp",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// Customer `c` (1..=n) was sent a Cards email a day ago when `c` is odd.
fn history(n: i64) -> RecordBatch {
    let ids: Vec<i64> = (1..=n).filter(|c| c % 2 == 1).collect();
    let rows = ids.len();
    let text = |v: &str| Arc::new(StringArray::from(vec![v; rows])) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        text("gold"),
        text("Sales"),
        text("Cards"),
        text("email"),
        text("sent"),
        Arc::new(
            TimestampMicrosecondArray::from(vec![NOW - 86_400_000_000; rows]).with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(history_schema(true), columns).expect("valid history")
}

fn decide(n: i64, history: nba_core::BatchStream<'_>) -> nba_core::Result<Decided> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
    ]));
    let customers = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((1..=n).collect::<Vec<_>>())),
            Arc::new(StringArray::from(vec!["x@y.z"; n as usize])),
        ],
    )
    .expect("valid customers");
    let reader = RecordBatchIterator::new(vec![Ok(customers)], schema.clone());
    engine().decide(
        schema,
        reader,
        Inputs {
            history: Some(history),
            ..Inputs::at(NOW)
        },
    )
}

#[test]
fn an_empty_stream_still_has_its_schema_checked() {
    let err = decide(3, batch_stream(history_schema(false), Vec::new()))
        .expect_err("the outcome column is missing");
    assert!(
        matches!(&err, NbaError::Schema(m) if m.contains("\"outcome\" is missing")),
        "{err}"
    );
    decide(3, batch_stream(history_schema(true), Vec::new())).expect("an empty history is fine");
}

#[test]
fn a_stream_in_any_batches_decides_as_one_batch() {
    let whole = history(1_000);
    let one = decide(1_000, batch_stream(whole.schema(), vec![Ok(whole.clone())])).expect("ok");
    for size in [1, 7, 250] {
        let parts: Vec<_> = (0..whole.num_rows())
            .step_by(size)
            .map(|start| Ok(whole.slice(start, size.min(whole.num_rows() - start))))
            .collect();
        let split = decide(1_000, batch_stream(whole.schema(), parts)).expect("ok");
        assert_eq!(one.decisions, split.decisions, "batches of {size}");
    }
    // Odd customers had a Cards email: they get the loan, the others the gold card.
    let actions = one.decisions.column_by_name("action_id").expect("column");
    let actions = actions
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("strings");
    assert_eq!((actions.value(0), actions.value(1)), ("loan", "gold"));
}

#[test]
fn a_failing_stream_is_a_data_error_after_the_rows_before_it() {
    let whole = history(10);
    let parts = vec![
        Ok(whole.clone()),
        Err(ArrowError::IoError(
            "disk gone".into(),
            std::io::Error::other("disk gone"),
        )),
    ];
    let err = decide(10, batch_stream(whole.schema(), parts)).expect_err("the stream failed");
    assert!(
        matches!(&err, NbaError::Data(m) if m.contains("the stream failed after 5 rows")),
        "{err}"
    );
}

#[test]
fn inputs_with_a_stream_still_print() {
    let inputs = Inputs {
        history: Some(batch_stream(history_schema(true), Vec::new())),
        ..Inputs::at(7)
    };
    let text = format!("{inputs:?}");
    assert!(
        text.contains("history: Some(\"<stream>\")") && text.contains("now_us: 7"),
        "{text}"
    );
}
