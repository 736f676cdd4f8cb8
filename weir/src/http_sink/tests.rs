//! Unit tests of the HTTP sink's pieces: answers classified, excerpts,
//! `Retry-After`, keys, URLs and settings checked at build time. Requests
//! against real servers are in `weir/tests/suite/http_sink.rs`.

use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use weir_operators::Pipeline;
use weir_runtime::{BuildError, Runtime};
use weir_supervisor::ErrorClass;

use super::request::{Builder, Keys, batch_key};
use super::response::{EXCERPT_BYTES, classify, excerpt, retry_after};
use super::stage::parse_url;
use super::{Encoding, HttpSink, HttpSinkExt};

#[test]
fn answers_are_classified_by_status() {
    let class = |code: u16| classify(StatusCode::from_u16(code).unwrap(), None, b"").class;
    for code in [500, 502, 503, 504, 425] {
        assert_eq!(class(code), ErrorClass::Transient, "{code}");
    }
    assert_eq!(class(429), ErrorClass::ResourceExhausted);
    assert_eq!(class(408), ErrorClass::Timeout);
    for code in [400, 401, 403, 404, 409, 413, 422, 301, 304] {
        assert_eq!(class(code), ErrorClass::Permanent, "{code}");
    }
}

#[test]
fn a_rejection_names_the_status_and_a_bounded_excerpt() {
    let r = classify(StatusCode::BAD_REQUEST, None, b"{\"error\":\"no\"}\r\n");
    assert_eq!(r.message, "HTTP 400 Bad Request: {\"error\":\"no\"}");
    let long = "é".repeat(EXCERPT_BYTES);
    let cut = excerpt(long.as_bytes());
    assert!(cut.ends_with('…'), "{cut}");
    assert!(cut.len() <= EXCERPT_BYTES + '…'.len_utf8());
    assert!(!cut.contains('\u{fffd}'), "no half character: {cut}");
    assert_eq!(excerpt(b"a\nb\x00c"), "a b c");
    assert_eq!(
        classify(StatusCode::NOT_FOUND, None, b"").message,
        "HTTP 404 Not Found"
    );
}

#[test]
fn retry_after_is_seconds_or_a_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        retry_after(&h, now)
    };
    assert_eq!(with("7"), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(with(&later), Some(Duration::from_secs(30)));
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(with(&earlier), Some(Duration::ZERO));
    assert_eq!(with("soon"), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn keys_are_stable_and_batches_hash_theirs() {
    let keys = Keys::<u64>::sequence();
    assert_eq!(
        keys.of(&5, 3),
        keys.of(&9, 3),
        "sequence keys follow the index"
    );
    assert_ne!(keys.of(&5, 3), keys.of(&5, 4));
    let other = Keys::<u64>::sequence();
    assert_ne!(keys.of(&5, 3), other.of(&5, 3), "each sink has its own run");
    let ab = batch_key(&["a".into(), "b".into()]);
    assert_eq!(ab, batch_key(&["a".into(), "b".into()]));
    assert_ne!(ab, batch_key(&["b".into(), "a".into()]));
    assert!(ab.starts_with("batch-2-"), "{ab}");
    assert_eq!(batch_key(&["only".into()]), "only");
}

#[test]
fn an_element_with_an_invalid_key_is_refused_alone() {
    let keys = Keys::<String>::With(std::sync::Arc::new(|s: &String| s.clone()));
    let mut b = Builder::new(Encoding::Ndjson { max_batch: 8 }, Some(&keys));
    b.push("ok".to_owned(), 0).unwrap();
    let (back, why) = b.push("bad\nkey".to_owned(), 1).unwrap_err();
    assert_eq!(back, "bad\nkey");
    assert!(why.contains("idempotency key"), "{why}");
    b.push("fine".to_owned(), 2).unwrap();
    let batch = b.finish();
    assert_eq!(&batch.body[..], b"\"ok\"\n\"fine\"\n");
    assert_eq!(batch.elements.len(), 2);
    assert!(batch.key.is_some());
}

#[test]
fn urls_must_be_http_or_https_with_a_host() {
    assert!(parse_url("http://127.0.0.1:8080/hook").is_ok());
    assert!(parse_url("http://example.com").is_ok());
    #[cfg(feature = "https")]
    assert!(parse_url("https://example.com/").is_ok());
    #[cfg(not(feature = "https"))]
    assert!(
        parse_url("https://example.com/")
            .unwrap_err()
            .contains("`https` feature")
    );
    assert!(parse_url("https:///no-host").is_err());
    assert!(parse_url("ftp://example.com/").is_err());
    assert!(parse_url("/just/a/path").is_err());
    assert!(parse_url("not a url").is_err());
}

#[test]
fn bad_settings_are_build_errors_naming_the_stage() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let cases: Vec<(HttpSink<u64>, &str)> = vec![
        (HttpSink::post("ftp://x/"), "not an http:// or https:// URL"),
        (
            HttpSink::post("http://x/").max_in_flight(0),
            "max_in_flight",
        ),
        (HttpSink::post("http://x/").ndjson(0), "max_batch"),
        (
            HttpSink::post("http://x/").timeout(Duration::ZERO),
            "timeout",
        ),
        (
            HttpSink::post("http://x/").header("bad name", "v"),
            "header",
        ),
        (
            HttpSink::post("http://x/").idempotency_key("a b"),
            "idempotency",
        ),
    ];
    for (sink, word) in cases {
        let err = Pipeline::from_iter(0..1_u64)
            .to_http(sink)
            .name("hook")
            .run(&rt)
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, message } if stage == "hook" && message.contains(word)),
            "{word}: {err:?}"
        );
    }
}

#[test]
fn the_token_stays_out_of_debug_output() {
    let sink = HttpSink::<u64>::post("http://x/").bearer_token("s3cret");
    let shown = format!("{sink:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("authorization"), "{shown}");
}
