//! Round trip of a single element through four stages at idle (ingress → three
//! maps and a filter → egress), pinging from a task on the pipeline's arbiter.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use weir_benches::weir_variant;

fn idle_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle_latency");
    group.sample_size(20);
    group.bench_function("four_stages_round_trip", |b| {
        b.iter_custom(|iters| {
            let samples = weir_variant::latency(iters as usize).expect("latency run");
            samples.iter().sum::<Duration>()
        });
    });
    group.bench_function("runtime_start_and_pipeline_spawn", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                weir_variant::run(1).expect("run");
            }
            start.elapsed()
        });
    });
    group.finish();
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, idle_latency);
}
criterion_main!(group::benches);
