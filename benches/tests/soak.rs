//! The soak run for 20 seconds (its own test binary, so that no other test's
//! memory is sampled): after a 5-second warm-up neither the resident memory nor
//! the open file descriptors grow by more than 5 %, and every kind of chaos
//! (restarts, skipped panics, hub subscribers, reconfigurations, checkpoints)
//! happened. The 10-minute run is `cargo run --release -p weir-benches --bin soak`.

use std::time::Duration;

use weir_benches::soak::{self, SoakConfig};

#[test]
fn twenty_seconds_of_chaos_grow_neither_memory_nor_descriptors() {
    let mut config = SoakConfig::new(Duration::from_secs(20));
    config.warmup = Duration::from_secs(5);
    let report = soak::run(&config).unwrap();
    eprintln!(
        "soak: {} samples, rss {:+.2} %, fds {:+.2} %, {} restarts, {} skipped, {} subscribers, \
         {} reconfigurations, {} checkpoints, {} + {} elements",
        report.samples.len(),
        report.rss_growth * 100.0,
        report.fd_growth * 100.0,
        report.restarts,
        report.skipped,
        report.subscribers,
        report.reconfigurations,
        report.checkpoints,
        report.checkpointed_elements,
        report.hub_elements
    );
    assert!(report.samples.len() >= 12, "{:?}", report.samples);
    report.check(&config).unwrap();
}
