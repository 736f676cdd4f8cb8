//! Loading policy files: the example file, inheritance, and an error for every way a
//! file can be wrong.

use std::io::Write as _;
use std::time::Duration;

use super::*;
use crate::ErrorClass;
use crate::policy::{Action, BreakerConfig, OpenBehavior, RestartType, Trip, WhenDeadLettersFull};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/config/restart-policy.toml"
);

fn err(text: &str) -> ConfigError {
    PolicyConfig::from_toml_str(text).expect_err("the text should be rejected")
}

/// Asserts a [`ConfigError::Parse`] at `key`, line `line`, whose message contains
/// `needle`.
fn assert_parse(text: &str, key: &str, line: usize, needle: &str) {
    match err(text) {
        ConfigError::Parse {
            key: Some(found),
            line: Some(found_line),
            column: Some(_),
            message,
            ..
        } => {
            assert_eq!(found, key, "{text}");
            assert_eq!(found_line, line, "{text}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("expected a parse error at {key}, got {other:?}"),
    }
}

fn assert_invalid(text: &str, expected: &str) {
    let error = err(text);
    assert!(matches!(error, ConfigError::Invalid { .. }), "{error:?}");
    assert_eq!(error.to_string(), expected);
}

#[test]
fn the_example_file_loads() {
    let config = PolicyConfig::from_file(EXAMPLE).expect("the example file is valid");
    assert_eq!(config.strategy(), RestartStrategy::OneForOne);
    assert_eq!(
        config.stage_names().collect::<Vec<_>>(),
        ["enrich", "parse"]
    );
    config
        .check_stage_names(["source", "parse", "enrich", "sink"])
        .unwrap();

    let default = config.default_policy();
    assert_eq!(default.max_attempts, 3);
    assert_eq!(default.stall_timeout, Some(Duration::from_secs(30)));
    assert_eq!(default.intensity.max_restarts, 10);
    assert!(default.breaker.is_none());

    let parse = config.for_stage("parse");
    assert_eq!(parse.max_attempts, 2);
    assert_eq!(parse.actions.panic, Action::DeadLetter);
    assert_eq!(parse.actions.transient, Action::Retry, "inherited");
    assert_eq!(parse.stall_timeout, default.stall_timeout, "inherited");

    let enrich = config.for_stage("enrich");
    assert_eq!(enrich.max_attempts, 5);
    assert_eq!(enrich.element_timeout, Some(Duration::from_secs(2)));
    assert_eq!(enrich.backoff.initial, Duration::from_millis(200));
    assert_eq!(enrich.backoff.multiplier, 2.0);
    let breaker = enrich.breaker.expect("enrich has a breaker");
    assert_eq!(
        breaker.trip,
        Trip::Rate {
            failures: 10,
            within: Duration::from_secs(30),
            min_calls: 20
        }
    );
    assert_eq!(breaker.cooldown, Duration::from_secs(15));
    assert_eq!(breaker.when_open, OpenBehavior::Backpressure);

    assert_eq!(config.for_stage("sink"), *default);
}

#[test]
fn an_empty_file_is_the_default() {
    let config = PolicyConfig::from_toml_str("").unwrap();
    assert_eq!(config, PolicyConfig::default());
    assert_eq!(config.stage_names().count(), 0);
}

#[test]
fn stage_tables_inherit_from_default_key_by_key() {
    let config = PolicyConfig::from_toml_str(
        r#"
        strategy = "one_for_all"
        [default]
        restart = "permanent"
        backoff = { initial_ms = 10, max_ms = 1000, jitter = 0.0 }
        breaker = { trip = { consecutive = 3 }, cooldown_ms = 1000 }
        [stages.a]
        backoff = { multiplier = 3.0 }
        breaker = { probes = 2 }
        [stages.b]
        breaker = { enabled = false }
        restart = "temporary"
        "#,
    )
    .unwrap();
    assert_eq!(config.strategy(), RestartStrategy::OneForAll);
    let a = config.for_stage("a");
    assert_eq!(a.restart, RestartType::Permanent);
    assert_eq!(a.backoff.initial, Duration::from_millis(10));
    assert_eq!(a.backoff.multiplier, 3.0);
    assert_eq!(a.backoff.jitter, 0.0);
    assert_eq!(
        a.breaker,
        Some(BreakerConfig::new(Trip::Consecutive(3), Duration::from_secs(1)).probes(2))
    );
    let b = config.for_stage("b");
    assert_eq!(b.breaker, None);
    assert_eq!(b.restart, RestartType::Temporary);
    assert_eq!(b.decide(ErrorClass::Panic, 1), Action::DeadLetter);
}

#[test]
fn timeouts_of_zero_switch_off_an_inherited_timeout() {
    let config = PolicyConfig::from_toml_str(
        "[default]\nelement_timeout_ms = 500\n[stages.slow]\nelement_timeout_ms = 0\n",
    )
    .unwrap();
    assert_eq!(
        config.default_policy().element_timeout,
        Some(Duration::from_millis(500))
    );
    assert_eq!(config.for_stage("slow").element_timeout, None);
}

#[test]
fn a_full_dead_letter_queue_can_backpressure() {
    let config = PolicyConfig::from_toml_str(
        "[default]\ndead_letters_full = \"backpressure\"\ndead_letters_retry_ms = 250\n\
         [stages.strict]\ndead_letters_full = \"escalate\"\n",
    )
    .unwrap();
    let default = config.default_policy();
    assert_eq!(default.dead_letters_full, WhenDeadLettersFull::Backpressure);
    assert_eq!(default.dead_letters_retry, Duration::from_millis(250));
    let strict = config.for_stage("strict");
    assert_eq!(strict.dead_letters_full, WhenDeadLettersFull::Escalate);
    assert_eq!(strict.dead_letters_retry, Duration::from_millis(250));
    let err = PolicyConfig::from_toml_str("[stages.x]\ndead_letters_retry_ms = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "stages.x.dead_letters_retry_ms: must be greater than 0"
    );
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    assert_parse(
        "[stages.parse]\nmax_attemps = 3\n",
        "stages.parse.max_attemps",
        2,
        "unknown field `max_attemps`",
    );
    assert_parse(
        "stratgy = \"one_for_one\"\n",
        "stratgy",
        1,
        "unknown field `stratgy`",
    );
    assert_parse(
        "[defaults]\nmax_attempts = 3\n",
        "defaults",
        1,
        "unknown field `defaults`",
    );
    assert_parse(
        "[stages.enrich.backoff]\ninitial = 5\n",
        "stages.enrich.backoff.initial",
        2,
        "unknown field `initial`",
    );
    assert_parse(
        "[default]\nbreaker = { trip = { rate = { failures = 1, within = 5 } } }\n",
        "default.breaker.trip.rate.within",
        2,
        "unknown field `within`",
    );
}

#[test]
fn wrong_types_and_names_are_named_with_their_path() {
    assert_parse(
        "[stages.parse]\nmax_attempts = \"three\"\n",
        "stages.parse.max_attempts",
        2,
        "invalid type",
    );
    assert_parse(
        "[stages.parse]\nmax_attempts = -1\n",
        "stages.parse.max_attempts",
        2,
        "-1",
    );
    assert_parse(
        "[default.actions]\npanic = \"reboot\"\n",
        "default.actions.panic",
        2,
        "unknown variant `reboot`",
    );
    assert_parse(
        "strategy = \"one_for_some\"\n",
        "strategy",
        1,
        "unknown variant `one_for_some`",
    );
    assert_parse(
        "[default]\nrestart = \"sometimes\"\n",
        "default.restart",
        2,
        "unknown variant",
    );
    assert_parse(
        "[default.breaker]\nwhen_open = \"panic\"\n",
        "default.breaker.when_open",
        2,
        "unknown variant",
    );
    assert_parse(
        "[default.breaker]\ntrip = { sometimes = 3 }\n",
        "default.breaker.trip.sometimes",
        2,
        "unknown variant `sometimes`",
    );
    assert_parse(
        "[default.breaker]\ntrip = { rate = { failures = 3 } }\n",
        "default.breaker.trip.rate",
        2,
        "missing field `within_ms`",
    );
}

#[test]
fn syntax_errors_carry_the_position() {
    match err("[default]\nmax_attempts = 3\n[stages.parse\n") {
        ConfigError::Parse {
            key: None,
            line: Some(3),
            column: Some(_),
            message,
            ..
        } => assert!(!message.is_empty()),
        other => panic!("expected a syntax error on line 3, got {other:?}"),
    }
    let text = err("a = = 1").to_string();
    assert!(text.starts_with("invalid TOML: "), "{text}");
    assert!(text.contains("(line 1, column"), "{text}");
}

#[test]
fn out_of_range_values_are_named_with_their_path() {
    assert_invalid(
        "[stages.parse]\nmax_attempts = 0\n",
        "stages.parse.max_attempts: must be at least 1",
    );
    assert_invalid(
        "[default.backoff]\nmultiplier = 0.5\n",
        "default.backoff.multiplier: must be >= 1.0",
    );
    assert_invalid(
        "[default.restart_backoff]\njitter = 1.5\n",
        "default.restart_backoff.jitter: must be between 0.0 and 1.0 (the fraction of each \
         delay that is random)",
    );
    assert_invalid(
        "[default.backoff]\nmax_ms = 100\n[stages.slow.backoff]\ninitial_ms = 500\n",
        "stages.slow.backoff.initial_ms: must not exceed max_ms (500 ms > 100 ms)",
    );
    assert_invalid(
        "[stages.parse.actions]\non_exhausted = \"retry\"\n",
        "stages.parse.actions.on_exhausted: must be dead_letter, skip or escalate, not retry \
         (the element has no attempts left)",
    );
    assert_invalid(
        "[default.intensity]\nwithin_ms = 0\n",
        "default.intensity.within_ms: must be greater than 0",
    );
    assert_invalid(
        "[stages.enrich.breaker]\ntrip = { consecutive = 0 }\n",
        "stages.enrich.breaker.trip.consecutive: must be at least 1",
    );
    assert_invalid(
        "[stages.enrich.breaker]\ntrip = { rate = { failures = 2, within_ms = 0 } }\n",
        "stages.enrich.breaker.trip.rate.within_ms: must be greater than 0",
    );
    assert_invalid(
        "[stages.enrich.breaker]\nprobes = 0\n",
        "stages.enrich.breaker.probes: must be at least 1",
    );
    assert_invalid(
        "[stages.enrich.breaker]\nenabled = false\ncooldown_ms = 5\n",
        "stages.enrich.breaker.enabled: is false, so the other breaker keys have no effect; \
         remove them",
    );
    assert_invalid(
        "[stages.\"a.b\"]\nmax_attempts = 0\n",
        "stages.\"a.b\".max_attempts: must be at least 1",
    );
}

#[test]
fn an_invalid_default_is_reported_at_the_default() {
    // Every stage inherits the bad value; the error names where it was written.
    assert_invalid(
        "[default]\nmax_attempts = 0\n[stages.parse]\nrestart = \"permanent\"\n",
        "default.max_attempts: must be at least 1",
    );
}

#[test]
fn files_that_cannot_be_read_name_the_path() {
    let missing = std::env::temp_dir().join("weir-no-such-policy-file.toml");
    match PolicyConfig::from_file(&missing).unwrap_err() {
        ConfigError::Io { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[stages.parse]\nmax_attempts = 0").unwrap();
    let error = PolicyConfig::from_file(file.path()).unwrap_err();
    assert_eq!(error.key(), Some("stages.parse.max_attempts"));
}

#[test]
fn in_code_configs_validate_and_check_names() {
    let config = PolicyConfig::new(SupervisionPolicy::default())
        .with_strategy(RestartStrategy::RestForOne)
        .with_stage("parse", SupervisionPolicy::default().max_attempts(0));
    assert_eq!(config.strategy(), RestartStrategy::RestForOne);
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "stages.parse.max_attempts: must be at least 1"
    );
    assert!(config.check_stage_names(["parse"]).is_ok());
    assert_eq!(
        config.check_stage_names(["source"]).unwrap_err().key(),
        Some("stages.parse")
    );
    let bad_default = PolicyConfig::new(SupervisionPolicy::default().max_attempts(0));
    assert_eq!(
        bad_default.validate().unwrap_err().key(),
        Some("default.max_attempts")
    );
}
