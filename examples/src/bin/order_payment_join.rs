//! Orders joined with their payments: an event-time interval join (left-outer),
//! then revenue per customer with keyed state.
//!
//! ```text
//!  orders   ─┐                               ┌─ joined ──► key_by(customer).fold ──► revenue
//!            ├─► interval_join (left-outer) ─┤    (paid and unpaid orders)
//!  payments ─┘   payment within 30 min       └─ unmatched ──► collect ──► orphan payments
//! ```
//!
//! A payment settles an order when it carries the order's id and comes 0–30
//! minutes (event time) after it. Each order ends exactly once on the joined
//! output: `Paid` with its payment, or `Unpaid` once the payments' watermark has
//! passed its 30-minute window. Payments that settle no order — for an unknown
//! order, or too late — leave on the side output. The example checks every count
//! and every customer's revenue against a plain loop over the same data.
//!
//! Run it with `cargo run --release -p weir-examples --bin order_payment_join`.

use std::collections::BTreeMap;
use weir_examples::outln;

use weir::prelude::*;

/// Orders placed, one every 10 s of event time.
const ORDERS: u32 = 5_000;
/// The payment window after an order, in seconds.
const WINDOW_S: i64 = 30 * 60;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
    customer: u32,
    amount: u64,
    ts: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Payment {
    order: u32,
    ts: i64,
}

/// What the join says about an order.
#[derive(Debug)]
enum Settled {
    Paid { customer: u32, amount: u64 },
    Unpaid,
}

fn orders() -> Vec<Order> {
    (0..ORDERS)
        .map(|i| Order {
            id: i,
            customer: i % 7,
            amount: 10 + u64::from(i % 50),
            ts: i64::from(i) * 10,
        })
        .collect()
}

/// Every order is paid 0–4 minutes after it, except every 10th (never paid) and
/// every 25th (paid an hour late); plus payments for 20 unknown orders. Sorted
/// by time, as a payment provider would deliver them.
fn payments(orders: &[Order]) -> Vec<Payment> {
    let mut p: Vec<Payment> = orders
        .iter()
        .filter(|o| o.id % 10 != 3)
        .map(|o| {
            let delay = if o.id % 25 == 7 {
                3_600
            } else {
                i64::from(o.id % 5) * 60
            };
            Payment {
                order: o.id,
                ts: o.ts + delay,
            }
        })
        .collect();
    p.extend((0..20).map(|k| Payment {
        order: 1_000_000 + k,
        ts: i64::from(k) * 2_000,
    }));
    p.sort_by_key(|p| p.ts);
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;
    let (orders, payments) = (orders(), payments(&orders()));

    let counters = JoinCounters::new();
    let join = IntervalJoin::left_outer(
        |o: &Order| o.id,
        |p: &Payment| p.order,
        |o, p: Option<&Payment>| match p {
            Some(_) => Settled::Paid {
                customer: o.customer,
                amount: o.amount,
            },
            None => Settled::Unpaid,
        },
    )
    .event_time(|o| o.ts, |p| p.ts, 0, WINDOW_S)
    .out_of_orderness(60)
    .name("settle")
    .counters(&counters);

    let mut g = Graph::new();
    let o = g.source(Pipeline::from_iter(orders.clone()));
    let p = g.source(Pipeline::from_iter(payments.clone()));
    let JoinOutlets { joined, unmatched } = g.interval_join(o, p, join);
    let per_customer = g.sink(joined, |f| {
        f.key_by(|s: &Settled| match s {
            Settled::Paid { customer, .. } => Some(*customer),
            Settled::Unpaid => None,
        })
        .fold((0_u64, 0_u64), |(n, revenue): &mut (u64, u64), s| {
            *n += 1;
            if let Settled::Paid { amount, .. } = s {
                *revenue += amount;
            }
        })
        .name("revenue")
        .collect()
    });
    let orphans = g.sink(unmatched, |f| f.collect());
    let done = g.run(&rt)?.wait()?;
    done.report.check_conservation()?;
    let per_customer: BTreeMap<Option<u32>, (u64, u64)> = futures::executor::block_on(per_customer)
        .ok_or("no revenue")?
        .into_iter()
        .collect();
    let orphans = futures::executor::block_on(orphans).ok_or("no orphans")?;

    // What a plain loop over the same data says.
    let mut want: BTreeMap<Option<u32>, (u64, u64)> = BTreeMap::new();
    for o in &orders {
        let paid = payments
            .iter()
            .any(|p| p.order == o.id && (0..=WINDOW_S).contains(&(p.ts - o.ts)));
        let entry = want.entry(paid.then_some(o.customer)).or_default();
        entry.0 += 1;
        if paid {
            entry.1 += o.amount;
        }
    }
    let paid_orders: u64 = want
        .iter()
        .filter(|(k, _)| k.is_some())
        .map(|(_, v)| v.0)
        .sum();
    let unpaid = want.get(&None).map_or(0, |v| v.0);
    let orphan_payments = payments.len() as u64 - paid_orders;

    outln!("{} orders, {} payments", orders.len(), payments.len());
    outln!("paid: {} orders, unpaid: {unpaid}", counters.joined());
    outln!("orphan payments (side output): {}", orphans.len());
    for (customer, (n, revenue)) in &per_customer {
        match customer {
            Some(c) => outln!("  customer {c}: {n} paid orders, revenue {revenue}"),
            None => outln!("  unpaid orders: {n}"),
        }
    }
    let settle = done.report.stage("settle").ok_or("no settle stage")?;
    outln!(
        "join stage: {} rows in, peak {} rows held, {} unmatched orders, {} unmatched payments",
        settle.completed,
        counters.peak_rows(),
        counters.unmatched_left(),
        counters.unmatched_right()
    );

    assert_eq!(per_customer, want, "revenue per customer");
    assert_eq!(counters.joined(), paid_orders);
    assert_eq!(
        counters.unmatched_left(),
        unpaid,
        "each unpaid order emitted once"
    );
    assert_eq!(orphans.len() as u64, orphan_payments);
    assert_eq!(counters.unmatched_right(), orphan_payments);
    assert_eq!(counters.late(), 0);
    assert_eq!(settle.completed, (orders.len() + payments.len()) as u64);
    assert!(
        counters.peak_rows() < 2_000,
        "the watermarks keep the state to about one window of rows"
    );
    outln!("all checks passed");
    Ok(())
}
