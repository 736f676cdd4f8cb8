//! [`PolicyConfig`]: the supervision policies of a whole pipeline, in code or from TOML.

use std::collections::BTreeMap;
use std::path::Path;

use super::toml_format::{RawConfig, key_at, line_column, toml_key};
use super::{ConfigError, RestartStrategy, SupervisionPolicy};

/// The supervision of a whole pipeline: a restart strategy, a default
/// [`SupervisionPolicy`] and per-stage overrides, looked up by stage name.
///
/// # The TOML format
///
/// A top-level `strategy`, a `[default]` table and `[stages.<name>]` tables. Each
/// policy table may set any of `max_attempts`, `restart`, `stall_timeout_ms`,
/// `element_timeout_ms` and the sub-tables `actions`, `backoff`, `intensity`,
/// `restart_backoff` and `breaker`; what a stage table leaves out (down to single keys
/// of a sub-table) comes from `[default]`, and what `[default]` leaves out from
/// [`SupervisionPolicy::default`]. Durations are integers in milliseconds (keys ending
/// in `_ms`); a timeout of 0 switches it off. A `breaker` table turns the breaker on,
/// `breaker = { enabled = false }` turns an inherited one off. Unknown keys are errors.
/// `examples/config/restart-policy.toml` in the repository documents every key.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::ErrorClass;
/// use weir_supervisor::policy::{Action, OpenBehavior, PolicyConfig, RestartStrategy, Trip};
///
/// let config = PolicyConfig::from_toml_str(r#"
///     strategy = "rest_for_one"
///
///     [default]
///     max_attempts = 3
///     backoff = { initial_ms = 50, max_ms = 5_000, multiplier = 2.0, jitter = 0.1 }
///     intensity = { max_restarts = 10, within_ms = 60_000 }
///
///     [stages.parse]
///     max_attempts = 2
///     actions = { panic = "dead_letter" }
///
///     [stages.enrich]
///     max_attempts = 5
///     element_timeout_ms = 2_000
///     backoff = { initial_ms = 200 }
///
///     [stages.enrich.breaker]
///     trip = { rate = { failures = 10, within_ms = 30_000, min_calls = 20 } }
///     cooldown_ms = 15_000
///     when_open = "dead_letter"
/// "#)?;
///
/// assert_eq!(config.strategy(), RestartStrategy::RestForOne);
///
/// let parse = config.for_stage("parse");
/// assert_eq!(parse.max_attempts, 2);
/// assert_eq!(parse.decide(ErrorClass::Panic, 1), Action::DeadLetter);
///
/// let enrich = config.for_stage("enrich");
/// assert_eq!(enrich.backoff.initial, Duration::from_millis(200));
/// assert_eq!(enrich.backoff.max, Duration::from_secs(5), "inherited from [default]");
/// let breaker = enrich.breaker.expect("enrich has a breaker");
/// assert_eq!(breaker.when_open, OpenBehavior::DeadLetter);
/// assert!(matches!(breaker.trip, Trip::Rate { failures: 10, .. }));
///
/// // A stage without a table gets the default.
/// assert_eq!(config.for_stage("sink"), *config.default_policy());
/// # Ok::<(), weir_supervisor::policy::ConfigError>(())
/// ```
///
/// In code:
///
/// ```
/// use weir_supervisor::policy::{PolicyConfig, RestartStrategy, SupervisionPolicy};
///
/// let config = PolicyConfig::new(SupervisionPolicy::default())
///     .with_strategy(RestartStrategy::OneForAll)
///     .with_stage("parse", SupervisionPolicy::default().max_attempts(1));
/// assert_eq!(config.for_stage("parse").max_attempts, 1);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct PolicyConfig {
    strategy: RestartStrategy,
    default: SupervisionPolicy,
    stages: BTreeMap<String, SupervisionPolicy>,
}

impl PolicyConfig {
    /// A configuration where every stage follows `default`, with the
    /// [`OneForOne`](RestartStrategy::OneForOne) strategy.
    pub fn new(default: SupervisionPolicy) -> Self {
        PolicyConfig {
            strategy: RestartStrategy::default(),
            default,
            stages: BTreeMap::new(),
        }
    }

    /// Sets the restart strategy.
    pub fn with_strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Gives the stage named `name` its own policy (a complete one: build it from
    /// [`default_policy`](Self::default_policy) to inherit).
    pub fn with_stage(mut self, name: impl Into<String>, policy: SupervisionPolicy) -> Self {
        self.stages.insert(name.into(), policy);
        self
    }

    /// The restart strategy of the pipeline.
    pub fn strategy(&self) -> RestartStrategy {
        self.strategy
    }

    /// The policy of stages without their own.
    pub fn default_policy(&self) -> &SupervisionPolicy {
        &self.default
    }

    /// The policy of the stage named `name`: its own, or the default.
    pub fn for_stage(&self, name: &str) -> SupervisionPolicy {
        self.stages.get(name).unwrap_or(&self.default).clone()
    }

    /// The names of the stages that have their own policy, in order.
    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.stages.keys().map(String::as_str)
    }

