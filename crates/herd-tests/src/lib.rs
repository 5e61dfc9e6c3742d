//! Support for herd's integration tests; see `src/bin/fixture.rs` and `tests/`.
