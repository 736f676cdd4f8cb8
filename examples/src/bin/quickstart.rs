//! The quickstart: a service-shaped pipeline with a visible result.
//!
//! A bounded ingress takes "orders" pushed by a producer thread; the pipeline parses
//! them, drops invalid ones, prices them with an async lookup (16 in flight, order
//! kept), groups them in chunks of 100 and totals each chunk. The report at the end
//! shows, per stage, where every element went.
//!
//! Run it with `cargo run --release -p weir-examples --bin quickstart`.

use std::time::Duration;
use weir_examples::outln;

use weir::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::new()?;

    let (orders, flow) = Pipeline::ingress::<String>(256);
    let running = flow
        .name("orders")
        .filter_map(|line| parse(&line))
        .name("parse")
        .filter(|order| order.quantity > 0)
        .name("validate")
        .map_async(16, |order| async move {
            // Stands in for a call to a pricing service.
            tokio::time::sleep(Duration::from_micros(50)).await;
            order.quantity * unit_price(&order.sku)
        })
        .name("price")
        .chunks(100)
        .name("batch")
        .map(|prices| prices.iter().sum::<u64>())
        .name("total")
        .collect()
        .name("totals")
        .named("quickstart")
        .run(&rt)?;

    // A service would push from its request handlers; here a thread does.
    let producer = std::thread::spawn(move || {
        futures::executor::block_on(async move {
            for i in 0..10_000_u64 {
                let line = if i % 97 == 0 {
                    format!("broken order {i}")
                } else {
                    format!("{},sku-{},{}", i, i % 7, i % 5)
                };
                // Waits while the pipeline is full: backpressure reaches the producer.
                if orders.send(line).await.is_err() {
                    break;
                }
            }
        });
    });
    producer.join().expect("producer thread");

    // Everything accepted so far is drained, then the pipeline ends.
    let done = futures::executor::block_on(running.shutdown(Duration::from_secs(10)))?;
    let grand_total: u64 = done.output.iter().sum();
    outln!(
        "{} chunks, grand total {} cents\n",
        done.output.len(),
        grand_total
    );
    outln!("{}", done.report);
    done.report.check_conservation()?;
    Ok(())
}

/// Elements are `Clone`: a supervised stage keeps a copy of each until it is processed.
#[derive(Clone)]
struct Order {
    sku: String,
    quantity: u64,
}

fn parse(line: &str) -> Option<Order> {
    let mut fields = line.split(',');
    let _id: u64 = fields.next()?.parse().ok()?;
    let sku = fields.next()?.to_owned();
    let quantity = fields.next()?.parse().ok()?;
    Some(Order { sku, quantity })
}

fn unit_price(sku: &str) -> u64 {
    sku.bytes().map(u64::from).sum::<u64>() % 1000 + 100
}
