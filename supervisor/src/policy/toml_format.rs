//! The TOML form of a policy file: partial tables merged over their defaults, and the
//! lookup that turns a parser error's byte offset into a dotted key.
//!
//! Every field is optional so that a table only says what it changes; what it leaves
//! out comes from the table below it (`[stages.<name>]` over `[default]` over
//! [`SupervisionPolicy::default`]).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::{
    Action, BackoffConfig, BreakerConfig, ClassActions, ConfigError, OpenBehavior, RestartStrategy,
    RestartType, StallAction, SupervisionPolicy, Trip, WhenDeadLettersFull,
};

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) strategy: Option<RestartStrategy>,
    #[serde(default)]
    pub(crate) default: RawPolicy,
    #[serde(default)]
    pub(crate) stages: BTreeMap<String, RawPolicy>,
}

/// `[default]` or `[stages.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    actions: Option<RawActions>,
    max_attempts: Option<u32>,
    backoff: Option<RawBackoff>,
    restart: Option<RestartType>,
    intensity: Option<RawIntensity>,
    restart_backoff: Option<RawBackoff>,
    breaker: Option<RawBreaker>,
    stall_timeout_ms: Option<u64>,
    on_stall: Option<StallAction>,
    element_timeout_ms: Option<u64>,
    dead_letters_full: Option<WhenDeadLettersFull>,
    dead_letters_retry_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    panic: Option<Action>,
    transient: Option<Action>,
    permanent: Option<Action>,
    timeout: Option<Action>,
    resource_exhausted: Option<Action>,
    on_exhausted: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    multiplier: Option<f64>,
    jitter: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntensity {
    max_restarts: Option<u32>,
    within_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    enabled: Option<bool>,
    trip: Option<RawTrip>,
    cooldown_ms: Option<u64>,
    probes: Option<u32>,
    when_open: Option<OpenBehavior>,
}

/// `trip = { consecutive = 5 }` or
/// `trip = { rate = { failures = 10, within_ms = 60000, min_calls = 20 } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawTrip {
    Consecutive(u32),
    Rate(RawRate),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    failures: u32,
    within_ms: u64,
    #[serde(default)]
    min_calls: u32,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn millis(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// `0` disables a timeout.
fn timeout(slot: &mut Option<Duration>, ms: Option<u64>) {
    if let Some(ms) = ms {
        *slot = (ms > 0).then(|| Duration::from_millis(ms));
    }
}

impl RawPolicy {
    /// `base` with what this table sets.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] (key relative to the table) for a breaker table that
    /// says `enabled = false` and sets something else.
    pub(crate) fn apply(self, base: &SupervisionPolicy) -> Result<SupervisionPolicy, ConfigError> {
        let mut policy = base.clone();
        if let Some(actions) = self.actions {
            actions.apply(&mut policy.actions);
        }
        set(&mut policy.max_attempts, self.max_attempts);
        if let Some(backoff) = self.backoff {
            backoff.apply(&mut policy.backoff);
        }
        set(&mut policy.restart, self.restart);
        if let Some(intensity) = self.intensity {
            set(&mut policy.intensity.max_restarts, intensity.max_restarts);
            set(&mut policy.intensity.within, millis(intensity.within_ms));
        }
        if let Some(backoff) = self.restart_backoff {
            backoff.apply(&mut policy.restart_backoff);
        }
        if let Some(breaker) = self.breaker {
            policy.breaker = breaker
                .apply(policy.breaker)
                .map_err(|e| e.under("breaker"))?;
        }
        timeout(&mut policy.stall_timeout, self.stall_timeout_ms);
        set(&mut policy.on_stall, self.on_stall);
        timeout(&mut policy.element_timeout, self.element_timeout_ms);
        set(&mut policy.dead_letters_full, self.dead_letters_full);
        set(
            &mut policy.dead_letters_retry,
            millis(self.dead_letters_retry_ms),
        );
        Ok(policy)
    }
}

impl RawActions {
    fn apply(self, actions: &mut ClassActions) {
        set(&mut actions.panic, self.panic);
        set(&mut actions.transient, self.transient);
        set(&mut actions.permanent, self.permanent);
        set(&mut actions.timeout, self.timeout);
        set(&mut actions.resource_exhausted, self.resource_exhausted);
        set(&mut actions.on_exhausted, self.on_exhausted);
    }
}

impl RawBackoff {
    fn apply(self, backoff: &mut BackoffConfig) {
        set(&mut backoff.initial, millis(self.initial_ms));
        set(&mut backoff.max, millis(self.max_ms));
        set(&mut backoff.multiplier, self.multiplier);
        set(&mut backoff.jitter, self.jitter);
    }
}

impl RawBreaker {
    /// A breaker table turns the breaker on (over [`BreakerConfig::default`] when the
    /// table below had none), unless it says `enabled = false`.
    fn apply(self, base: Option<BreakerConfig>) -> Result<Option<BreakerConfig>, ConfigError> {
        if self.enabled == Some(false) {
            let others = self.trip.is_some()
                || self.cooldown_ms.is_some()
                || self.probes.is_some()
                || self.when_open.is_some();
            if others {
                return Err(ConfigError::invalid(
                    "enabled",
                    "is false, so the other breaker keys have no effect; remove them",
                ));
            }
            return Ok(None);
        }
        let mut breaker = base.unwrap_or_default();
        if let Some(trip) = self.trip {
            breaker.trip = match trip {
                RawTrip::Consecutive(n) => Trip::Consecutive(n),
                RawTrip::Rate(rate) => Trip::Rate {
                    failures: rate.failures,
                    within: Duration::from_millis(rate.within_ms),
                    min_calls: rate.min_calls,
                },
            };
        }
        set(&mut breaker.cooldown, millis(self.cooldown_ms));
        set(&mut breaker.probes, self.probes);
        set(&mut breaker.when_open, self.when_open);
        Ok(Some(breaker))
    }
}

/// `name` as a TOML key: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The dotted key at byte `offset` of `text` (the key itself, or the value under it),
/// or `None` when `text` is not valid TOML or nothing is there.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let root: Node = toml::from_str(text).ok()?;
    let mut places = Vec::new();
    root.places(&mut Vec::new(), &mut places);
    places
        .into_iter()
        .filter(|(_, span)| span.contains(&offset) || (span.is_empty() && span.start == offset))
        .min_by_key(|(_, span)| span.len())
        .map(|(path, _)| path)
}

