//! Engine invariants on random inputs: the output does not depend on threads or batching, no
//! customer gets more than `max_per_customer` actions, ranks follow priority, and the funnel adds up.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, RecordBatchIterator, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use nba_core::{Action, Catalog, Decided, Engine, EngineOptions, Inputs, PropensityInput};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    ids: Vec<i64>,
    emails: Vec<Option<String>>,
    opt_out: Vec<Option<bool>>,
    actions: Vec<(f64, bool, Option<f64>)>, // value, email channel?, default propensity
    matrix: Vec<f64>,
    max_per_customer: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..40, 1usize..6, 1usize..4).prop_flat_map(|(customers, actions, max)| {
        (
            proptest::sample::subsequence((0..200i64).collect::<Vec<_>>(), customers)
                .prop_shuffle(),
            proptest::collection::vec(proptest::option::weighted(0.8, "[a-c]@x"), customers),
            proptest::collection::vec(proptest::option::of(any::<bool>()), customers),
            proptest::collection::vec(
                (
                    prop_oneof![Just(0.0), Just(1.0), Just(2.5), 0.0..10.0f64],
                    any::<bool>(),
                    proptest::option::of(prop_oneof![Just(0.5), 0.0..1.0f64]),
                ),
                actions,
            ),
            proptest::collection::vec(prop_oneof![Just(0.25), 0.0..=1.0f64], customers * actions),
            Just(max),
        )
            .prop_map(
                |(ids, emails, opt_out, actions, matrix, max_per_customer)| Case {
                    ids,
                    emails,
                    opt_out,
                    actions,
                    matrix,
                    max_per_customer,
                },
            )
    })
}

fn customers(case: &Case) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("opt_out_email", DataType::Boolean, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(case.ids.clone())),
        Arc::new(StringArray::from(case.emails.clone())),
        Arc::new(BooleanArray::from(case.opt_out.clone())),
    ];
    RecordBatch::try_new(schema, columns).expect("valid batch")
}

fn engine(case: &Case, threads: usize, batch_rows: usize) -> Engine {
    let actions = case
        .actions
        .iter()
        .enumerate()
        .map(|(i, &(value, email, default))| {
            let mut action = Action::new(
                &format!("a{i}"),
                "Sales",
                "Cards",
                if email { "email" } else { "push" },
            );
            action.value = value;
            action.default_propensity = default;
            action
        })
        .collect();
    let options = EngineOptions {
        max_per_customer: case.max_per_customer,
        batch_rows,
        threads: Some(threads),
        ..Default::default()
    };
    Engine::new(
        Catalog::new(actions).expect("valid catalog"),
        Vec::new(),
        options,
    )
    .expect("valid engine")
}

fn run(case: &Case, threads: usize, batch_rows: usize) -> Decided {
    let batch = customers(case);
    let schema = batch.schema();
    let reader = RecordBatchIterator::new(vec![Ok(batch)], schema.clone());
    let input = PropensityInput::Dense {
        values: &case.matrix,
        rows: case.ids.len(),
        columns: case.actions.len(),
    };
    engine(case, threads, batch_rows)
        .decide(
            schema,
            reader,
            Inputs {
                propensities: input,
                ..Inputs::at(0)
            },
        )
        .expect("decide succeeds")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn independent_of_threads_and_batching(case in case(), batch_rows in 1usize..9) {
        let reference = run(&case, 1, 32_768);
        let other = run(&case, 3, batch_rows);
        prop_assert_eq!(&reference.decisions, &other.decisions);
        prop_assert_eq!(&reference.funnel, &other.funnel);
    }

    #[test]
    fn ordered_ranked_and_bounded(case in case()) {
        let decided = run(&case, 2, 5);
        let d = &decided.decisions;
        let ids = d.column(0).as_primitive::<Int64Type>();
        let priority = d.column(10).as_primitive::<Float64Type>();
        let rank = d.column(11).as_primitive::<Int32Type>();
        for row in 1..d.num_rows() {
            let (a, b) = (ids.value(row - 1), ids.value(row));
            prop_assert!(a <= b, "ordered by customer");
            if a == b {
                prop_assert_eq!(rank.value(row), rank.value(row - 1) + 1);
                prop_assert!(priority.value(row) <= priority.value(row - 1));
            } else {
                prop_assert_eq!(rank.value(row), 1);
            }
            prop_assert!(rank.value(row) as usize <= case.max_per_customer);
        }
        // Funnel: per action, candidate = every drop + everything kept at the end of scoring.
        let f = &decided.funnel;
        let stage = f.column(0).as_string::<i32>();
        let count = f.column(2).as_primitive::<Int64Type>();
        let total = |name: &str| -> i64 {
            (0..f.num_rows()).filter(|&r| stage.value(r) == name).map(|r| count.value(r)).sum()
        };
        let customers = case.ids.len() as i64;
        prop_assert_eq!(total("candidate"), customers * case.actions.len() as i64);
        prop_assert_eq!(total("selected"), d.num_rows() as i64);
        prop_assert_eq!(
            total("contactable"),
            total("candidate") - total("inactive") - total("ineligible")
                - total("no_address") - total("opted_out") - total("do_not_contact")
        );
    }
}

#[test]
fn empty_input_gives_empty_tables_with_the_schema() {
    let case = Case {
        ids: vec![],
        emails: vec![],
        opt_out: vec![],
        actions: vec![(1.0, true, Some(0.5))],
        matrix: vec![],
        max_per_customer: 1,
    };
    let decided = run(&case, 1, 10);
    assert_eq!(decided.decisions.num_rows(), 0);
    assert_eq!(
        decided.decisions.schema(),
        nba_core::decisions_schema(nba_core::ids::IdKind::Int)
    );
}
