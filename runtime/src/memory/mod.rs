//! A process-wide memory budget: the bytes of the elements every pipeline of a
//! [`Runtime`](crate::Runtime) holds on its edges, bounded by one figure.
//!
//! Each edge is bounded in *elements* by its capacity (credit); a budget bounds
//! the *bytes* of all of them together. Every element a stage or junction puts
//! on an edge is charged, with its size, from the moment it is produced (in the
//! sender's outbox or output buffer), through the mailbox, until the receiver
//! has taken it out of its input queue. When the budget is exhausted, **sources
//! stop admitting** — nothing else waits on it: stages and junctions always
//! hand on what they hold, so the bytes flow out and the sources resume. That
//! is why a budget cannot deadlock a pipeline.
//!
//! ```text
//!   source ──► [outbox │ mailbox │ queue] ──► stage ──► [outbox │ mailbox │ queue] ──► sink
//!     ▲          └──────── charged ───────┘               └──────── charged ───────┘
//!     └── admits only while  used < limit          (released as the receiver takes them)
//! ```
//!
//! Sizes come from a sizer per element type: the [`ByteSize`] of the common
//! types is built in (strings, byte vectors, boxes, numbers), others are
//! registered on the budget ([`MemoryBudget::sized`], [`MemoryBudget::sizer`])
//! or per pipeline ([`Runnable::sizer`](crate::Runnable::sizer)); a type with
//! no sizer is charged `size_of::<T>()` (its inline size, not its heap).
//!
//! # Examples
//!
//! ```
//! use weir_runtime::Runtime;
//! use weir_runtime::memory::{ByteSize, MemoryBudget};
//!
//! struct Event {
//!     payload: Vec<u8>,
//! }
//!
//! let rt = Runtime::builder()
//!     .arbiters(1)
//!     .memory_budget(
//!         MemoryBudget::new(256 << 20)
//!             .max_element_bytes(1 << 20)
//!             .sizer(|e: &Event| (size_of::<Event>() + e.payload.capacity()) as u64),
//!     )
//!     .build()?;
//! let usage = rt.memory().expect("a budget is set");
//! assert_eq!((usage.limit, usage.used), (256 << 20, 0));
//! assert_eq!(vec![0u8; 100].byte_size(), size_of::<Vec<u8>>() + 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `weir/tests/memory_budget.rs` runs three pipelines flooding one budget.

mod buffer;
mod core;
mod edge;
mod held;
mod size;

/// What `core.rs` is written against: `std`'s types here, loom's in its model.
mod sync {
    pub(crate) use std::sync::Mutex;
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
}

use self::core::BudgetCore;

pub use buffer::BufferCharge;
pub(crate) use edge::{EdgeLog, OutCharge};
pub use held::HeldCharge;
pub use size::ByteSize;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// A sizer for elements of type `T`: the bytes one element holds.
pub(crate) type SizeFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// How an edge sizes its elements: a registered function, or the same inline
/// size for every element (a type with no sizer), which needs no call.
pub(crate) enum Sizer<T> {
    Inline(u64),
    Fn(SizeFn<T>),
}

impl<T> Clone for Sizer<T> {
    fn clone(&self) -> Self {
        match self {
            Sizer::Inline(n) => Sizer::Inline(*n),
            Sizer::Fn(f) => Sizer::Fn(Arc::clone(f)),
        }
    }
}

impl<T> Sizer<T> {
    pub(crate) fn size(&self, x: &T) -> u64 {
        match self {
            Sizer::Inline(n) => *n,
            Sizer::Fn(f) => f(x),
        }
    }
}

