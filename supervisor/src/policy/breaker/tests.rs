//! Every transition of the breaker, then random sequences against its invariants.

use super::*;
use proptest::prelude::*;

const COOLDOWN: Duration = Duration::from_secs(10);

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn consecutive(n: u32) -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(n), COOLDOWN))
}

/// A breaker opened at `t0`.
fn opened(t0: Instant) -> CircuitBreaker {
    let mut breaker = consecutive(1);
    assert_eq!(breaker.on_failure(t0), Some(Transition::Opened));
    breaker
}

/// A breaker half-open at `t0 + COOLDOWN`, no probe in flight.
fn half_open(t0: Instant, probes: u32) -> CircuitBreaker {
    let mut breaker =
        CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(1), COOLDOWN).probes(probes));
    breaker.on_failure(t0);
    assert_eq!(breaker.poll(t0 + COOLDOWN), Some(Transition::HalfOpened));
    breaker
}

// ---- closed ----

#[test]
fn closed_allows_and_stays_closed_on_success() {
    let t0 = Instant::now();
    let mut breaker = consecutive(3);
    for i in 0..100 {
        assert_eq!(breaker.permits(at(t0, i)), Permit::Allow);
        assert_eq!(breaker.on_success(at(t0, i)), None);
        assert_eq!(breaker.poll(at(t0, i)), None);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[test]
fn closed_opens_after_consecutive_failures() {
    let t0 = Instant::now();
    let mut breaker = consecutive(3);
    assert_eq!(breaker.on_failure(at(t0, 0)), None);
    assert_eq!(breaker.on_failure(at(t0, 1)), None);
    assert_eq!(breaker.on_failure(at(t0, 2)), Some(Transition::Opened));
    assert_eq!(
        breaker.state(),
        BreakerState::Open {
            until: at(t0, 2) + COOLDOWN
        }
    );
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let t0 = Instant::now();
    let mut breaker = consecutive(3);
    for _ in 0..10 {
        assert_eq!(breaker.on_failure(t0), None);
        assert_eq!(breaker.on_failure(t0), None);
        assert_eq!(breaker.on_success(t0), None);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[test]
fn rate_trips_on_failures_within_the_window() {
    let t0 = Instant::now();
    let trip = Trip::Rate {
        failures: 3,
        within: Duration::from_secs(1),
        min_calls: 0,
    };
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(trip, COOLDOWN));
    // Failures 600 ms apart never put three in one second.
    for i in 0..20 {
        assert_eq!(breaker.on_failure(at(t0, i * 600)), None, "failure {i}");
    }
    let t1 = at(t0, 100_000);
    assert_eq!(breaker.on_failure(t1), None);
    assert_eq!(
        breaker.on_success(at(t1, 100)),
        None,
        "successes do not reset a rate"
    );
    assert_eq!(breaker.on_failure(at(t1, 500)), None);
    assert_eq!(breaker.on_failure(at(t1, 999)), Some(Transition::Opened));
}

#[test]
fn rate_waits_for_min_calls() {
    let t0 = Instant::now();
    let trip = Trip::Rate {
        failures: 2,
        within: Duration::from_secs(1),
        min_calls: 5,
    };
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(trip, COOLDOWN));
    assert_eq!(breaker.on_failure(at(t0, 0)), None);
    assert_eq!(breaker.on_failure(at(t0, 1)), None);
    assert_eq!(breaker.on_success(at(t0, 2)), None);
    assert_eq!(breaker.on_success(at(t0, 3)), None);
    assert_eq!(
        breaker.on_failure(at(t0, 4)),
        Some(Transition::Opened),
        "5 calls, 3 failures"
    );

    // Calls that left the window do not count towards min_calls.
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(trip, COOLDOWN));
    for i in 0..3 {
        breaker.on_success(at(t0, i));
    }
    assert_eq!(breaker.on_failure(at(t0, 2_000)), None);
    assert_eq!(
        breaker.on_failure(at(t0, 2_001)),
        None,
        "only 2 calls in the window"
    );
    assert!(breaker.calls.len() <= 5 && breaker.failures.len() <= 2);
}

// ---- open ----

#[test]
fn open_rejects_until_the_cooldown_ends() {
    let t0 = Instant::now();
    let mut breaker = opened(t0);
    let until = t0 + COOLDOWN;
    for ms in [0, 1, 5_000, 9_999] {
        assert_eq!(
            breaker.permits(at(t0, ms)),
            Permit::Reject { retry_at: until }
        );
        assert_eq!(breaker.poll(at(t0, ms)), None);
    }
    assert_eq!(breaker.state(), BreakerState::Open { until });
}

#[test]
fn open_ignores_late_outcomes() {
    let t0 = Instant::now();
    let mut breaker = opened(t0);
    let state = breaker.state();
    assert_eq!(breaker.on_failure(at(t0, 5)), None);
    assert_eq!(breaker.on_success(at(t0, 6)), None);
    assert_eq!(breaker.state(), state, "the cooldown is not extended");
}

#[test]
fn open_to_half_open_by_poll() {
    let t0 = Instant::now();
    let mut breaker = opened(t0);
    assert_eq!(breaker.poll(t0 + COOLDOWN), Some(Transition::HalfOpened));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[test]
fn open_to_half_open_by_permits_reports_it_in_the_probe() {
    let t0 = Instant::now();
    let mut breaker = opened(t0);
    let late = t0 + COOLDOWN * 3;
    assert_eq!(breaker.permits(late), Permit::Probe { half_opened: true });
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.poll(late), None, "the transition was reported once");
}

// ---- half-open ----

#[test]
fn half_open_lets_one_probe_at_a_time() {
    let t0 = Instant::now();
    let mut breaker = half_open(t0, 1);
    let t1 = t0 + COOLDOWN;
    assert_eq!(breaker.permits(t1), Permit::Probe { half_opened: false });
    for ms in [0, 1, 9_999] {
        assert_eq!(
            breaker.permits(at(t1, ms)),
            Permit::Reject {
                retry_at: t1 + COOLDOWN
            }
        );
    }
    assert_eq!(breaker.poll(at(t1, 5)), None);
}

#[test]
fn a_lost_probe_is_replaced_after_a_cooldown() {
    let t0 = Instant::now();
    let mut breaker = half_open(t0, 1);
    let t1 = t0 + COOLDOWN;
    assert!(matches!(breaker.permits(t1), Permit::Probe { .. }));
    assert_eq!(
        breaker.permits(t1 + COOLDOWN),
        Permit::Probe { half_opened: false }
    );
}

#[test]
fn half_open_closes_after_a_successful_probe() {
    let t0 = Instant::now();
    let mut breaker = half_open(t0, 1);
    let t1 = t0 + COOLDOWN;
    breaker.permits(t1);
    assert_eq!(breaker.on_success(t1), Some(Transition::Closed));
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.permits(t1), Permit::Allow);
}