/// A TOML document reduced to its shape and the spans of its keys and values.
enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

impl Node {
    /// Pushes `(dotted key, span)` for every key and value under this node.
    fn places(&self, path: &mut Vec<String>, out: &mut Vec<(String, Range<usize>)>) {
        let mut visit =
            |path: &mut Vec<String>, key_span: Option<Range<usize>>, value: &Spanned<Node>| {
                let dotted = path.join(".");
                if let Some(span) = key_span {
                    out.push((dotted.clone(), span));
                }
                out.push((dotted, value.span()));
                value.get_ref().places(path, out);
            };
        match self {
            Node::Table(entries) => {
                for (key, value) in entries {
                    path.push(toml_key(key.get_ref()));
                    visit(path, Some(key.span()), value);
                    path.pop();
                }
            }
            Node::Array(items) => {
                let parent = path.pop();
                let name = parent.clone().unwrap_or_default();
                for (index, item) in items.iter().enumerate() {
                    path.push(format!("{name}[{index}]"));
                    visit(path, None, item);
                    path.pop();
                }
                path.extend(parent);
            }
            Node::Leaf => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_of(text: &str, needle: &str) -> usize {
        text.find(needle).expect("needle in text")
    }

    #[test]
    fn key_at_finds_keys_and_values_at_any_depth() {
        let text = "strategy = \"one_for_all\"\n\
                    [default]\nmax_attempts = 3\n\
                    [stages.parse.backoff]\nmultiplier = 0.5\n\
                    [stages.\"my stage\"]\nbreaker = { trip = { consecutive = 0 } }\n";
        assert_eq!(
            key_at(text, offset_of(text, "one_for_all")).as_deref(),
            Some("strategy")
        );
        assert_eq!(
            key_at(text, offset_of(text, "max_attempts")).as_deref(),
            Some("default.max_attempts")
        );
        assert_eq!(
            key_at(text, offset_of(text, "0.5")).as_deref(),
            Some("stages.parse.backoff.multiplier")
        );
        assert_eq!(
            key_at(text, offset_of(text, "consecutive")).as_deref(),
            Some("stages.\"my stage\".breaker.trip.consecutive")
        );
        assert_eq!(
            key_at("a = [1, 2, { b = 3 }]", 13).as_deref(),
            Some("a[2].b")
        );
        assert_eq!(key_at("not = toml = at all", 3), None);
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, offset_of(text, "2")), (2, 6));
        assert_eq!(line_column(text, 1_000), (3, 1));
    }

    #[test]
    fn toml_keys_are_quoted_when_needed() {
        assert_eq!(toml_key("parse"), "parse");
        assert_eq!(toml_key("enrich-2"), "enrich-2");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
        assert_eq!(toml_key(""), "\"\"");
    }

    #[test]
    fn a_partial_table_changes_only_what_it_sets() {
        let raw: RawPolicy = toml::from_str(
            "max_attempts = 9\nbackoff = { max_ms = 60000 }\nstall_timeout_ms = 0\n",
        )
        .unwrap();
        let base = SupervisionPolicy::default().stall_timeout(Duration::from_secs(5));
        let policy = raw.apply(&base).unwrap();
        assert_eq!(policy.max_attempts, 9);
        assert_eq!(policy.backoff.max, Duration::from_secs(60));
        assert_eq!(policy.backoff.initial, base.backoff.initial);
        assert_eq!(policy.stall_timeout, None, "0 disables");
        assert_eq!(policy.restart_backoff, base.restart_backoff);
    }

    #[test]
    fn breaker_tables_merge_switch_on_and_off() {
        let on: RawPolicy = toml::from_str("breaker = { cooldown_ms = 500 }").unwrap();
        let policy = on.apply(&SupervisionPolicy::default()).unwrap();
        let breaker = policy.breaker.expect("a breaker table turns it on");
        assert_eq!(breaker.cooldown, Duration::from_millis(500));
        assert_eq!(breaker.trip, BreakerConfig::default().trip);

        let off: RawPolicy = toml::from_str("breaker = { enabled = false }").unwrap();
        assert_eq!(off.apply(&policy).unwrap().breaker, None);

        let both: RawPolicy = toml::from_str("breaker = { enabled = false, probes = 2 }").unwrap();
        let err = both.apply(&policy).unwrap_err();
        assert_eq!(err.key(), Some("breaker.enabled"));
    }
}
