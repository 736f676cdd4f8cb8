//! loom models of weir's hand-written concurrency.
//!
//! Each model in `tests/` includes a source file of a weir crate with
//! `#[path]`, next to a `sync` module that maps the types the file is written
//! against to loom's, and checks an invariant under every interleaving loom
//! explores (`loom::model`). The files themselves depend on nothing but that
//! `sync` module (and plain types of their crate, which the model takes from
//! the crate itself), so the model checks the very code the crate runs.
//!
//! | Model | Source | Invariant |
//! |---|---|---|
//! | `tests/ack_token.rs` | `nats/src/ack_core.rs` | the JetStream message behind an `AckToken` is resolved exactly once, only after every holder decided, with the strongest decision and the longest nak delay |
//! | `tests/ingress_admission.rs` | `operators/src/source/admission.rs` | every element an `Ingress` (or `MergeHub` producer) sender was told was accepted is counted exactly once when the source stops, none is pushed after its count, a refused one never reaches the channel |
//! | `tests/dlq_order.rs` | `supervisor/src/dead_letter/order/engine.rs` | with stages appending and passing a barrier concurrently, a checkpoint's cut holds exactly the letters written before the barrier; every letter is in the file once, each stage's in order |
//! | `tests/hub_attach.rs` | `operators/src/hub/state.rs` | a broadcast-hub subscriber attaching and leaving while the sink publishes is offered exactly what was published meanwhile, in order; `offered = received + dropped + buffered`; each publication is counted once; each buffered copy is charged to the memory budget once and released once |
//! | `tests/memory_budget.rs` | `runtime/src/memory/core.rs` | a source told to wait while a release made room is woken by it (no lost wake-up), as is an `Ingress` sender; concurrent reservations never take more than the room there was; `used` is what was charged minus what was released |
//! | `tests/edge_credit.rs` | `runtime/src/stage/credit.rs` | with the sending stage, the receiving stage and a restart on three threads, the sender never has more elements in flight than the receiver's capacity, credit is neither lost nor duplicated across the restart (no deadlock; `credit + grants in flight + owed = capacity`), and owed places are granted exactly once |
//!
//! `credit.rs` holds no lock or atomic (each count is one actor's), so its
//! model needs no `sync` module: the concurrency is in the mailboxes between
//! the actors, which the model builds from loom's channels.
