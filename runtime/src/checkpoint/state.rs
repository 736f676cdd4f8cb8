//! The state contract: what a checkpointable operator hands the checkpoint and gets
//! back when the pipeline is restored.
//!
//! An operator's state is a [`Snapshot`]: a version number and one or more
//! [`StatePart`]s of bytes. State that is kept per key is split by **key group**
//! ([`key_group_of`], [`KEY_GROUPS`] of them, the pipeline's maximum parallelism),
//! so that a pool or a `partition_by_key` restored with another replica count hands
//! each replica exactly the groups its keys fall in (Flink's scheme). Everything is
//! encoded with bincode 2 (`config::standard()`), and decoded with a size limit.

use std::hash::{Hash, Hasher};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Number of key groups keyed state is stored by: the largest replica count a
/// keyed stage can be restored with. Fixed, so that a key's group never changes.
pub const KEY_GROUPS: u16 = 128;

/// Decode limit used when none is configured: 256 MiB per state part.
pub const DEFAULT_MAX_STATE_BYTES: usize = 256 << 20;

/// The key group of `key`: a stable hash of the key (FNV-1a over what its `Hash`
/// implementation writes) reduced to `0..KEY_GROUPS`.
///
/// Stable across processes of the same build: unlike the standard library's
/// `RandomState`, it has no per-process seed. Integer keys hash their native-endian
/// bytes, so a checkpoint is portable between machines of the same endianness.
///
/// # Examples
///
/// ```
/// use weir_runtime::checkpoint::{KEY_GROUPS, key_group_of};
///
/// let g = key_group_of(&"user-42");
/// assert!(g < KEY_GROUPS);
/// assert_eq!(g, key_group_of(&"user-42"));
/// ```
pub fn key_group_of<K: Hash + ?Sized>(key: &K) -> u16 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    key_group(h.finish())
}

/// The key group of a 64-bit hash.
pub fn key_group(hash: u64) -> u16 {
    // A final mix so that the low bits of a weak hash still spread.
    let mixed = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let mixed = mixed ^ (mixed >> 33);
    u16::try_from(mixed % u64::from(KEY_GROUPS)).unwrap_or(0)
}

/// Which replica of `replicas` owns key group `group`: contiguous ranges of groups
/// per replica, as in Flink, so rescaling moves whole ranges.
///
/// # Panics
///
/// If `replicas` is 0.
pub fn replica_of_group(group: u16, replicas: usize) -> usize {
    assert!(replicas > 0, "replica_of_group: zero replicas");
    usize::from(group) * replicas / usize::from(KEY_GROUPS)
}

/// 64-bit FNV-1a: small, stable, and good enough to spread keys over groups.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Why a state could not be snapshotted or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state could not be encoded (its `Serialize` implementation failed).
    #[error("state does not encode: {0}")]
    Encode(String),
    /// Stored bytes do not decode into the operator's state type.
    #[error("state does not decode: {0}")]
    Decode(String),
    /// A state part is larger than the configured limit; it is refused before it is
    /// allocated.
    #[error("state part of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the part.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The stored state has a version this operator cannot read.
    #[error("state version {found} cannot be read by this operator (it reads version {expected})")]
    Version {
        /// Version in the checkpoint.
        found: u32,
        /// Version the operator reads.
        expected: u32,
    },
    /// The snapshot has a shape this operator does not expect (keyed parts for an
    /// unkeyed state, several parts for one value).
    #[error("state has an unexpected shape: {0}")]
    Shape(String),
}

/// One piece of an operator's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatePart {
    /// The key group of every entry in this part, for keyed state; `None` for state
    /// that is not split by key.
    pub key_group: Option<u16>,
    /// The encoded entries.
    pub bytes: Vec<u8>,
}