/// Sizers by element type.
#[derive(Clone, Default)]
pub(crate) struct Sizers(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Sizers {
    /// Sizes `T` with `f`, and `(u64, T)` (an ordered pool numbers its
    /// elements so on its edges) from it.
    pub(crate) fn insert<T: 'static>(&mut self, f: SizeFn<T>) {
        let numbered: SizeFn<(u64, T)> = {
            let f = Arc::clone(&f);
            let extra = (size_of::<(u64, T)>() as u64).saturating_sub(size_of::<T>() as u64);
            Arc::new(move |(_, x): &(u64, T)| f(x) + extra)
        };
        self.0.insert(TypeId::of::<T>(), Arc::new(f));
        self.0
            .entry(TypeId::of::<(u64, T)>())
            .or_insert_with(|| Arc::new(numbered));
    }

    /// Takes `other`'s sizers for the types this has none for.
    pub(crate) fn absorb(&mut self, other: Sizers) {
        for (k, v) in other.0 {
            self.0.entry(k).or_insert(v);
        }
    }

    fn get<T: 'static>(&self) -> Option<SizeFn<T>> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|f| f.downcast_ref::<SizeFn<T>>())
            .cloned()
    }

    fn with_defaults() -> Self {
        let mut s = Sizers::default();
        macro_rules! builtin {
            ($($t:ty),* $(,)?) => {$(
                s.insert::<$t>(Arc::new(|x: &$t| ByteSize::byte_size(x) as u64));
            )*};
        }
        builtin!(
            String,
            Box<str>,
            Arc<str>,
            Vec<u8>,
            Box<[u8]>,
            Arc<[u8]>,
            Vec<String>,
            Vec<u16>,
            Vec<u32>,
            Vec<u64>,
            Vec<i32>,
            Vec<i64>,
            Vec<f32>,
            Vec<f64>,
            (String, String),
            (String, u64),
            (String, i64),
            (String, f64),
            (u64, String),
            (String, Vec<u8>),
            (u64, Vec<u8>),
            Option<String>,
            Option<Vec<u8>>,
        );
        s
    }
}

impl fmt::Debug for Sizers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sizers({} types)", self.0.len())
    }
}

/// A memory budget for a whole [`Runtime`](crate::Runtime), set with
/// [`RuntimeBuilder::memory_budget`](crate::RuntimeBuilder::memory_budget). See
/// the [module](self) for what it charges and how sources wait on it.
#[derive(Debug, Clone)]
#[must_use = "a MemoryBudget does nothing until given to RuntimeBuilder::memory_budget"]
pub struct MemoryBudget {
    limit: u64,
    max_element: Option<u64>,
    sizers: Sizers,
}

impl MemoryBudget {
    /// A budget of `bytes` for the elements every pipeline of the runtime holds
    /// on its edges.
    pub fn new(bytes: u64) -> Self {
        MemoryBudget {
            limit: bytes,
            max_element: None,
            sizers: Sizers::with_defaults(),
        }
    }

    /// The largest element the runtime's pipelines carry, in bytes: a budget
    /// smaller than it is refused when the runtime is built
    /// ([`RuntimeError::BudgetTooSmall`](crate::RuntimeError::BudgetTooSmall)),
    /// and a pipeline with a stage that admits larger elements (its operator's
    /// [`max_element_bytes`](crate::operator::Operator::max_element_bytes)) than
    /// the budget is refused when it is built.
    pub fn max_element_bytes(mut self, bytes: u64) -> Self {
        self.max_element = Some(bytes);
        self
    }

