//! Fan-in junctions: several inputs, one output.

use std::marker::PhantomData;

use super::{Junction, Ports, Routing};

/// Takes elements from every input as they come, fairly (Akka's `Merge`).
///
/// Order: each input's order is kept; inputs interleave by arrival. Fairness: the
/// inputs take turns, round-robin: in its turn an input hands over what it has
/// queued (at most its capacity), or as much as the output's room takes, and the
/// turn passes on. An input with elements waiting is served within one turn of
/// every other input, so a busy input cannot starve a slow one. Backpressure: each input has
/// its own queue and credit; an input is only asked for what its queue can hold.
/// Completion: when every input has ended and everything is sent. Failure: see
/// [`InputFailure`] (by default a failure upstream fails the pipeline).
#[derive(Debug)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Merge<T> {
    next: usize,
    on_failure: InputFailure,
    _t: PhantomData<fn(T) -> T>,
}

/// What a merge does when a stage feeding one of its inputs fails (after that
/// stage's own supervision gave up, or without supervision).
///
/// The stages that feed an input are its **branch**: going upstream from the
/// input, every stage whose only output leads, through stages with one output,
/// to that input. A junction ends the branch (its failure is never contained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFailure {
    /// The pipeline fails, as when any stage fails: every stage is aborted and
    /// the outcome is [`Outcome::Failed`](crate::Outcome::Failed). The default.
    #[default]
    FailPipeline,
    /// Only that input ends: the failed stage stops (its queue counted as
    /// abandoned, the element it failed on as failed), the stages before it in the
    /// branch are cancelled, and the merge goes on with its other inputs. The
    /// pipeline completes normally; the failure is listed in
    /// [`Report::contained`](crate::Report::contained) and published as a
    /// `StageFailed` event.
    EndInput,
}

