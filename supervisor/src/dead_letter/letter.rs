//! [`DeadLetter`]: an element that weir gave up on, with the reason why.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{ErrorClass, Failure};

/// An element that a stage could not process, together with everything needed to
/// understand the failure and to replay the element later.
///
/// weir builds a dead letter when the supervision policy gives up on an element:
/// after `max_attempts` retries, for a failure class the policy dead-letters at once
/// (a permanent error), or while a circuit breaker diverts elements. The element
/// itself is kept unchanged, so it can be fed into a pipeline again.
///
/// The fields are public: a dead letter is a plain record. Its serde form (used by
/// the file DLQ, see [`file`](mod@super::file)) has the fields in declaration order and
/// [`at`](Self::at) as whole milliseconds since the UNIX epoch.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::DeadLetter;
/// use weir_supervisor::{ErrorClass, Failure};
///
/// let failure = Failure::error(ErrorClass::Permanent, "not valid JSON");
/// let letter = DeadLetter::new("{oops".to_owned(), "parse", "ingest", &failure, 3, 41);
///
/// assert_eq!(letter.element, "{oops");
/// assert_eq!(letter.class, ErrorClass::Permanent);
/// assert_eq!(letter.error, "not valid JSON");
/// assert_eq!(letter.attempts, 3);
///
/// // Re-feed the element, keeping the metadata elsewhere.
/// let element: String = letter.into_element();
/// assert_eq!(element, "{oops");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter<T> {
    /// The element that failed, exactly as the stage received it.
    pub element: T,
    /// The name of the stage whose operator failed on the element.
    pub stage: String,
    /// The name of the pipeline the stage belongs to.
    pub pipeline: String,
    /// The class of the last failure.
    pub class: ErrorClass,
    /// The message of the last failure (without the class prefix).
    pub error: String,
    /// How many times the operator was called with this element, the failed calls
    /// included (`1` when the element was dead-lettered without a retry).
    pub attempts: u32,
    /// When the element was dead-lettered.
    ///
    /// Stored with millisecond precision; [`DeadLetter::new`] and
    /// [`DeadLetter::with_time`] truncate it to whole milliseconds so that a letter
    /// equals itself after a round trip through the file DLQ. A time before the
    /// UNIX epoch is stored as the epoch.
    #[serde(with = "millis")]
    pub at: SystemTime,
    /// The position of the element in the stage's input, counted from 0.
    pub element_index: u64,
}

impl<T> DeadLetter<T> {
    /// A dead letter for `element`, which failed in `stage` of `pipeline` with
    /// `failure` after `attempts` calls; `element_index` is the element's position in
    /// the stage's input. The time is now, truncated to whole milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::dead_letter::DeadLetter;
    /// use weir_supervisor::{ErrorClass, Failure};
    ///
    /// let failure = Failure::error(ErrorClass::Timeout, "no answer after 5 s");
    /// let letter = DeadLetter::new(7_u64, "lookup", "enrich", &failure, 5, 1_000);
    /// assert_eq!(letter.stage, "lookup");
    /// assert_eq!(letter.pipeline, "enrich");
    /// assert_eq!(letter.element_index, 1_000);
    /// ```
    pub fn new(
        element: T,
        stage: impl Into<String>,
        pipeline: impl Into<String>,
        failure: &Failure,
        attempts: u32,
        element_index: u64,
    ) -> Self {
        DeadLetter {
            element,
            stage: stage.into(),
            pipeline: pipeline.into(),
            class: failure.class(),
            error: failure.message().to_owned(),
            attempts,
            at: truncate_to_millis(SystemTime::now()),
            element_index,
        }
    }

    /// The same letter with its time set to `at`, truncated to whole milliseconds.
    ///
    /// Useful for deterministic tests and for letters rebuilt from another store.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use weir_supervisor::dead_letter::DeadLetter;
    /// use weir_supervisor::{ErrorClass, Failure};
    ///
    /// let failure = Failure::error(ErrorClass::Transient, "reset");
    /// let at = UNIX_EPOCH + Duration::from_micros(1_500_700);
    /// let letter = DeadLetter::new((), "s", "p", &failure, 1, 0).with_time(at);
    /// assert_eq!(letter.at, UNIX_EPOCH + Duration::from_millis(1_500));
    /// ```
    #[must_use]
    pub fn with_time(mut self, at: SystemTime) -> Self {
        self.at = truncate_to_millis(at);
        self
    }

    /// Gives back the element, dropping the failure metadata.
    pub fn into_element(self) -> T {
        self.element
    }

    /// The same letter with its element transformed by `f`; the metadata is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::dead_letter::DeadLetter;
    /// use weir_supervisor::{ErrorClass, Failure};
    ///
    /// let failure = Failure::error(ErrorClass::Permanent, "bad");
    /// let letter = DeadLetter::new(21_u32, "s", "p", &failure, 1, 0);
    /// let doubled = letter.map(|n| u64::from(n) * 2);
    /// assert_eq!(doubled.element, 42_u64);
    /// assert_eq!(doubled.error, "bad");
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> DeadLetter<U> {
        DeadLetter {
            element: f(self.element),
            stage: self.stage,
            pipeline: self.pipeline,
            class: self.class,
            error: self.error,
            attempts: self.attempts,
            at: self.at,
            element_index: self.element_index,
        }
    }
}

/// Milliseconds since the UNIX epoch, saturating: before the epoch is 0, after
/// `u64::MAX` ms is `u64::MAX`.
fn to_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn truncate_to_millis(at: SystemTime) -> SystemTime {
    // A time that does not fit is left as it is; it still serialises (saturated).
    UNIX_EPOCH
        .checked_add(Duration::from_millis(to_millis(at)))
        .unwrap_or(at)
}

/// Serde adapter: `SystemTime` as `u64` milliseconds since the UNIX epoch.
mod millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_millis(*at))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| {
                D::Error::custom(format!("time {ms} ms after the epoch is out of range"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter<String> {
        let failure = Failure::error(ErrorClass::Transient, "connection reset");
        DeadLetter::new("payload".to_owned(), "fetch", "crawl", &failure, 4, 9)
    }

    #[test]
    fn new_takes_class_and_message_from_the_failure() {
        let l = letter();
        assert_eq!(l.class, ErrorClass::Transient);
        assert_eq!(l.error, "connection reset");
        assert_eq!((l.attempts, l.element_index), (4, 9));
        assert_eq!(to_millis(l.at) as u128 * 1_000_000, {
            l.at.duration_since(UNIX_EPOCH).unwrap().as_nanos()
        });
    }

    #[test]
    fn time_is_whole_milliseconds_and_saturates_before_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(to_millis(before), 0);
        let l = letter().with_time(before);
        assert_eq!(l.at, UNIX_EPOCH);
        let l = letter().with_time(UNIX_EPOCH + Duration::from_nanos(2_999_999));
        assert_eq!(l.at, UNIX_EPOCH + Duration::from_millis(2));
    }

    #[test]
    fn bincode_round_trip_is_exact() {
        let config = bincode::config::standard().with_limit::<4096>();
        let l = letter();
        let bytes = bincode::serde::encode_to_vec(&l, config).unwrap();
        let (back, used): (DeadLetter<String>, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, l);
    }

    #[test]
    fn map_keeps_the_metadata() {
        let l = letter();
        let m = l.clone().map(|s| s.len());
        assert_eq!(m.element, 7);
        assert_eq!((m.stage, m.pipeline, m.at), (l.stage, l.pipeline, l.at));
    }
}
