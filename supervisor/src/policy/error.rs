//! [`ConfigError`]: why a supervision policy was rejected.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a supervision policy, in code or from a TOML file, was rejected.
///
/// Every variant names the place of the problem: [`Invalid`](ConfigError::Invalid) and
/// [`Parse`](ConfigError::Parse) carry the dotted key (`stages.parse.max_attempts`),
/// and [`Parse`](ConfigError::Parse) also the line and column in the file.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::{ConfigError, PolicyConfig};
///
/// let err = PolicyConfig::from_toml_str("[stages.parse]\nmax_attempts = 0\n").unwrap_err();
/// assert_eq!(err.key(), Some("stages.parse.max_attempts"));
/// assert_eq!(err.to_string(), "stages.parse.max_attempts: must be at least 1");
/// assert!(matches!(err, ConfigError::Invalid { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The policy file could not be read; the I/O error is the [`source`].
    ///
    /// [`source`]: std::error::Error::source
    #[error("cannot read policy file `{}`", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The text is not TOML, or does not fit the policy schema: an unknown key, a value
    /// of the wrong type, an unknown action name.
    #[error("{}", ParseDisplay { key: key.as_deref(), line: *line, column: *column, message })]
    Parse {
        /// The dotted key the problem is at (`stages.parse.max_attemps`), when the text
        /// was valid TOML; `None` for a syntax error.
        key: Option<String>,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// The 1-based column (in characters) of the problem, when known.
        column: Option<usize>,
        /// The TOML parser's own description of the problem.
        message: String,
        /// The TOML parser's error, a `toml::de::Error`, kept as the
        /// [`source`](std::error::Error::source) (it downcasts to that type; boxed
        /// because it is large).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A value has the right type but is out of range or contradicts another value.
    #[error("{key}: {reason}")]
    Invalid {
        /// The dotted key of the offending value, such as `default.backoff.multiplier`.
        key: String,
        /// Why the value was rejected, such as `must be >= 1.0`.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// let err = PolicyConfig::from_toml_str("[default]\nmax_attemps = 3\n").unwrap_err();
    /// assert_eq!(err.key(), Some("default.max_attemps"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// An [`Invalid`](ConfigError::Invalid) error.
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same error with its key placed under `prefix` (`backoff` + `multiplier` →
    /// `backoff.multiplier`).
    pub(crate) fn under(self, prefix: &str) -> Self {
        match self {
            ConfigError::Invalid { key, reason } => ConfigError::Invalid {
                key: format!("{prefix}.{key}"),
                reason,
            },
            other => other,
        }
    }
}

/// Renders a [`ConfigError::Parse`]: `key: message (line L, column C)`.
struct ParseDisplay<'a> {
    key: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

impl fmt::Display for ParseDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(key) => write!(f, "{key}: {}", self.message)?,
            None => write!(f, "invalid TOML: {}", self.message)?,
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})"),
            (Some(line), None) => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn under_prefixes_invalid_keys_only() {
        let err = ConfigError::invalid("multiplier", "must be >= 1.0").under("backoff");
        assert_eq!(err.to_string(), "backoff.multiplier: must be >= 1.0");
        let io = ConfigError::Io {
            path: "x.toml".into(),
            source: io::Error::other("gone"),
        };
        assert!(io.under("default").key().is_none());
    }

    /// A real parser error, for the `source` of a hand-made `Parse`.
    fn toml_error() -> toml::de::Error {
        toml::from_str::<toml::Table>("a = = 1").unwrap_err()
    }

    #[test]
    fn parse_errors_keep_the_toml_error_as_source() {
        let err = crate::policy::PolicyConfig::from_toml_str("[default]\nmax_attempts = \"x\"\n")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let source = err.source().expect("the TOML error");
        assert!(source.downcast_ref::<toml::de::Error>().is_some());
    }

    #[test]
    fn parse_errors_show_key_and_position() {
        let err = ConfigError::Parse {
            key: Some("stages.parse.max_attempts".into()),
            line: Some(4),
            column: Some(16),
            message: "invalid type: string \"x\", expected u32".into(),
            source: Box::new(toml_error()),
        };
        assert_eq!(
            err.to_string(),
            "stages.parse.max_attempts: invalid type: string \"x\", expected u32 \
             (line 4, column 16)"
        );
        let syntax = ConfigError::Parse {
            key: None,
            line: Some(2),
            column: None,
            message: "unclosed table".into(),
            source: Box::new(toml_error()),
        };
        assert_eq!(syntax.to_string(), "invalid TOML: unclosed table (line 2)");
    }

    #[test]
    fn io_errors_keep_their_source() {
        let err = ConfigError::Io {
            path: "missing.toml".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(err.to_string(), "cannot read policy file `missing.toml`");
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("no such file")
        );
    }
}
