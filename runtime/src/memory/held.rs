//! [`HeldCharge`]: the charge of elements a stage's operator keeps in buffers
//! of its own, outside its edges (a broadcast hub's subscriber buffers), named
//! in [`MemoryUsage::held`](super::MemoryUsage::held).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::{Budget, HeldBytes, Sizer};

/// A stage's share of the runtime's [memory budget](super) for elements its
/// operator keeps beyond its input queue, in buffers of its own that outlive
/// the step (a broadcast hub keeps copies for each subscriber until it reads
/// them). Given to the operator when the pipeline starts under a budget
/// ([`Operator::charge_held`]).
///
/// The operator charges each element when its buffer takes it and releases it
/// when it leaves (read, dropped, or with its buffer). Charging never waits:
/// such buffers are bounded by their capacities, and only sources wait on the
/// budget, so what is charged here holds the sources back until it is
/// released. What is still charged when the last clone is dropped is released
/// then. The bytes show in [`MemoryUsage::held`](super::MemoryUsage::held)
/// under the stage's name, with [`HeldBytes::buffer`] set to the operator's
/// kind.
///
/// [`Operator::charge_held`]: crate::operator::Operator::charge_held
pub struct HeldCharge<T> {
    log: Arc<HeldLog>,
    size: Sizer<T>,
}

impl<T> Clone for HeldCharge<T> {
    fn clone(&self) -> Self {
        HeldCharge {
            log: Arc::clone(&self.log),
            size: self.size.clone(),
        }
    }
}

impl<T> std::fmt::Debug for HeldCharge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldCharge")
            .field("stage", &self.log.stage)
            .field("elements", &self.log.elements.load(Relaxed))
            .field("bytes", &self.log.bytes.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> HeldCharge<T> {
    pub(crate) fn new(
        budget: &Arc<Budget>,
        size: Sizer<T>,
        pipeline: &str,
        stage: &str,
        kind: &'static str,
    ) -> Self {
        let log = Arc::new(HeldLog {
            budget: Arc::clone(budget),
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            kind,
            elements: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        budget.register(Arc::clone(&log) as Arc<dyn super::Holder>);
        HeldCharge { log, size }
    }

    /// The bytes `element` is charged.
    pub fn size_of(&self, element: &T) -> u64 {
        self.size.size(element)
    }

    /// `elements` of `bytes` in all entered the operator's buffers.
    pub fn charge(&self, elements: u64, bytes: u64) {
        self.log.elements.fetch_add(elements, Relaxed);
        self.log.bytes.fetch_add(bytes, Relaxed);
        self.log.budget.charge(bytes);
    }

    /// `elements` of `bytes` in all, charged before, left them.
    pub fn release(&self, elements: u64, bytes: u64) {
        self.log.elements.fetch_sub(elements, Relaxed);
        self.log.bytes.fetch_sub(bytes, Relaxed);
        self.log.budget.release(bytes);
    }
}

/// What one stage's [`HeldCharge`]s hold, for [`MemoryUsage::held`](super::MemoryUsage::held).
pub(crate) struct HeldLog {
    budget: Arc<Budget>,
    pipeline: String,
    stage: String,
    kind: &'static str,
    elements: AtomicU64,
    bytes: AtomicU64,
}

impl super::Holder for HeldLog {
    fn held(&self) -> HeldBytes {
        HeldBytes {
            pipeline: self.pipeline.clone(),
            stage: self.stage.clone(),
            port: None,
            buffer: Some(self.kind),
            elements: self.elements.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

impl Drop for HeldLog {
    fn drop(&mut self) {
        // Whatever is still charged was dropped with the last buffer.
        let bytes = *self.bytes.get_mut();
        self.budget.release(bytes);
    }
}