    /// Checks that every stage with its own policy is one of `known` (the stages of
    /// the pipeline), so that a misspelt `[stages.<name>]` table is not silently
    /// ignored. A pipeline given the file with `Runnable::policies` or
    /// `Graph::policies` checks its names itself (with a suggestion); this is for
    /// applications that read the policies some other way.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with key `stages.<name>` for the first unknown name.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_toml_str("[stages.parze]\nmax_attempts = 2\n")?;
    /// let err = config.check_stage_names(["source", "parse", "sink"]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "stages.parze: no stage named `parze` in the pipeline (stages: source, parse, sink)"
    /// );
    /// # Ok::<(), weir_supervisor::policy::ConfigError>(())
    /// ```
    pub fn check_stage_names<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let known: Vec<&str> = known.into_iter().collect();
        match self.stage_names().find(|name| !known.contains(name)) {
            Some(name) => Err(ConfigError::invalid(
                format!("stages.{}", toml_key(name)),
                format!(
                    "no stage named `{name}` in the pipeline (stages: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// Checks the default policy and every stage policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with the key under `default.` or `stages.<name>.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate().map_err(|e| e.under("default"))?;
        for (name, policy) in &self.stages {
            let prefix = format!("stages.{}", toml_key(name));
            policy.validate().map_err(|e| e.under(&prefix))?;
        }
        Ok(())
    }

    /// Reads a configuration from TOML text (see [the format](Self#the-toml-format)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for a syntax error, an unknown key or a value of the
    /// wrong type, with the dotted key, line and column; [`ConfigError::Invalid`] for
    /// a value out of range, with the dotted key (`default.backoff.multiplier: must be
    /// >= 1.0`).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// let err = PolicyConfig::from_toml_str("[stages.parse]\nmax_attemps = 3\n").unwrap_err();
    /// assert_eq!(err.key(), Some("stages.parse.max_attemps"));
    /// assert!(err.to_string().contains("unknown field `max_attemps`"));
    /// assert!(err.to_string().ends_with("(line 2, column 1)"));
    ///
    /// let err = PolicyConfig::from_toml_str("[default.backoff]\nmultiplier = 0.5\n").unwrap_err();
    /// assert_eq!(err.to_string(), "default.backoff.multiplier: must be >= 1.0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<PolicyConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        PolicyConfig::from_raw(raw)
    }

    /// Merges the tables of a parsed file over their defaults and checks them.
    fn from_raw(raw: RawConfig) -> Result<PolicyConfig, ConfigError> {
        let default = raw
            .default
            .apply(&SupervisionPolicy::default())
            .map_err(|e| e.under("default"))?;
        default.validate().map_err(|e| e.under("default"))?;
        let mut stages = BTreeMap::new();
        for (name, table) in raw.stages {
            let prefix = format!("stages.{}", toml_key(&name));
            let policy = table.apply(&default).map_err(|e| e.under(&prefix))?;
            policy.validate().map_err(|e| e.under(&prefix))?;
            stages.insert(name, policy);
        }
        Ok(PolicyConfig {
            strategy: raw.strategy.unwrap_or_default(),
            default,
            stages,
        })
    }

    /// Reads a configuration from a TOML file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read, otherwise as
    /// [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_file("examples/config/restart-policy.toml")?;
    /// let parse = config.for_stage("parse");
    /// # Ok::<(), weir_supervisor::policy::ConfigError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<PolicyConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        PolicyConfig::from_toml_str(&text)
    }
}

/// A policy file read through serde, in [the TOML format](PolicyConfig#the-toml-format):
/// a `ConfigWatcher<PolicyConfig>` reloads one, and an application's own config
/// can hold one (`#[derive(Deserialize)] struct App { policies: PolicyConfig }`).
/// An invalid value is a custom error with its dotted key.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::PolicyConfig;
///
/// #[derive(serde::Deserialize)]
/// struct App {
///     policies: PolicyConfig,
/// }
///
/// let app: App = toml::from_str("[policies.default]\nmax_attempts = 2\n")?;
/// assert_eq!(app.policies.default_policy().max_attempts, 2);
/// let err = toml::from_str::<App>("[policies.default.backoff]\nmultiplier = 0.5\n").err().unwrap();
/// assert!(err.to_string().contains("default.backoff.multiplier: must be >= 1.0"), "{err}");
/// # Ok::<(), toml::de::Error>(())
/// ```
impl<'de> serde::Deserialize<'de> for PolicyConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawConfig::deserialize(deserializer)?;
        PolicyConfig::from_raw(raw).map_err(serde::de::Error::custom)
    }
}

/// A [`ConfigError::Parse`] from the TOML parser's error, with the dotted key and the
/// position of the problem.
fn parse_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let span = error.span();
    let key = span.as_ref().and_then(|span| key_at(text, span.start));
    let (line, column) = match span.map(|span| line_column(text, span.start)) {
        Some((line, column)) => (Some(line), Some(column)),
        None => (None, None),
    };
    ConfigError::Parse {
        key,
        line,
        column,
        message: error.message().trim_end().to_owned(),
        source: Box::new(error.clone()),
    }
}

#[cfg(test)]
mod tests;
