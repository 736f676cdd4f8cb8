//! Throughput of the comparison workload (three maps and a filter, summed) through
//! weir, for several edge capacities, next to the fused-iterator baseline.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::prelude::*;
use weir_benches::workload::{keep, map_step, reference_checksum, sum_step};

const ELEMENTS: u64 = 1_000_000;

fn throughput(c: &mut Criterion) {
    let rt = Runtime::builder().arbiters(1).build().expect("runtime");
    let expected = reference_checksum(ELEMENTS);
    let mut group = c.benchmark_group("pipeline_throughput");
    group.throughput(Throughput::Elements(ELEMENTS));
    group.sample_size(20);
    group.bench_function("fused_iterator", |b| {
        b.iter(|| {
            let sum = (0..ELEMENTS)
                .map(|x| map_step(3, map_step(2, map_step(1, x))))
                .filter(|x| keep(*x))
                .fold(0, sum_step);
            assert_eq!(sum, expected);
        });
    });
    for capacity in [64, 256, 1024, 4096] {
        group.bench_with_input(
            BenchmarkId::new("weir", capacity),
            &capacity,
            |b, &capacity| {
                b.iter(|| {
                    let done = Pipeline::from_iter(0..ELEMENTS)
                        .map(|x| map_step(1, x))
                        .map(|x| map_step(2, x))
                        .map(|x| map_step(3, x))
                        .filter(|x| keep(*x))
                        .fold(0_u64, sum_step)
                        .default_capacity(capacity)
                        .run(&rt)
                        .expect("run")
                        .wait()
                        .expect("completion");
                    assert_eq!(done.output, expected);
                });
            },
        );
    }
    group.finish();
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, throughput);
}
criterion_main!(group::benches);
