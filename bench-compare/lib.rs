//! Nothing here: the comparison is the `compare` bench (`benches/compare.rs`).
