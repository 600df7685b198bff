//! Random operation sequences on a fresh `FdTable`, checked after every step
//! against a plain model (see `tests/ops/mod.rs` for what is checked: `len`,
//! `contains`, which numbers the kernel has open and what they refer to,
//! which files are released, the visit set of every walk, sentinels).
//!
//! 10 000 cases by default (`PROPTEST_CASES=N` overrides), a few seconds in a
//! debug build. A failure shrinks to a minimal sequence, is persisted in
//! `proptest-regressions/proptest_ops.txt` (replayed first on every run; commit
//! it), and should also be pasted into `tests/regressions.rs` as a plain test.
//!
//! ```sh
//! cargo test --test proptest_ops                   # 10 000 cases
//! PROPTEST_CASES=200000 cargo test --release --test proptest_ops
//! ```

mod ops;

use fdtable::FdTable;
use ops::{Harness, Op};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Index into whatever exists when the step runs (taken modulo the count).
fn index() -> impl Strategy<Value = usize> {
    0usize..8
}

/// Steps that make sense anywhere; `*Visited` and `Panic` do nothing outside
/// a walk.
fn leaf() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::TrackPipe),
        2 => Just(Op::TrackSocket),
        2 => Just(Op::TrackFile),
        1 => index().prop_map(Op::TrackDuplicate),
        2 => index().prop_map(Op::Close),
        2 => index().prop_map(Op::Drop),
        2 => index().prop_map(Op::IntoInner),
        1 => index().prop_map(Op::TryIntoInner),
        1 => index().prop_map(Op::DropReturned),
        2 => Just(Op::CloseVisited),
        2 => Just(Op::DropVisited),
        1 => Just(Op::IntoInnerVisited),
        1 => Just(Op::TryIntoInnerVisited),
        1 => Just(Op::CloseAll),
        1 => Just(Op::Panic),
    ]
}

/// Steps including walks whose callbacks run further steps, nested up to 3
/// walks deep.
fn op() -> impl Strategy<Value = Op> {
    leaf().prop_recursive(3, 48, 4, |inner| {
        prop_oneof![
            3 => leaf(),
            1 => prop::collection::vec(prop::collection::vec(inner, 0..4), 0..5)
                .prop_map(Op::Walk),
        ]
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // `ProptestConfig::default()` already honours PROPTEST_CASES; only
        // raise the built-in default of 256.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptest_ops.txt",
        ))),
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The only test in this binary: the checker needs no other thread
    /// opening descriptors while a sequence runs.
    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..24)) {
        let table = FdTable::new();
        Harness::run(&table, &ops);
    }
}
