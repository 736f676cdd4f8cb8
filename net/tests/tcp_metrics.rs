//! The TCP source's counters reach the `metrics` facade (`weir_tcp_source_*`,
//! labelled with the listening address) as well as its handle's stats.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir_net::frame::{Framing, encode};
use weir_net::tcp::{TcpSourceConfig, listen};
use weir_operators::FlowExt;
use weir_runtime::Runtime;

#[test]
fn frames_bytes_and_connections_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The handles are registered when the source binds: under this recorder.
    let (handle, flow) = metrics::with_local_recorder(&recorder, || {
        listen("127.0.0.1:0", TcpSourceConfig::new(Framing::LengthPrefixed)).unwrap()
    });
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let running = flow
        .map(|frame| frame.bytes.len())
        .collect()
        .run(&rt)
        .unwrap();
    let mut wire = Vec::new();
    for text in ["one", "two", "three"] {
        encode(Framing::LengthPrefixed, 1024, text.as_bytes(), &mut wire).unwrap();
    }
    let mut client = TcpStream::connect(handle.local_addr()).unwrap();
    client.write_all(&wire).unwrap();
    let start = Instant::now();
    while handle.stats().frames < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            handle.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let addr = handle.local_addr().to_string();
    // One snapshot: taking one resets the recorder's counters.
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "addr" && l.value() == addr)
            })
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            })
    };
    assert_eq!(value("weir_tcp_source_frames_total"), Some(3.0));
    let bytes = handle.stats().bytes;
    assert_eq!(bytes, wire.len() as u64);
    assert_eq!(value("weir_tcp_source_bytes_total"), Some(bytes as f64));
    assert_eq!(value("weir_tcp_source_accepted_total"), Some(1.0));
    assert_eq!(value("weir_tcp_source_open_connections"), Some(1.0));
    drop(client);
    handle.close();
    let done = running.wait().unwrap();
    assert_eq!(done.output, [3, 3, 5]);
}