#[test]
fn half_open_needs_every_probe_to_succeed() {
    let t0 = Instant::now();
    let mut breaker = half_open(t0, 3);
    let t1 = t0 + COOLDOWN;
    for _ in 0..2 {
        assert_eq!(breaker.permits(t1), Permit::Probe { half_opened: false });
        assert_eq!(breaker.on_success(t1), None);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }
    assert_eq!(breaker.permits(t1), Permit::Probe { half_opened: false });
    assert_eq!(breaker.on_success(t1), Some(Transition::Closed));
}

#[test]
fn half_open_reopens_for_a_full_cooldown_on_a_failed_probe() {
    let t0 = Instant::now();
    let mut breaker = half_open(t0, 3);
    let t1 = t0 + COOLDOWN;
    breaker.permits(t1);
    breaker.on_success(t1);
    breaker.permits(at(t1, 20));
    assert_eq!(breaker.on_failure(at(t1, 30)), Some(Transition::Opened));
    assert_eq!(
        breaker.state(),
        BreakerState::Open {
            until: at(t1, 30) + COOLDOWN
        }
    );
    // The earlier successful probe does not count in the next half-open period.
    assert_eq!(
        breaker.poll(at(t1, 30) + COOLDOWN),
        Some(Transition::HalfOpened)
    );
    assert_eq!(breaker.successes, 0);
}

#[test]
fn closing_clears_the_failure_count() {
    let t0 = Instant::now();
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(2), COOLDOWN));
    breaker.on_failure(t0);
    breaker.on_failure(t0);
    let t1 = t0 + COOLDOWN;
    breaker.permits(t1);
    assert_eq!(breaker.on_success(t1), Some(Transition::Closed));
    assert_eq!(breaker.on_failure(t1), None, "a fresh count after closing");
    assert_eq!(breaker.on_failure(t1), Some(Transition::Opened));
}

#[test]
fn reset_closes_silently() {
    let t0 = Instant::now();
    let mut breaker = opened(t0);
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.permits(t0), Permit::Allow);
}

#[test]
fn zero_thresholds_are_tolerated() {
    let t0 = Instant::now();
    let mut breaker =
        CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(0), COOLDOWN).probes(0));
    assert_eq!(breaker.on_failure(t0), Some(Transition::Opened));
    breaker.permits(t0 + COOLDOWN);
    assert_eq!(breaker.on_success(t0 + COOLDOWN), Some(Transition::Closed));

    let trip = Trip::Rate {
        failures: 0,
        within: Duration::ZERO,
        min_calls: 0,
    };
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(trip, Duration::ZERO));
    // A zero window holds nothing, so it never trips.
    assert_eq!(breaker.on_failure(t0), None);
}