/// An operator's state at one checkpoint.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use weir_runtime::checkpoint::{RestoreContext, Snapshot};
///
/// // A single value.
/// let s = Snapshot::of(1, &(7_u64, String::from("x")))?;
/// let back: (u64, String) = s.decode(1, &RestoreContext::default())?;
/// assert_eq!(back, (7, "x".to_string()));
///
/// // Keyed entries, split by key group.
/// let counts: HashMap<String, u64> = [("a".into(), 1), ("b".into(), 2)].into();
/// let s = Snapshot::keyed(1, counts.iter())?;
/// let mut back: Vec<(String, u64)> = s.decode_keyed(1, &RestoreContext::default())?;
/// back.sort();
/// assert_eq!(back, vec![("a".into(), 1), ("b".into(), 2)]);
/// # Ok::<(), weir_runtime::checkpoint::StateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The state's encoding version, chosen by the operator.
    pub version: u32,
    /// The pieces of the state.
    pub parts: Vec<StatePart>,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Snapshot {
    /// A state with one part holding `value`.
    ///
    /// # Errors
    ///
    /// [`StateError::Encode`] if `value` does not serialize.
    pub fn of<T: Serialize + ?Sized>(version: u32, value: &T) -> Result<Self, StateError> {
        Ok(Snapshot {
            version,
            parts: vec![StatePart {
                key_group: None,
                bytes: encode(value)?,
            }],
        })
    }

    /// A keyed state: the entries grouped by the key group of each key, one part
    /// per non-empty group, each part a list of `(key, value)` pairs.
    ///
    /// # Errors
    ///
    /// [`StateError::Encode`] if an entry does not serialize.
    pub fn keyed<'a, K, V, I>(version: u32, entries: I) -> Result<Self, StateError>
    where
        K: Hash + Serialize + 'a,
        V: Serialize + 'a,
        I: IntoIterator<Item = (&'a K, &'a V)>,
    {
        let mut groups: Vec<Vec<(&K, &V)>> = (0..KEY_GROUPS).map(|_| Vec::new()).collect();
        for (k, v) in entries {
            groups[usize::from(key_group_of(k))].push((k, v));
        }
        let mut parts = Vec::new();
        for (g, entries) in groups.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            parts.push(StatePart {
                key_group: Some(u16::try_from(g).unwrap_or(0)),
                bytes: encode(&entries)?,
            });
        }
        Ok(Snapshot { version, parts })
    }

    /// Decodes a state made with [`of`](Self::of), checking its version.
    ///
    /// # Errors
    ///
    /// [`StateError::Version`], [`StateError::Shape`] (not exactly one unkeyed part),
    /// [`StateError::TooLarge`] or [`StateError::Decode`].
    pub fn decode<T: DeserializeOwned>(
        &self,
        version: u32,
        ctx: &RestoreContext,
    ) -> Result<T, StateError> {
        self.check_version(version)?;
        match self.parts.as_slice() {
            [part] if part.key_group.is_none() => decode(&part.bytes, ctx.max_state_bytes),
            parts => Err(StateError::Shape(format!(
                "expected one unkeyed part, found {} parts",
                parts.len()
            ))),
        }
    }

    /// Decodes a keyed state made with [`keyed`](Self::keyed) (possibly merged from
    /// several replicas), keeping only the key groups `ctx` says this stage owns.
    ///
    /// # Errors
    ///
    /// [`StateError::Version`], [`StateError::Shape`] (an unkeyed part),
    /// [`StateError::TooLarge`] or [`StateError::Decode`].
    pub fn decode_keyed<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        version: u32,
        ctx: &RestoreContext,
    ) -> Result<Vec<(K, V)>, StateError> {
        self.check_version(version)?;
        let mut out = Vec::new();
        for part in &self.parts {
            let Some(group) = part.key_group else {
                return Err(StateError::Shape("an unkeyed part in a keyed state".into()));
            };
            if !ctx.owns(group) {
                continue;
            }
            let entries: Vec<(K, V)> = decode(&part.bytes, ctx.max_state_bytes)?;
            out.extend(entries);
        }
        Ok(out)
    }

    /// Total bytes of the parts.
    pub fn byte_len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    /// The parts of several snapshots of the same state (one per replica), as one:
    /// what a rescaled replica restores from. Keyed parts of the same group are kept
    /// side by side (each replica owned different keys).
    ///
    /// # Errors
    ///
    /// [`StateError::Version`] if the versions differ.
    pub fn merge(snapshots: impl IntoIterator<Item = Snapshot>) -> Result<Snapshot, StateError> {
        let mut merged: Option<Snapshot> = None;
        for s in snapshots {
            match &mut merged {
                None => merged = Some(s),
                Some(m) => {
                    if m.version != s.version {
                        return Err(StateError::Version {
                            found: s.version,
                            expected: m.version,
                        });
                    }
                    m.parts.extend(s.parts);
                }
            }
        }
        Ok(merged.unwrap_or_default())
    }

    fn check_version(&self, expected: u32) -> Result<(), StateError> {
        if self.version == expected {
            Ok(())
        } else {
            Err(StateError::Version {
                found: self.version,
                expected,
            })
        }
    }
}

/// Encodes `value` with the checkpoint codec (bincode 2, standard configuration).
///
/// # Errors
///
/// [`StateError::Encode`] if `value` does not serialize.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StateError::Encode(e.to_string()))
}

