//! Helpers the checkpointable operators share: snapshots that hold keyed entries
//! *and* a value that is not split by key, and the re-anchoring of instants.
//!
//! # Time in a snapshot
//!
//! Instants (std's and tokio's) are not serializable and mean nothing in another
//! process. An operator stores each instant it keeps as a [`Duration`] relative
//! to the moment of the snapshot (an age: how long ago it was; or a lead: how far
//! ahead it is), and turns it back into an instant relative to the moment of the
//! restore. The time the pipeline was down therefore does not count: a key idle
//! for 3 s of a 10 s TTL at the snapshot is idle for 3 s at the restore.

use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{RestoreContext, Snapshot, StateError, StatePart, decode, encode};

/// What [`decode_mixed`] gives: the unkeyed parts, and the keyed entries.
pub(crate) type Mixed<G, K, V> = (Vec<G>, Vec<(K, V)>);

/// A snapshot of keyed `entries` (split by key group, see [`Snapshot::keyed`])
/// plus one unkeyed part holding `global`.
pub(crate) fn mixed<'a, G, K, V, I>(
    version: u32,
    global: &G,
    entries: I,
) -> Result<Snapshot, StateError>
where
    G: Serialize + ?Sized,
    K: Hash + Serialize + 'a,
    V: Serialize + 'a,
    I: IntoIterator<Item = (&'a K, &'a V)>,
{
    let mut snapshot = Snapshot::keyed(version, entries)?;
    snapshot.parts.push(StatePart {
        key_group: None,
        bytes: encode(global)?,
    });
    Ok(snapshot)
}

/// Decodes a snapshot made by [`mixed`]: every unkeyed part (one per replica the
/// snapshot was merged from; one for a stage restored as it was) and the keyed
/// entries of the key groups `ctx` owns.
///
/// # Errors
///
/// [`StateError::Version`], [`StateError::Shape`] (no unkeyed part),
/// [`StateError::TooLarge`] or [`StateError::Decode`].
pub(crate) fn decode_mixed<G, K, V>(
    snapshot: &Snapshot,
    version: u32,
    ctx: &RestoreContext,
) -> Result<Mixed<G, K, V>, StateError>
where
    G: DeserializeOwned,
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    let (unkeyed, keyed): (Vec<&StatePart>, Vec<&StatePart>) =
        snapshot.parts.iter().partition(|p| p.key_group.is_none());
    let keyed = Snapshot {
        version: snapshot.version,
        parts: keyed.into_iter().cloned().collect(),
    };
    // Checks the version, also when there is no keyed part.
    let entries = keyed.decode_keyed(version, ctx)?;
    if unkeyed.is_empty() {
        return Err(StateError::Shape(
            "a keyed state without its unkeyed part".into(),
        ));
    }
    let globals = unkeyed
        .into_iter()
        .map(|p| decode(&p.bytes, ctx.max_state_bytes))
        .collect::<Result<Vec<G>, _>>()?;
    Ok((globals, entries))
}

/// How long before `now` `then` was (zero if it is not before).
pub(crate) fn age(now: Instant, then: Instant) -> Duration {
    now.saturating_duration_since(then)
}

/// The instant `age` before `now`: a stored age re-anchored at a restore. An
/// age longer than the clock can go back (a process just started) is clamped
/// to the earliest instant it can: the age is then shorter than it was.
pub(crate) fn before(now: Instant, age: Duration) -> Instant {
    if let Some(t) = now.checked_sub(age) {
        return t;
    }
    // Halve until it fits: at most 64 steps, only for ages longer than uptime.
    let mut age = age;
    while !age.is_zero() {
        age /= 2;
        if let Some(t) = now.checked_sub(age) {
            return t;
        }
    }
    now
}

/// [`before`] on tokio's clock.
pub(crate) fn tokio_before(now: tokio::time::Instant, age: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(before(now.into_std(), age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_snapshots_split_keys_and_keep_the_global_part() {
        let entries: Vec<(u64, String)> = (0..50).map(|k| (k, format!("v{k}"))).collect();
        let s = mixed(3, &(7_u32, true), entries.iter().map(|(k, v)| (k, v))).unwrap();
        let (globals, mut back): Mixed<(u32, bool), u64, String> =
            decode_mixed(&s, 3, &RestoreContext::default()).unwrap();
        back.sort();
        assert_eq!(globals, [(7, true)]);
        assert_eq!(back, entries);
        let wrong: Result<Mixed<(u32, bool), u64, String>, _> =
            decode_mixed(&s, 4, &RestoreContext::default());
        assert_eq!(
            wrong.unwrap_err(),
            StateError::Version {
                found: 3,
                expected: 4
            }
        );
    }

    #[test]
    fn a_keyed_snapshot_without_its_global_part_is_refused() {
        let s = Snapshot::keyed(1, [(&1_u64, &2_u64)]).unwrap();
        let r: Result<Mixed<u8, u64, u64>, _> = decode_mixed(&s, 1, &RestoreContext::default());
        assert!(matches!(r, Err(StateError::Shape(_))), "{r:?}");
    }

    #[test]
    fn ages_re_anchor() {
        let now = Instant::now();
        let then = before(now, Duration::from_millis(1500));
        assert_eq!(age(now, then), Duration::from_millis(1500));
        assert_eq!(age(then, now), Duration::ZERO);
        // An age longer than the clock can represent is clamped, not a panic.
        assert!(before(now, Duration::MAX) <= now);
    }
}