#[test]
fn huge_cooldowns_saturate_instead_of_panicking() {
    let t0 = Instant::now();
    let mut breaker = CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(1), Duration::MAX));
    assert_eq!(breaker.on_failure(t0), Some(Transition::Opened));
    match breaker.permits(t0) {
        Permit::Reject { retry_at } => assert!(retry_at > t0),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn config_validation_names_the_key() {
    let ok = BreakerConfig::default();
    assert!(ok.validate().is_ok());
    let cases = [
        (
            BreakerConfig::new(Trip::Consecutive(0), COOLDOWN),
            "trip.consecutive",
        ),
        (
            BreakerConfig::new(
                Trip::Rate {
                    failures: 0,
                    within: COOLDOWN,
                    min_calls: 0,
                },
                COOLDOWN,
            ),
            "trip.rate.failures",
        ),
        (
            BreakerConfig::new(
                Trip::Rate {
                    failures: 1,
                    within: Duration::ZERO,
                    min_calls: 0,
                },
                COOLDOWN,
            ),
            "trip.rate.within_ms",
        ),
        (
            BreakerConfig::new(Trip::Consecutive(1), Duration::ZERO),
            "cooldown_ms",
        ),
        (ok.probes(0), "probes"),
    ];
    for (config, key) in cases {
        assert_eq!(config.validate().unwrap_err().key(), Some(key));
    }
}

// ---- random sequences ----

#[derive(Debug, Clone, Copy)]
enum Op {
    Permits,
    Success,
    Failure,
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Permits),
        Just(Op::Success),
        Just(Op::Failure),
        Just(Op::Poll)
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    let trip = prop_oneof![
        (1u32..5).prop_map(Trip::Consecutive),
        (1u32..5, 1u64..3_000, 0u32..6).prop_map(|(failures, within, min_calls)| {
            Trip::Rate {
                failures,
                within: Duration::from_millis(within),
                min_calls,
            }
        }),
    ];
    (trip, 1u64..3_000, 1u32..4).prop_map(|(trip, cooldown, probes)| {
        BreakerConfig::new(trip, Duration::from_millis(cooldown)).probes(probes)
    })
}

fn kind(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open { .. } => 1,
        BreakerState::HalfOpen => 2,
    }
}

proptest! {
    /// Random calls at random times never panic, every state change is reported by
    /// exactly the call that made it, and the counters stay within their bounds.
    #[test]
    fn random_sequences_keep_the_invariants(
        config in config(),
        ops in proptest::collection::vec((op(), 0u64..1_500), 0..300),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut breaker = CircuitBreaker::new(config);
        for (op, step) in ops {
            now += Duration::from_millis(step);
            let before = breaker.state();
            let transition = match op {
                Op::Permits => match breaker.permits(now) {
                    Permit::Allow => {
                        prop_assert_eq!(before, BreakerState::Closed);
                        None
                    }
                    Permit::Probe { half_opened } => {
                        prop_assert_eq!(breaker.state(), BreakerState::HalfOpen);
                        prop_assert!(breaker.probe_since == Some(now));
                        half_opened.then_some(Transition::HalfOpened)
                    }
                    Permit::Reject { retry_at } => {
                        prop_assert!(retry_at > now, "a rejection must point to the future");
                        if let BreakerState::Open { until } = breaker.state() {
                            prop_assert_eq!(retry_at, until);
                        }
                        (kind(before) == 1 && breaker.state() == BreakerState::HalfOpen)
                            .then_some(Transition::HalfOpened)
                    }
                },
                Op::Success => breaker.on_success(now),
                Op::Failure => breaker.on_failure(now),
                Op::Poll => breaker.poll(now),
            };
            let after = breaker.state();
            let expected = match (kind(before), kind(after)) {
                (0, 1) | (2, 1) => Some(Transition::Opened),
                (1, 2) => Some(Transition::HalfOpened),
                (2, 0) => Some(Transition::Closed),
                (a, b) if a == b => None,
                (a, b) => {
                    return Err(TestCaseError::fail(format!("impossible transition {a} -> {b}")));
                }
            };
            prop_assert_eq!(transition, expected, "{:?} at {:?}", op, now - t0);
            match after {
                BreakerState::Closed => {
                    if let Trip::Consecutive(n) = config.trip {
                        prop_assert!(breaker.consecutive < n);
                    }
                    prop_assert!(breaker.probe_since.is_none());
                }
                BreakerState::Open { until } => {
                    prop_assert!(until <= now + config.cooldown);
                    if transition == Some(Transition::Opened) {
                        prop_assert_eq!(until, now + config.cooldown);
                    }
                    prop_assert_eq!(breaker.consecutive, 0);
                }
                BreakerState::HalfOpen => prop_assert!(breaker.successes < config.probes),
            }
            if let Trip::Rate { failures, min_calls, .. } = config.trip {
                prop_assert!(breaker.failures.len() <= failures as usize);
                prop_assert!(breaker.calls.len() <= min_calls as usize);
            } else {
                prop_assert_eq!(breaker.failures.len() + breaker.calls.len(), 0);
            }
        }
    }

    /// Under `Trip::Consecutive(n)`, from closed, the breaker opens on exactly the
    /// n-th failure in a row.
    #[test]
    fn consecutive_opens_on_the_nth_failure(n in 1u32..20, successes_first in 0u32..5) {
        let t0 = Instant::now();
        let mut breaker = consecutive(n);
        for _ in 0..successes_first {
            breaker.on_success(t0);
        }
        for i in 1..=n {
            let transition = breaker.on_failure(t0);
            prop_assert_eq!(transition.is_some(), i == n);
        }
    }
}