    /// Sizes elements of type `T` with `f` (bytes held, heap included), in every
    /// pipeline of the runtime that does not size `T` itself.
    pub fn sizer<T: 'static>(mut self, f: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Self {
        self.sizers.insert::<T>(Arc::new(f));
        self
    }

    /// Sizes elements of type `T` with its [`ByteSize`].
    pub fn sized<T: ByteSize + 'static>(self) -> Self {
        self.sizer::<T>(|x| x.byte_size() as u64)
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn check(&self) -> Result<(), crate::RuntimeError> {
        match self.max_element {
            Some(element) if element > self.limit => Err(crate::RuntimeError::BudgetTooSmall {
                budget: self.limit,
                element,
            }),
            _ if self.limit == 0 => Err(crate::RuntimeError::BudgetTooSmall {
                budget: 0,
                element: 1,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn start(self) -> Arc<Budget> {
        Arc::new(Budget {
            core: BudgetCore::new(self.limit),
            holders: Mutex::new(Vec::new()),
            sizers: self.sizers,
        })
    }
}

impl From<u64> for MemoryBudget {
    fn from(bytes: u64) -> Self {
        MemoryBudget::new(bytes)
    }
}

/// The running budget, shared by every charged edge of the runtime: its
/// counters ([`BudgetCore`], what threads share), the charged edges and the
/// sizers.
pub(crate) struct Budget {
    core: BudgetCore,
    /// Every charged edge and operator buffer, for [`MemoryUsage::held`].
    holders: Mutex<Vec<Weak<dyn Holder>>>,
    sizers: Sizers,
}

impl std::ops::Deref for Budget {
    type Target = BudgetCore;
    fn deref(&self) -> &BudgetCore {
        &self.core
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.core.limit)
            .field("used", &self.core.used())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// The sizer for `T`: the pipeline's, the budget's, or `size_of::<T>()`.
    pub(crate) fn sizer_for<T: 'static>(&self, pipeline: &Sizers) -> Sizer<T> {
        match pipeline.get::<T>().or_else(|| self.sizers.get::<T>()) {
            Some(f) => Sizer::Fn(f),
            None => Sizer::Inline(std::mem::size_of::<T>() as u64),
        }
    }

    pub(crate) fn register(&self, holder: Arc<dyn Holder>) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        holders.retain(|w| w.strong_count() > 0);
        holders.push(Arc::downgrade(&holder));
    }

    pub(crate) fn usage(&self) -> MemoryUsage {
        let held = {
            let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
            holders
                .iter()
                .filter_map(Weak::upgrade)
                .map(|log| log.held())
                .filter(|h| h.bytes > 0 || h.elements > 0)
                .collect()
        };
        MemoryUsage {
            limit: self.core.limit(),
            used: self.core.used(),
            peak: self.core.peak(),
            source_waits: self.core.waits(),
            held,
        }
    }
}

/// What holds charged bytes: an edge ([`EdgeLog`]) or an operator's own
/// buffers ([`HeldCharge`]).
pub(crate) trait Holder: Send + Sync {
    fn held(&self) -> HeldBytes;
}

/// A pipeline's share of the budget: the budget and the pipeline's sizers.
#[derive(Debug)]
pub(crate) struct PipelineMemory {
    pub(crate) budget: Arc<Budget>,
    pub(crate) sizers: Sizers,
}

impl PipelineMemory {
    /// The charge of a source's own buffer of `T`.
    pub(crate) fn buffer_charge<T: 'static>(&self) -> BufferCharge<T> {
        BufferCharge::new(
            Arc::clone(&self.budget),
            self.budget.sizer_for::<T>(&self.sizers),
        )
    }

    /// The charge of what `stage`'s operator (of kind `kind`) keeps in buffers
    /// of its own.
    pub(crate) fn held_charge<T: 'static>(
        &self,
        pipeline: &str,
        stage: &str,
        kind: &'static str,
    ) -> HeldCharge<T> {
        HeldCharge::new(
            &self.budget,
            self.budget.sizer_for::<T>(&self.sizers),
            pipeline,
            stage,
            kind,
        )
    }

    /// The charge of a new edge out of `stage` (output `port` of a junction),
    /// recorded in `slot` for the receiver to release.
    pub(crate) fn charge_for<T: 'static>(
        &self,
        pipeline: &str,
        stage: &str,
        port: Option<usize>,
        slot: &std::sync::OnceLock<Arc<EdgeLog>>,
    ) -> OutCharge<T> {
        let log = slot.get_or_init(|| EdgeLog::new(&self.budget, pipeline, stage, port));
        OutCharge::new(Arc::clone(log), self.budget.sizer_for::<T>(&self.sizers))
    }
}

/// What a runtime's [`MemoryBudget`] holds now
/// ([`Runtime::memory`](crate::Runtime::memory)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// The budget, in bytes.
    pub limit: u64,
    /// Bytes charged now, over every pipeline.
    pub used: u64,
    /// The most bytes charged at once since the runtime started.
    pub peak: u64,
    /// Times a source found the budget exhausted and waited for room.
    pub source_waits: u64,
    /// Who holds what: every edge holding elements now, and every stage whose
    /// operator keeps charged elements in buffers of its own.
    pub held: Vec<HeldBytes>,
}

/// The elements one edge (or one stage's own buffers, [`buffer`](Self::buffer))
/// holds, charged to the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldBytes {
    /// The pipeline.
    pub pipeline: String,
    /// The stage (or junction) that produced the elements: they are in its
    /// outbox, on the way, or in the next stage's input queue.
    pub stage: String,
    /// The output port, for a junction.
    pub port: Option<usize>,
    /// `None` for an edge. For elements the stage's operator keeps in buffers
    /// of its own ([`HeldCharge`]), the operator's kind: `"broadcast_hub"` for
    /// a broadcast hub's subscriber buffers (those of SSE and WebSocket
    /// clients included).
    pub buffer: Option<&'static str>,
    /// Elements held.
    pub elements: u64,
    /// Their bytes.
    pub bytes: u64,
}
