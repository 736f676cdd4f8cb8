//! The Prometheus endpoint (`weir::prometheus::serve`): scraped over HTTP while a
//! pipeline runs, its exposition text has every stage's series.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use weir::prelude::*;

/// A free port on loopback.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET /metrics`, returning the body (empty while the listener is not up yet).
fn scrape(addr: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample of `name` whose labels include every `(key, value)`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_scrape_during_a_run_has_every_stages_series() {
    let addr = free_addr();
    weir::prometheus::serve(addr).unwrap();
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let running = flow
        .map(|x| x + 1)
        .name("plus-one")
        .filter(|x| x % 2 == 0)
        .name("evens")
        .for_each(|_| {})
        .named("scraped")
        .metrics_interval(Duration::from_millis(10))
        .run(&rt)
        .unwrap();
    for x in 0..1_000 {
        futures::executor::block_on(ingress.send(x)).unwrap();
    }
    // While it runs: the counters reach what went through.
    let start = Instant::now();
    let text = loop {
        let text = scrape(addr);
        let done = sample(
            &text,
            "weir_stage_completed_total",
            &[("pipeline", "scraped"), ("stage", "plus-one")],
        );
        if done == Some(1_000.0) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "last scrape:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!running.controller().is_finished());
    let evens = [("pipeline", "scraped"), ("stage", "evens")];
    assert_eq!(
        sample(&text, "weir_stage_filtered_total", &evens),
        Some(500.0)
    );
    assert_eq!(
        sample(&text, "weir_stage_received_total", &evens),
        Some(1_000.0)
    );
    for gauge in [
        "weir_stage_in_flight",
        "weir_stage_credit",
        "weir_stage_breaker_state",
    ] {
        assert!(
            sample(&text, gauge, &evens).is_some(),
            "{gauge} missing:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "weir_pipeline_health", &[("pipeline", "scraped")]),
        Some(0.0)
    );
    assert!(text.contains("weir_stage_batch_size"), "{text}");
    drop(ingress);
    running.wait().unwrap().report.check_conservation().unwrap();

    // A second endpoint cannot be installed: a clear error, naming the address.
    let err = weir::prometheus::serve(free_addr()).unwrap_err();
    assert!(
        err.to_string().contains("cannot serve Prometheus metrics"),
        "{err}"
    );
    assert!(
        matches!(err, weir::prometheus::ServeError::Install { .. }),
        "{err:?}"
    );
    let source = std::error::Error::source(&err).expect("the exporter's error");
    assert!(
        source
            .downcast_ref::<weir::prometheus::BuildError>()
            .is_some()
    );
}
