//! loom models of weir's hand-written concurrency.
//!
//! Each model in `tests/` includes a source file of a weir crate with
//! `#[path]`, next to a `sync` module that maps the types the file is written
//! against to loom's, and checks an invariant under every interleaving loom
//! explores (`loom::model`). The files themselves depend on nothing but that
//! `sync` module, so the model checks the very code the crate runs.
//!
//! | Model | Source | Invariant |
//! |---|---|---|
//! | `tests/ack_token.rs` | `nats/src/ack_core.rs` | the JetStream message behind an `AckToken` is resolved exactly once, only after every holder decided, with the strongest decision and the longest nak delay |
