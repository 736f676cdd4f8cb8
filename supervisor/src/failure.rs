//! [`Failure`]: what went wrong in a stage, classified.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The class of a failure; a restart policy maps each class to an action.
///
/// A panic is always [`ErrorClass::Panic`]. Errors returned by user code say which
/// class they belong to when they are built with [`Failure::error`] or
/// [`Failure::with_source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// User code panicked.
    Panic,
    /// A failure that may go away if the element is tried again (a reset connection).
    Transient,
    /// A failure that will happen again for the same element (malformed input).
    Permanent,
    /// An operation took longer than it was allowed to.
    Timeout,
    /// A resource ran out (memory, file handles, a quota).
    ResourceExhausted,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Panic => "panic",
            ErrorClass::Transient => "transient error",
            ErrorClass::Permanent => "permanent error",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ResourceExhausted => "resource exhausted",
        })
    }
}

/// A classified failure of user code inside a stage.
///
/// `Failure` keeps the message and, where there is one, the original error as its
/// [`source`](StdError::source).
#[derive(Debug)]
pub struct Failure {
    class: ErrorClass,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Failure {
    /// A failure of the given class with a message.
    pub fn error(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
            source: None,
        }
    }

    /// A failure of the given class that wraps an error; the message is the error's
    /// `Display` text and the error is kept as the source.
    pub fn with_source(class: ErrorClass, source: impl StdError + Send + Sync + 'static) -> Self {
        Failure {
            class,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Turns the payload of a caught panic into a [`ErrorClass::Panic`] failure,
    /// keeping the panic message when it is a string.
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let message = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(s) => (*s).to_owned(),
                Err(_) => "panic with a non-string payload".to_owned(),
            },
        };
        Failure {
            class: ErrorClass::Panic,
            message,
            source: None,
        }
    }

    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message, without the class prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_keep_their_message() {
        let owned = Failure::from_panic(Box::new(String::from("boom at 3")));
        assert_eq!(owned.message(), "boom at 3");
        let other = Failure::from_panic(Box::new(42_u32));
        assert_eq!(other.class(), ErrorClass::Panic);
        assert!(other.message().contains("non-string"));
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::other("disk gone");
        let failure = Failure::with_source(ErrorClass::ResourceExhausted, io);
        assert_eq!(failure.to_string(), "resource exhausted: disk gone");
        assert!(failure.source().is_some());
    }
}
