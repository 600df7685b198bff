//! Fuzz the table with operation sequences decoded from the input bytes.
//!
//! Same operations and the same checked interpreter as the property test
//! (`tests/ops/mod.rs`): after every step `len`, `contains`, the kernel's view
//! of every number, released files and walk visit sets are compared with a
//! plain model; any mismatch panics, which libFuzzer reports as a crash.
//! See `fuzz/README.md`.
#![no_main]

#[path = "../../tests/ops/mod.rs"]
mod ops;

use fdtable::FdTable;
use libfuzzer_sys::fuzz_target;
use ops::{Harness, Op};

/// Longest top-level sequence and deepest walk nesting decoded.
const MAX_OPS: usize = 64;
const MAX_DEPTH: usize = 3;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// One operation: the low bits of a byte pick it, the next byte (if the
    /// operation takes one) is its index.
    fn op(&mut self, depth: usize) -> Option<Op> {
        let code = self.byte()?;
        let index = |me: &mut Self| usize::from(me.byte().unwrap_or(0));
        Some(match code % 17 {
            0 | 1 => Op::TrackPipe,
            2 => Op::TrackSocket,
            3 => Op::TrackFile,
            4 => Op::TrackDuplicate(index(self)),
            5 => Op::Close(index(self)),
            6 => Op::Drop(index(self)),
            7 => Op::IntoInner(index(self)),
            8 => Op::DropReturned(index(self)),
            9 => Op::CloseVisited,
            10 => Op::DropVisited,
            11 => Op::IntoInnerVisited,
            12 => Op::CloseAll,
            13 if depth < MAX_DEPTH => Op::Walk(self.scripts(depth + 1)),
            13 => Op::CloseAll,
            14 => Op::TryIntoInner(index(self)),
            15 => Op::TryIntoInnerVisited,
            _ => Op::Panic,
        })
    }

    /// A walk's per-visit scripts: a count byte, then for each script a
    /// length byte and that many operations.
    fn scripts(&mut self, depth: usize) -> Vec<Vec<Op>> {
        let count = self.byte().map_or(0, |b| b % 5);
        (0..count)
            .map(|_| {
                let len = self.byte().map_or(0, |b| b % 5);
                (0..len).map_while(|_| self.op(depth)).collect()
            })
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match input.op(0) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    if std::env::var_os("FDTABLE_FUZZ_PRINT").is_some() {
        eprintln!("ops = {ops:?}");
    }
    let table = FdTable::new();
    Harness::run(&table, &ops);
});