/// Decodes bytes made by [`encode`], refusing input longer than `limit` bytes and
/// letting bincode allocate at most 16 times the input's length (so a length prefix
/// inside the bytes cannot make it allocate more).
///
/// # Errors
///
/// [`StateError::TooLarge`] or [`StateError::Decode`] (also for trailing bytes).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, StateError> {
    if bytes.len() > limit {
        return Err(StateError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let budget = bytes.len().saturating_mul(16).max(1 << 10);
    let decoded = if budget <= 1 << 16 {
        decode_limited::<T, { 1 << 16 }>(bytes)
    } else if budget <= 1 << 20 {
        decode_limited::<T, { 1 << 20 }>(bytes)
    } else if budget <= 1 << 24 {
        decode_limited::<T, { 1 << 24 }>(bytes)
    } else if budget <= 1 << 28 {
        decode_limited::<T, { 1 << 28 }>(bytes)
    } else {
        decode_limited::<T, { usize::MAX }>(bytes)
    };
    match decoded {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(StateError::Decode(format!(
            "{} trailing bytes after the state",
            bytes.len() - used
        ))),
        Err(e) => Err(StateError::Decode(e.to_string())),
    }
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config().with_limit::<LIMIT>())
}

/// What a restoring operator is told besides its snapshot.
#[derive(Debug, Clone)]
pub struct RestoreContext {
    /// The checkpoint being restored.
    pub checkpoint: u64,
    /// Largest state part to decode, in bytes.
    pub max_state_bytes: usize,
    /// This stage's replica index and the replica count, for keyed state: only the
    /// key groups [`replica_of_group`] gives this replica are restored. `None` for
    /// a stage that is not a replica: every group is its own.
    pub replica: Option<(usize, usize)>,
}

impl Default for RestoreContext {
    fn default() -> Self {
        RestoreContext {
            checkpoint: 0,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            replica: None,
        }
    }
}

impl RestoreContext {
    /// Whether this stage restores key group `group`.
    pub fn owns(&self, group: u16) -> bool {
        match self.replica {
            None => true,
            Some((index, replicas)) => replica_of_group(group, replicas) == index,
        }
    }
}

/// State an operator keeps across a checkpoint and a restore.
///
/// An operator returns itself from
/// [`Operator::checkpoint`](crate::operator::Operator::checkpoint) to be
/// checkpointed. When a barrier has passed every input of the stage (every element
/// before it is in the state, none after it), the stage calls
/// [`snapshot`](Self::snapshot); when the pipeline starts from a checkpoint it calls
/// [`restore`](Self::restore) before the first element; when a checkpoint this
/// operator took part in is durable, it calls [`committed`](Self::committed).
///
/// A checkpointable operator is responsible for every element it holds
/// ([`Operator::held`](crate::operator::Operator::held)): they are part of its
/// state. An operator that holds elements and is not checkpointable (an async map
/// with futures in flight) is drained before the barrier passes it.
///
/// # Examples
///
/// A counter that survives a restart:
///
/// ```
/// use std::task::Context;
/// use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
/// use weir_runtime::operator::{Io, Operator, Step};
///
/// struct Count(u64);
///
/// impl Checkpointable for Count {
///     fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
///         Snapshot::of(1, &self.0)
///     }
///     fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
///         self.0 = s.decode(1, ctx)?;
///         Ok(())
///     }
/// }
///
/// impl Operator for Count {
///     type In = u64;
///     type Out = u64;
///     fn kind(&self) -> &'static str {
///         "count"
///     }
///     fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
///         while io.has_room() {
///             let Some(_) = io.pop() else { break };
///             self.0 += 1;
///             io.push(self.0);
///         }
///         io.finish_when_drained()
///     }
///     fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
///         Some(self)
///     }
/// }
/// ```
pub trait Checkpointable {
    /// The state now, everything before barrier `checkpoint` included.
    ///
    /// # Errors
    ///
    /// The state does not encode; the checkpoint fails and the pipeline goes on.
    fn snapshot(&mut self, checkpoint: u64) -> Result<Snapshot, StateError>;

    /// Replaces the state with `snapshot`'s. Called before the stage takes any
    /// element.
    ///
    /// # Errors
    ///
    /// The snapshot does not decode or has a version the operator cannot read; the
    /// pipeline is not started.
    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError>;

    /// The state now, as [`snapshot`](Self::snapshot), but encoded later, off the
    /// stage's thread: an operator with a large state copies what the snapshot
    /// needs (cheap) and returns [`Deferred::later`] with the encoding, which the
    /// checkpoint's writer thread runs. The stage then pauses only for the copy.
    /// Default: [`snapshot`](Self::snapshot) now.
    ///
    /// # Errors
    ///
    /// As [`snapshot`](Self::snapshot).
    fn snapshot_deferred(&mut self, checkpoint: u64) -> Result<Deferred, StateError> {
        self.snapshot(checkpoint).map(Deferred::ready)
    }

