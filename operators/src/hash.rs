//! The hash maps of per-key state: keyed `scan`/`fold`/`aggregate`/`dedupe`,
//! the windows and the joins.
//!
//! They hash every element's key, so the hasher is on the hot path: foldhash's
//! `fast::RandomState` (the hasher hashbrown uses by default) is several times
//! faster than std's SipHash-1-3 on integers and short strings. Each map gets its
//! own random seed, so the maps' layout cannot be predicted from outside, which
//! is what keeps crafted keys from degrading them (HashDoS) — but foldhash does
//! not claim SipHash's cryptographic strength against an attacker who can
//! observe timing over many keys. Key *groups* (which replica owns a key after a
//! rescale) do not use it: they need a hash that is the same in every process
//! (`weir_runtime::checkpoint::key_group_of`).

/// A `HashMap` with the state hasher.
pub(crate) type StateMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
