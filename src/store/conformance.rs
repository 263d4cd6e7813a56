//! The conformance suite every store passes (see tests/it/store.rs).