    /// The checkpoint `checkpoint`, whose snapshot this operator gave, is durable:
    /// a sink commits what it wrote before that barrier (a file sink renames its
    /// pending part; an acking source acks). Default: nothing.
    fn committed(&mut self, checkpoint: u64) {
        let _ = checkpoint;
    }
}

/// A snapshot taken now or to be encoded later (see
/// [`Checkpointable::snapshot_deferred`]).
///
/// # Examples
///
/// ```
/// use weir_runtime::checkpoint::{Deferred, Snapshot};
///
/// let copy: Vec<u64> = vec![1, 2, 3]; // a copy of the state, taken at the barrier
/// let later = Deferred::later(move || Snapshot::of(1, &copy));
/// assert_eq!(later.resolve()?, Snapshot::of(1, &vec![1_u64, 2, 3])?);
/// # Ok::<(), weir_runtime::checkpoint::StateError>(())
/// ```
pub struct Deferred(DeferredInner);

/// The encoding a [`Deferred`] runs later.
type Encode = Box<dyn FnOnce() -> Result<Snapshot, StateError> + Send>;

enum DeferredInner {
    Ready(Snapshot),
    Later(Encode),
}

impl Deferred {
    /// A snapshot already encoded.
    pub fn ready(snapshot: Snapshot) -> Self {
        Deferred(DeferredInner::Ready(snapshot))
    }

    /// A snapshot `encode` makes later, on another thread: it must own what it
    /// encodes (a copy of the state taken now).
    pub fn later(encode: impl FnOnce() -> Result<Snapshot, StateError> + Send + 'static) -> Self {
        Deferred(DeferredInner::Later(Box::new(encode)))
    }

    /// The snapshot: encodes it now if it was deferred.
    ///
    /// # Errors
    ///
    /// The deferred encoding's error.
    pub fn resolve(self) -> Result<Snapshot, StateError> {
        match self.0 {
            DeferredInner::Ready(s) => Ok(s),
            DeferredInner::Later(encode) => encode(),
        }
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            DeferredInner::Ready(s) => f.debug_tuple("Deferred::Ready").field(s).finish(),
            DeferredInner::Later(_) => f.write_str("Deferred::Later(..)"),
        }
    }
}

/// A hasher-independent helper for operators: the key group of a key hashed with
/// [`StableHasher`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StableBuildHasher;

impl std::hash::BuildHasher for StableBuildHasher {
    type Hasher = StableHasher;
    fn build_hasher(&self) -> StableHasher {
        StableHasher::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_prefix_larger_than_the_input_is_refused_not_allocated() {
        // A Vec<u8> claiming 2^40 elements in 9 bytes.
        let mut bytes = vec![253_u8];
        bytes.extend_from_slice(&(1_u64 << 40).to_le_bytes());
        let r: Result<Vec<u8>, _> = decode(&bytes, 1 << 20);
        assert!(matches!(r, Err(StateError::Decode(_))), "{r:?}");
    }

    #[test]
    fn parts_over_the_limit_are_refused() {
        let s = Snapshot::of(1, &vec![0_u8; 100]).unwrap();
        let ctx = RestoreContext {
            max_state_bytes: 10,
            ..RestoreContext::default()
        };
        let r: Result<Vec<u8>, _> = s.decode(1, &ctx);
        assert!(matches!(r, Err(StateError::TooLarge { .. })), "{r:?}");
    }

    #[test]
    fn a_wrong_version_names_both() {
        let s = Snapshot::of(2, &1_u8).unwrap();
        let r: Result<u8, _> = s.decode(1, &RestoreContext::default());
        assert_eq!(
            r,
            Err(StateError::Version {
                found: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn keyed_state_splits_exactly_over_any_replica_count() {
        let entries: Vec<(u64, u64)> = (0..1000).map(|k| (k, k * 10)).collect();
        let s = Snapshot::keyed(1, entries.iter().map(|(k, v)| (k, v))).unwrap();
        for replicas in [1, 2, 3, 4, 8, 128] {
            let mut all: Vec<(u64, u64)> = Vec::new();
            for r in 0..replicas {
                let ctx = RestoreContext {
                    replica: Some((r, replicas)),
                    ..RestoreContext::default()
                };
                let part: Vec<(u64, u64)> = s.decode_keyed(1, &ctx).unwrap();
                for (k, _) in &part {
                    assert_eq!(replica_of_group(key_group_of(k), replicas), r);
                }
                all.extend(part);
            }
            all.sort_unstable();
            assert_eq!(all, entries, "replicas = {replicas}");
        }
    }

    #[test]
    fn key_groups_spread() {
        let mut counts = [0_u32; KEY_GROUPS as usize];
        for k in 0..12_800_u64 {
            counts[usize::from(key_group_of(&k))] += 1;
        }
        assert!(counts.iter().all(|&c| c > 40 && c < 200), "{counts:?}");
    }
}
