//! [`WatchError`]: why a config file was not applied.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The cause behind a [`WatchError`]: the I/O or TOML error.
type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a config file was not applied: the old config stays in force. The I/O or
/// TOML error behind it, if any, is its [`source`](std::error::Error::source);
/// equality compares what is shown (path, position, field, message).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchError {
    /// The file.
    pub path: PathBuf,
    /// The line (from 1) of the offending value, when known.
    pub line: Option<usize>,
    /// The column (from 1), when known.
    pub column: Option<usize>,
    /// The key on that line, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The error it comes from.
    cause: Option<Cause>,
}

impl PartialEq for WatchError {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.path,
            self.line,
            self.column,
            &self.field,
            &self.message,
        ) == (
            &other.path,
            other.line,
            other.column,
            &other.field,
            &other.message,
        )
    }
}

impl Eq for WatchError {}

impl WatchError {
    pub(super) fn io(path: &Path, err: std::io::Error) -> Self {
        let mut error = Self::invalid(path, format!("cannot read the file: {err}"));
        error.cause = Some(Arc::new(err));
        error
    }

    pub(super) fn invalid(path: &Path, message: String) -> Self {
        WatchError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message,
            cause: None,
        }
    }

    /// From a TOML error: the line, column and key of its span.
    pub(super) fn parse(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let mut error = Self::invalid(path, err.message().trim().to_owned());
        error.cause = Some(Arc::new(err.clone()));
        if let Some(span) = err.span() {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            error.line = Some(line);
            error.column = Some(before[line_start..].chars().count() + 1);
            let line_text = text[line_start..].lines().next().unwrap_or("");
            error.field = line_text
                .split_once('=')
                .map(|(key, _)| key.trim().trim_matches('"').to_owned())
                .filter(|key| !key.is_empty());
        }
        error
    }
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(column) = self.column {
            write!(f, ", column {column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {} (old config kept)", self.message)
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Settings {
        min: u64,
        rate: u32,
    }

    #[test]
    fn a_type_error_names_line_column_and_field() {
        let text = "min = 3\nrate = \"fast\"\n";
        let err = toml::from_str::<Settings>(text).unwrap_err();
        let err = WatchError::parse(Path::new("etl.toml"), text, &err);
        assert_eq!(err.line, Some(2));
        assert_eq!(err.column, Some(8));
        assert_eq!(err.field.as_deref(), Some("rate"));
        let shown = err.to_string();
        assert!(shown.starts_with("config file etl.toml, line 2, column 8, field `rate`: "));
        assert!(shown.ends_with("(old config kept)"), "{shown}");
    }

    #[test]
    fn the_toml_and_io_errors_are_the_source() {
        use std::error::Error as _;
        let text = "min = \"x\"\n";
        let err = toml::from_str::<Settings>(text).unwrap_err();
        let err = WatchError::parse(Path::new("etl.toml"), text, &err);
        assert!(
            err.source()
                .unwrap()
                .downcast_ref::<toml::de::Error>()
                .is_some()
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = WatchError::io(Path::new("etl.toml"), io);
        let source = err
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_missing_field_is_named_in_the_message() {
        let text = "min = 3\n";
        let err = toml::from_str::<Settings>(text).unwrap_err();
        let err = WatchError::parse(Path::new("etl.toml"), text, &err);
        assert!(
            err.message.contains("missing field `rate`"),
            "{}",
            err.message
        );
    }
}
