//! One request's elements, its body and its idempotency key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::header::HeaderValue;

use super::Encoding;

/// Where an element's idempotency key comes from.
pub(crate) enum Keys<T> {
    /// `<run>-<index>`: this sink's run id and the element's input position.
    Sequence(String),
    /// The user's function of the element.
    With(Arc<dyn Fn(&T) -> String + Send + Sync>),
}

impl<T> Keys<T> {
    /// Sequence keys under a fresh run id: the clock, the process and a count
    /// of the sinks made in it, mixed.
    pub(crate) fn sequence() -> Self {
        static SINKS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ SINKS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Keys::Sequence(format!("{:016x}", mix(seed)))
    }

    /// The key of `element`, the stage's `index`-th input.
    pub(crate) fn of(&self, element: &T, index: u64) -> String {
        match self {
            Keys::Sequence(run) => format!("{run}-{index}"),
            Keys::With(key) => key(element),
        }
    }
}

/// A splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of a request carrying elements with `keys`: the one key for one
/// element, else `batch-<n>-<FNV-1a of the keys>`, the same for the same keys
/// in the same order.
pub(crate) fn batch_key(keys: &[String]) -> String {
    if let [one] = keys {
        return one.clone();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for key in keys {
        for &b in key.as_bytes().iter().chain(b"\n") {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("batch-{}-{hash:016x}", keys.len())
}

/// The content type of `encoding`'s bodies.
pub(crate) fn content_type(encoding: Encoding) -> HeaderValue {
    HeaderValue::from_static(match encoding {
        Encoding::Json => "application/json",
        Encoding::Ndjson { .. } => "application/x-ndjson",
    })
}

/// Appends `element`'s encoding to `body`: its JSON, and a newline for NDJSON.
///
/// # Errors
///
/// The serializer's message; `body` is left as it was.
pub(crate) fn encode<T: serde::Serialize>(
    encoding: Encoding,
    element: &T,
    body: &mut Vec<u8>,
) -> Result<(), String> {
    let len = body.len();
    if let Err(e) = serde_json::to_writer(&mut *body, element) {
        body.truncate(len);
        return Err(format!("cannot encode the element as JSON: {e}"));
    }
    if matches!(encoding, Encoding::Ndjson { .. }) {
        body.push(b'\n');
    }
    Ok(())
}

/// The elements of one request, with their input positions, and what is sent.
pub(crate) struct Batch<T> {
    pub(crate) elements: Vec<(T, u64)>,
    pub(crate) body: Bytes,
    pub(crate) key: Option<HeaderValue>,
    /// Failed attempts so far (0 before the first answer).
    pub(crate) attempt: u32,
}

impl<T: serde::Serialize> Batch<T> {
    /// The batch of `elements` again (after some of them left it), with its body
    /// and key made anew; the attempts so far are kept.
    pub(crate) fn rebuild(self, encoding: Encoding, keys: Option<&Keys<T>>) -> Self {
        let attempt = self.attempt;
        let mut builder = Builder::new(encoding, keys);
        for (element, index) in self.elements {
            // Each encoded once already, so each encodes again.
            let _ = builder.push(element, index);
        }
        Batch {
            attempt,
            ..builder.finish()
        }
    }
}

/// Gathers a batch one element at a time, refusing those that cannot be sent.
pub(crate) struct Builder<'k, T> {
    encoding: Encoding,
    keys: Option<&'k Keys<T>>,
    elements: Vec<(T, u64)>,
    body: Vec<u8>,
    element_keys: Vec<String>,
}

impl<'k, T: serde::Serialize> Builder<'k, T> {
    pub(crate) fn new(encoding: Encoding, keys: Option<&'k Keys<T>>) -> Self {
        Builder {
            encoding,
            keys,
            elements: Vec::new(),
            body: Vec::new(),
            element_keys: Vec::new(),
        }
    }

    /// Elements gathered.
    pub(crate) fn len(&self) -> usize {
        self.elements.len()
    }

    /// Adds `element`, the stage's `index`-th input.
    ///
    /// # Errors
    ///
    /// The element back, with why it cannot be sent: it does not encode as
    /// JSON, or its idempotency key is not a valid header value.
    pub(crate) fn push(&mut self, element: T, index: u64) -> Result<(), (T, String)> {
        let key = match self.keys {
            Some(keys) => {
                let key = keys.of(&element, index);
                if HeaderValue::from_str(&key).is_err() {
                    let why = format!("the idempotency key {key:?} is not a valid header value");
                    return Err((element, why));
                }
                Some(key)
            }
            None => None,
        };
        if let Err(why) = encode(self.encoding, &element, &mut self.body) {
            return Err((element, why));
        }
        self.element_keys.extend(key);
        self.elements.push((element, index));
        Ok(())
    }

    /// The batch of the elements gathered.
    pub(crate) fn finish(self) -> Batch<T> {
        let key = self.keys.and_then(|_| {
            // Made of valid header values and ASCII: cannot fail.
            HeaderValue::from_str(&batch_key(&self.element_keys)).ok()
        });
        Batch {
            elements: self.elements,
            body: Bytes::from(self.body),
            key,
            attempt: 0,
        }
    }
}
