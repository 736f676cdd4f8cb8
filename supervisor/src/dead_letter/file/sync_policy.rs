//! [`SyncPolicy`]: when the file DLQ forces its data to stable storage.

use serde::{Deserialize, Serialize};

/// When a [`FileDlqWriter`](super::FileDlqWriter) calls `File::sync_data`, which
/// returns once the data is on stable storage.
///
/// Whatever the policy, every [`append`](super::FileDlqWriter::append) hands its
/// whole record to the operating system before it returns, so a crash of the
/// *process* loses nothing that was appended. The policy decides what survives a
/// crash of the *machine* (power loss, kernel panic): records appended since the last
/// sync may be lost, and show up as a torn or corrupt tail.
///
/// # Choosing a policy
///
/// - [`EveryRecord`](Self::EveryRecord) (the default): an append returns only once
///   its letter is durable. Costs one `fsync` per dead letter — from tens of
///   microseconds on NVMe to milliseconds on a disk. Dead letters should be rare; this
///   is the right choice unless they are not.
/// - [`EveryN(n)`](Self::EveryN): at most the last `n - 1` letters can be lost in a
///   machine crash; use when failures come in bursts and `fsync` shows up in
///   profiles. [`flush`](super::FileDlqWriter::flush) syncs at any time.
///   `EveryN(0)` and `EveryN(1)` behave like `EveryRecord`.
/// - [`Never`](Self::Never): the operating system decides; for tests and for files
///   that are scratch anyway.
///
/// In a TOML policy file: `sync = "every_record"`, `sync = "never"` or
/// `sync = { every_n = 64 }`.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{FileDlqOptions, SyncPolicy};
///
/// let options = FileDlqOptions::new().sync(SyncPolicy::EveryN(64));
/// assert_eq!(options.sync_policy(), SyncPolicy::EveryN(64));
/// assert_eq!(SyncPolicy::default(), SyncPolicy::EveryRecord);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// Never sync; the operating system writes the data back when it wants to.
    Never,
    /// Sync after every record.
    #[default]
    EveryRecord,
    /// Sync after every `n`-th record (and on [`flush`](super::FileDlqWriter::flush)
    /// and, best effort, when the writer is dropped).
    EveryN(u32),
}
