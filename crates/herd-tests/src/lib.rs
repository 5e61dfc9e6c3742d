//! Support for herd's integration tests; see `src/bin/fixture/main.rs` and
//! `tests/`. The test programs' few raw-descriptor operations (a worker
//! misbehaving on its channel on purpose) are in [`sys`], the one module
//! allowed `unsafe`.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod sys;