impl<T> Default for Merge<T> {
    fn default() -> Self {
        Merge {
            next: 0,
            on_failure: InputFailure::default(),
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Merge<T> {
    /// A fair merge.
    pub fn new() -> Self {
        Merge::default()
    }

    /// What a failure in an input's branch does (default
    /// [`InputFailure::FailPipeline`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::junction::{InputFailure, Merge};
    ///
    /// let merge = Merge::<u64>::new().on_input_failure(InputFailure::EndInput);
    /// # drop(merge);
    /// ```
    pub fn on_input_failure(mut self, policy: InputFailure) -> Self {
        self.on_failure = policy;
        self
    }
}

impl<T: Send + 'static> Junction for Merge<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "merge"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Routes any input's elements as room allows: alignment never waits on it.
        None
    }

    fn contains_input_failures(&self) -> bool {
        self.on_failure == InputFailure::EndInput
    }

    fn validate(&self, inputs: usize, _outputs: usize) -> Result<(), String> {
        if inputs == 0 {
            return Err("a merge needs at least one input".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let n = ports.inputs();
        // Turns: the input whose turn it is hands over its whole queue, or as much
        // of it as the room takes, and the turn passes to the next input. Whole
        // queues move in bulk (often without moving an element), where sharing each
        // pass's room among the inputs would split every queue. Stops when the room
        // is used up or every input in a row had nothing.
        let mut idle = 0;
        while idle < n {
            let room = ports.room(0);
            if room == 0 {
                break;
            }
            let i = self.next;
            self.next = (i + 1) % n;
            if ports.forward(i, 0, room) == 0 {
                idle += 1;
            } else {
                idle = 0;
            }
        }
        if ports.all_exhausted() {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// How a [`MergePrioritized`] shares its output among inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Priority {
    /// Input 0 first: an input only gets room that every input before it left
    /// unused. A busy high-priority input starves the others, by design.
    Strict,
    /// Under contention, input `i` gets `weights[i]` elements for every
    /// `sum(weights)`; an idle input's share goes to the others. A weight of 0 is
    /// rejected when the graph is built.
    Weighted(Vec<u32>),
}

/// A merge that prefers some inputs (a priority fan-in, Akka's `MergePreferred`).
///
/// Order, backpressure and completion as for [`Merge`].
#[derive(Debug)]
pub struct MergePrioritized<T> {
    priority: Priority,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Send + 'static> MergePrioritized<T> {
    /// A merge sharing its output by `priority`.
    pub fn new(priority: Priority) -> Self {
        MergePrioritized {
            priority,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Junction for MergePrioritized<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "merge_prioritized"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Routes any input's elements as room allows: alignment never waits on it.
        None
    }

    fn validate(&self, inputs: usize, _outputs: usize) -> Result<(), String> {
        if inputs == 0 {
            return Err("a merge needs at least one input".into());
        }
        if let Priority::Weighted(w) = &self.priority {
            if w.len() != inputs {
                return Err(format!("{} weights for {inputs} inputs", w.len()));
            }
            if let Some(i) = w.iter().position(|&w| w == 0) {
                return Err(format!("input {i} has weight 0; use at least 1"));
            }
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let n = ports.inputs();
        loop {
            if ports.room(0) == 0 || (0..n).all(|i| ports.queued(i) == 0) {
                break;
            }
            match &self.priority {
                Priority::Strict => {
                    let Some(i) = (0..n).find(|&i| ports.queued(i) > 0) else {
                        break;
                    };
                    let take = ports.room(0);
                    ports.forward(i, 0, take);
                }
                Priority::Weighted(weights) => {
                    // One round: each input up to its weight.
                    for (i, &w) in weights.iter().enumerate() {
                        let take = (w as usize).min(ports.room(0));
                        ports.forward(i, 0, take);
                    }
                }
            }
        }
        if ports.all_exhausted() {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// All of input 0, then all of input 1, and so on (Akka's `Concat`).
///
/// Order: input by input, each in its order. Backpressure: the later inputs fill
/// their queues (bounded by capacity) and wait. Completion: when the last input
/// ends.
#[derive(Debug)]
pub struct Concat<T> {
    current: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Default for Concat<T> {
    fn default() -> Self {
        Concat {
            current: 0,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Concat<T> {
    /// A concatenation.
    pub fn new() -> Self {
        Concat::default()
    }
}

impl<T: Send + 'static> Junction for Concat<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "concat"
    }

    fn not_checkpointable(&self) -> Option<String> {
        Some("a concat reads its second input only after its first ended, so barriers on the later inputs would wait behind elements it cannot route yet; a checkpoint would have to hold those elements, which it does not yet".into())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        while self.current < ports.inputs() {
            let i = self.current;
            let room = ports.room(0);
            ports.forward(i, 0, room);
            if ports.is_exhausted(i) {
                self.current += 1;
            } else {
                return Routing::Continue;
            }
        }
        Routing::Finished
    }
}

/// `segment` elements from input 0, then `segment` from input 1, and so on, in turn
/// (Akka's `Interleave`). An input that ended is skipped.
///
/// Order: strict turns; the junction waits for the input whose turn it is.
/// Completion: when every input has ended.
#[derive(Debug)]
pub struct Interleave<T> {
    segment: usize,
    current: usize,
    taken: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Send + 'static> Interleave<T> {
    /// Turns of `segment` elements.
    pub fn new(segment: usize) -> Self {
        Interleave {
            segment,
            current: 0,
            taken: 0,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Junction for Interleave<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "interleave"
    }

    fn not_checkpointable(&self) -> Option<String> {
        Some("an interleave waits for one input at a time, so an aligned barrier could hold the input it waits for; a checkpoint would have to hold the other inputs' elements, which it does not yet".into())
    }

    fn validate(&self, _inputs: usize, _outputs: usize) -> Result<(), String> {
        if self.segment == 0 {
            return Err("interleave segment must be at least 1".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let n = ports.inputs();
        loop {
            if ports.all_exhausted() {
                return Routing::Finished;
            }
            let i = self.current;
            if self.taken == self.segment || ports.is_exhausted(i) {
                self.current = (i + 1) % n;
                self.taken = 0;
                continue;
            }
            if ports.room(0) == 0 {
                return Routing::Continue;
            }
            match ports.pop(i) {
                Some(x) => {
                    ports.push(0, x);
                    self.taken += 1;
                }
                None => return Routing::Continue,
            }
        }
    }
}

/// What a zip's two inputs carry inside the junction: input 0's elements on the
/// left, input 1's on the right.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ZipIn<A, B> {
    /// From input 0.
    Left(A),
    /// From input 1.
    Right(B),
}

impl<A, B> ZipIn<A, B> {
    pub(crate) fn left(self) -> Option<A> {
        match self {
            ZipIn::Left(a) => Some(a),
            ZipIn::Right(_) => None,
        }
    }

    pub(crate) fn right(self) -> Option<B> {
        match self {
            ZipIn::Left(_) => None,
            ZipIn::Right(b) => Some(b),
        }
    }
}

/// Pairs the k-th element of input 0 with the k-th of input 1 (Akka's `Zip`).
///
/// Completion: as soon as one input has ended and its queue is empty; the other
/// input is cancelled and the elements it had queued are counted as filtered
/// (they have no partner).
pub type Zip<A, B> = ZipWith<A, B, (A, B), fn(A, B) -> (A, B)>;

/// Combines the k-th element of input 0 with the k-th of input 1 by a function
/// (Akka's `ZipWith`). Completion as for [`Zip`]; a panic in the function fails the
/// pipeline, counting the two elements as failed.
pub struct ZipWith<A, B, C, F> {
    f: F,
    /// Set by [`checkpointed`](ZipWith::checkpointed): unmatched elements are
    /// kept in checkpoints.
    codec: Option<super::QueueCodec<ZipIn<A, B>>>,
    _t: PhantomData<fn(A, B) -> C>,
}

impl<A, B, C, F> std::fmt::Debug for ZipWith<A, B, C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipWith").finish_non_exhaustive()
    }
}

impl<A, B> ZipWith<A, B, (A, B), fn(A, B) -> (A, B)> {
    /// Pairs.
    pub fn pairs() -> Self {
        ZipWith::new(|a, b| (a, b))
    }
}

impl<A, B, C, F> ZipWith<A, B, C, F>
where
    F: FnMut(A, B) -> C,
{
    /// Combines with `f`.
    pub fn new(f: F) -> Self {
        ZipWith {
            f,
            codec: None,
            _t: PhantomData,
        }
    }

    /// Lets the zip be part of a checkpointed pipeline: the elements of one input
    /// still waiting for their partners at a checkpoint barrier are kept in the
    /// checkpoint (they need serde types), and a restore pairs them with what the
    /// other input sends after it. Built by
    /// [`Graph::zip_checkpointed`](crate::Graph::zip_checkpointed).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::junction::ZipWith;
    ///
    /// let zip = ZipWith::new(|a: u64, b: String| format!("{a}{b}")).checkpointed();
    /// # drop(zip);
    /// ```
    #[must_use]
    pub fn checkpointed(mut self) -> Self
    where
        A: serde::Serialize + serde::de::DeserializeOwned,
        B: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.codec = Some(super::QueueCodec::serde());
        self
    }
}

impl<A, B, C, F> Junction for ZipWith<A, B, C, F>
where
    A: Send + 'static,
    B: Send + 'static,
    C: Send + 'static,
    F: FnMut(A, B) -> C + Send + 'static,
{
    type In = ZipIn<A, B>;
    type Out = C;

    fn kind(&self) -> &'static str {
        "zip"
    }

    fn not_checkpointable(&self) -> Option<String> {
        if self.codec.is_some() {
            return None;
        }
        Some("a zip pairs its inputs element by element, so at a barrier one input can hold elements the other has not matched yet; they must be kept in the checkpoint: use Graph::zip_checkpointed / zip_with_checkpointed (serde element types)".into())
    }

    fn queue_codec(&self) -> Option<super::QueueCodec<ZipIn<A, B>>> {
        self.codec
    }

    fn route(&mut self, ports: &mut Ports<'_, ZipIn<A, B>, C>) -> Routing {
        while ports.room(0) > 0 && ports.queued(0) > 0 && ports.queued(1) > 0 {
            let (Some(a), Some(b)) = (ports.pop(0), ports.pop(1)) else {
                break;
            };
            match (a.left(), b.right()) {
                (Some(a), Some(b)) => {
                    let c = (self.f)(a, b);
                    ports.push(0, c);
                }
                // The ports are typed; a mismatch cannot be built.
                _ => ports.filter(2),
            }
            ports.commit();
        }
        for (ended, other) in [(0, 1), (1, 0)] {
            if ports.is_exhausted(ended) {
                ports.cancel_input(other);
                return Routing::Finished;
            }
        }
        Routing::Continue
    }
}
