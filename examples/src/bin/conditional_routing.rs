//! Conditional routing: orders routed by predicates, the large ones sharded by key.
//!
//! ```text
//!                         ┌─[0] amount < 10  ──► small   (fold)
//!  orders ──► by_size ────┼─[1] amount < 100 ──► medium  (fold)
//!  (route)                └─[2] default ──► by_customer ─┬─[0] ──► shard0 (fold)
//!                                   (partition_by_key)   ├─[1] ──► shard1 (fold)
//!                                                        ├─[2] ──► shard2 (fold)
//!                                                        └─[3] ──► shard3 (fold)
//! ```
//!
//! `route` sends each order to the first branch whose predicate holds (so an
//! amount of 5 goes to `small`, not `medium`, though both predicates hold), and to
//! the last, default branch when none does. `partition_by_key` sends each large
//! order to one of four shards by the hash of its customer: all orders of one
//! customer land on the same shard, so each shard can keep per-customer state of
//! its own. Every branch sums its orders; the program checks the sums against a
//! plain sequential computation and prints the per-port counts of both junctions.
//!
//! Run it with `cargo run --release -p weir-examples --bin conditional_routing`.

use std::collections::BTreeSet;
use weir_examples::outln;

use weir::prelude::*;
use weir_examples::{print_ports, stage};

/// Orders sent through the graph.
const ORDERS: u64 = 50_000;
/// Distinct customers.
const CUSTOMERS: u64 = 40;

#[derive(Debug, Clone, Copy)]
struct Order {
    customer: u64,
    /// In cents, 0..1000.
    amount: u64,
}

fn order(id: u64) -> Order {
    Order {
        customer: id % CUSTOMERS,
        amount: id.wrapping_mul(2_654_435_761) % 1_000,
    }
}

/// What one branch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Totals {
    orders: u64,
    amount: u64,
    smallest: Option<u64>,
    largest: Option<u64>,
    customers: BTreeSet<u64>,
}

fn add(mut t: Totals, o: Order) -> Totals {
    t.orders += 1;
    t.amount += o.amount;
    t.smallest = Some(t.smallest.map_or(o.amount, |s| s.min(o.amount)));
    t.largest = Some(t.largest.map_or(o.amount, |l| l.max(o.amount)));
    t.customers.insert(o.customer);
    t
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;

    let mut g = Graph::new();
    g.named("conditional_routing");
    let orders = g.source(Pipeline::from_iter((0..ORDERS).map(order)).name("orders"));
    let [small, medium, large] = g.route(
        orders,
        vec![
            Box::new(|o: &Order| o.amount < 10),
            Box::new(|o: &Order| o.amount < 100),
        ],
    );
    g.name_stage(small, "by_size");
    let small = g.sink(small, |f| f.fold(Totals::default(), add).name("small"));
    let medium = g.sink(medium, |f| f.fold(Totals::default(), add).name("medium"));

    let shards: [Outlet<Order>; 4] = g.partition_by_key(large, |o: &Order| o.customer);
    g.name_stage(shards[0], "by_customer");
    let shards: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(i, shard)| {
            g.sink(shard, move |f| {
                f.fold(Totals::default(), add).name(format!("shard{i}"))
            })
        })
        .collect();

    let done = g.run(&rt)?.wait()?;
    let report = &done.report;
    report.check_conservation()?;
    let small = futures::executor::block_on(small).ok_or("no result from `small`")?;
    let medium = futures::executor::block_on(medium).ok_or("no result from `medium`")?;
    let shards: Vec<Totals> = shards
        .into_iter()
        .map(|rx| futures::executor::block_on(rx).ok_or("no result from a shard"))
        .collect::<Result<_, _>>()?;

    outln!("{report}");
    let by_size = stage(report, "by_size")?;
    let by_customer = stage(report, "by_customer")?;
    outln!("per-branch counts of `by_size` (route: < 10, < 100, default):");
    print_ports(by_size);
    outln!("per-branch counts of `by_customer` (partition_by_key, 4 shards):");
    print_ports(by_customer);
    outln!();
    for (name, t) in [("small", &small), ("medium", &medium)] {
        let (lo, hi) = (
            t.smallest.unwrap_or_default(),
            t.largest.unwrap_or_default(),
        );
        outln!(
            "{name:<7} {:>6} orders, {:>9} cents, amounts {lo}..={hi}",
            t.orders,
            t.amount
        );
    }
    for (i, t) in shards.iter().enumerate() {
        outln!(
            "shard{i}  {:>6} orders, {:>9} cents, customers {:?}",
            t.orders,
            t.amount,
            t.customers
        );
    }

    // The same computation, sequentially.
    let expect = |keep: &dyn Fn(&Order) -> bool| {
        (0..ORDERS)
            .map(order)
            .filter(|o| keep(o))
            .fold(Totals::default(), add)
    };
    let want_small = expect(&|o| o.amount < 10);
    let want_medium = expect(&|o| (10..100).contains(&o.amount));
    let want_large = expect(&|o| o.amount >= 100);
    assert_eq!(small, want_small);
    assert_eq!(medium, want_medium);
    // The first matching predicate wins: `medium` never sees an amount below 10.
    assert!(medium.smallest >= Some(10));

    // The shards together hold the default branch, and no customer is split.
    let sharded_orders: u64 = shards.iter().map(|t| t.orders).sum();
    let sharded_amount: u64 = shards.iter().map(|t| t.amount).sum();
    assert_eq!(
        (sharded_orders, sharded_amount),
        (want_large.orders, want_large.amount)
    );
    let mut customers = BTreeSet::new();
    for t in &shards {
        for c in &t.customers {
            assert!(customers.insert(*c), "customer {c} is on two shards");
        }
    }
    assert_eq!(customers, want_large.customers);

    // The junctions' ports: what each branch was given and sent; nothing dropped.
    let routed: Vec<u64> = by_size.outputs.iter().map(|p| p.pushed).collect();
    assert_eq!(
        routed,
        [want_small.orders, want_medium.orders, want_large.orders]
    );
    let sharded: Vec<u64> = by_customer.outputs.iter().map(|p| p.pushed).collect();
    let per_shard: Vec<u64> = shards.iter().map(|t| t.orders).collect();
    assert_eq!(sharded, per_shard);
    for port in by_size.outputs.iter().chain(&by_customer.outputs) {
        assert_eq!(port.emitted, port.pushed);
        assert_eq!((port.dropped, port.buffered), (0, 0));
    }
    assert_eq!(by_size.input, ORDERS);
    assert_eq!(by_customer.input, want_large.orders);
    assert_eq!(report.delivered(), ORDERS);
    assert_eq!(report.abandoned(), 0);
    outln!("\nall checks passed");
    Ok(())
}
