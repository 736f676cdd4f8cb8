//! Time slices: a stage whose steps are slow (about a microsecond of user code
//! per element or more) takes fewer elements per step and hands its arbiter
//! back between slices, so that the other actors on that arbiter (a pool's
//! dispatch, another pipeline's stages) run at least every [`SLICE`] (every
//! [`SLICE_ALONE`] for a stage that has its arbiter to itself).
//!
//! An arbiter runs its actors cooperatively: without slices a replica with 4,096
//! queued elements of 1 µs each held its thread for 4 ms per step, and nothing
//! else on that arbiter ran meanwhile (not the dispatch feeding the other
//! replicas, not the sink taking their results). The operating system slices
//! the threads of a thread pool; weir slices its steps.
//!
//! Fast stages are not slowed: a step is timed only once in [`SAMPLE_EVERY`]
//! while the stage looks fast, and only a step that took longer than the slice
//! makes the stage slice (then every step is timed, which costs little next to
//! the step). Steps that are quick again let the limit grow back until the
//! stage no longer slices. A stage other than a source starts limited to
//! [`PROBE`] elements and grows from there, so that even the first step of a
//! slow stage is short; a stage that was fast and turns slow (or a slow source)
//! takes up to [`SAMPLE_EVERY`] whole steps before a sampled one sees it.
//!
//! ```text
//!  arbiter 0, no slices:   [ replica 1: 4 ms step ][dispatch][collect][ replica 1: 4 ms … ]
//!  arbiter 0, slices:      [r1 ≤SLICE][dispatch][collect][sink][r1 ≤SLICE][dispatch]…
//!  arbiter 1 (alone):      [r0 ≤SLICE_ALONE, grant][r0 ≤SLICE_ALONE][r0 …, grant]…
//! ```

use std::future::Future;
use std::task;
use std::time::{Duration, Instant};

/// The longest a stage runs steps before it hands its arbiter back, when it
/// shares the arbiter with another of weir's actors.
pub(super) const SLICE: Duration = Duration::from_micros(200);

/// The same for a stage alone on its arbiter (see [`TimeSlice::record`]).
pub(super) const SLICE_ALONE: Duration = Duration::from_millis(1);

/// While a stage looks fast, one step in this many is timed.
pub(super) const SAMPLE_EVERY: u32 = 32;

/// A stage starts with this limit, as if it were slow, and every step is timed
/// until the limit has grown past [`UNLIMITED_AT`] (doubling after each quick
/// step): a stage of unknown speed could otherwise hold its arbiter for its
/// whole first queue.
const PROBE: usize = 16;

/// A limit that grew back past this is lifted: the stage is fast again.
const UNLIMITED_AT: usize = 1 << 16;

/// A stage's slicing state.
#[derive(Debug)]
pub(super) struct TimeSlice {
    /// Elements per step; `usize::MAX` while the stage looks fast.
    limit: usize,
    /// Steps seen, for sampling.
    steps: u32,
    /// Time spent in timed steps since the stage last handed its arbiter back.
    spent: Duration,
    /// A sampled step of a stage without a limit took longer than a slice: every
    /// step is timed until the next says whether the stage really is slow (a
    /// thread preempted by the OS makes one step of a fast stage look slow, and
    /// limiting it then cost the default chain about 4 %).
    suspect: bool,
}

impl TimeSlice {
    /// The slicing state of a new stage: probing, except for a source, whose
    /// first steps fill the room it is given (as a source of small batches
    /// joins them up to the room); a slow source is seen by its first sampled
    /// step.
    pub(super) fn new(is_source: bool) -> Self {
        TimeSlice {
            limit: if is_source { usize::MAX } else { PROBE },
            steps: 0,
            spent: Duration::ZERO,
            suspect: false,
        }
    }

    /// The most elements the next step may take.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Whether to time the next step: every step of a slicing stage, one in
    /// [`SAMPLE_EVERY`] (the first included) of the others.
    #[inline]
    pub(super) fn start(&mut self) -> Option<Instant> {
        self.steps = self.steps.wrapping_add(1);
        let timed = self.limit != usize::MAX || self.suspect || self.steps % SAMPLE_EVERY == 1;
        timed.then(Instant::now)
    }

    /// Records a timed step that took `elapsed` for `elements` elements (taken
    /// or, for a source, produced). Returns true when the stage has used its
    /// slice and should hand its arbiter back now.
    #[inline(never)]
    pub(super) fn record(&mut self, elapsed: Duration, elements: usize) -> bool {
        self.record_sharing(elapsed, elements, crate::stage::neighbours::shared())
    }

    /// [`record`](Self::record), told whether the stage shares its arbiter with
    /// another of weir's actors: then its slice is [`SLICE`]; alone, it is
    /// [`SLICE_ALONE`]. A stage alone still slices, so that it grants what it
    /// took upstream while it works through a long queue (a pool replica that
    /// granted only after its whole queue idled for a round trip through the
    /// dispatch's arbiter), but in longer slices: each slice ends with a batch
    /// (and often a thread wake-up) for the next actor, and 200 µs slices cost a
    /// lone replica about 10 % of its throughput.
    fn record_sharing(&mut self, elapsed: Duration, elements: usize, sharing: bool) -> bool {
        let slice = if sharing { SLICE } else { SLICE_ALONE };
        self.spent += elapsed;
        if elements > 0 {
            let per_element = elapsed.as_nanos() / elements as u128;
            if elapsed > slice && self.limit == usize::MAX && !self.suspect {
                // One slow step of a stage that was fast: see the next.
                self.suspect = true;
            } else if elapsed > slice {
                // Aim at half a slice per step, so that a slice holds two.
                let fit = (slice.as_nanos() / 2) / per_element.max(1);
                self.limit = usize::try_from(fit).unwrap_or(usize::MAX).max(1);
                self.suspect = false;
            } else if self.limit == usize::MAX {
                self.suspect = false;
            } else if elapsed < slice / 8 {
                self.limit = self.limit.saturating_mul(2);
                if self.limit >= UNLIMITED_AT {
                    self.limit = usize::MAX;
                }
            }
        }
        self.spent >= slice
    }

    /// Hands the arbiter back: the stage's task is woken again only after every
    /// other task ready on the arbiter ran and the runtime looked for wake-ups
    /// from other threads and timers. A plain `wake_by_ref` would not do: the
    /// runtime takes tasks woken from other threads (a grant from a replica on
    /// another arbiter, an `Ingress` send) only once in 31 polls of local ones,
    /// so a stage waking itself after each 2 ms step kept them waiting about
    /// 60 ms (a ping through another pipeline took 157 ms in the test).
    #[cold]
    pub(super) fn hand_back(cx: &mut task::Context<'_>) {
        let mut yielding = std::pin::pin!(tokio::task::yield_now());
        if yielding.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    /// The stage handed its arbiter back (or went idle): a new slice begins.
    pub(super) fn reset(&mut self) {
        self.spent = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_stage_is_sampled_and_never_limited() {
        let mut slice = TimeSlice::new(false);
        assert_eq!(slice.limit(), PROBE, "a new stage probes");
        // Quick steps double the limit until it is lifted, every one timed.
        let mut probing = 0;
        while slice.limit() != usize::MAX {
            assert!(slice.start().is_some());
            assert!(!slice.record_sharing(Duration::from_micros(1), slice.limit(), true));
            slice.reset();
            probing += 1;
        }
        assert_eq!(probing, (UNLIMITED_AT / PROBE).ilog2());
        let timed = (0..64).filter(|_| slice.start().is_some()).count();
        assert_eq!(timed, 64 / SAMPLE_EVERY as usize);
        assert!(!slice.record_sharing(Duration::from_micros(5), 1024, true));
        assert_eq!(slice.limit(), usize::MAX);
    }

    #[test]
    fn a_slow_step_limits_the_next_to_half_a_slice_and_yields() {
        let mut slice = TimeSlice::new(false);
        // 4,096 elements of 1 µs, longer than a slice.
        assert!(SLICE < Duration::from_millis(4));
        assert!(slice.record_sharing(Duration::from_millis(4), 4096, true));
        let half_slice = (SLICE.as_micros() / 2) as usize;
        let near = half_slice - half_slice / 10..=half_slice + half_slice / 10;
        assert!(near.contains(&slice.limit()), "{}", slice.limit());
        // Every step is timed now; two half-slice steps fill the slice.
        slice.reset();
        assert!(slice.start().is_some() && slice.start().is_some());
        assert!(!slice.record_sharing(SLICE / 2, half_slice, true));
        assert!(slice.record_sharing(SLICE / 2, half_slice, true));
    }

    #[test]
    fn quick_steps_lift_the_limit_again() {
        let mut slice = TimeSlice::new(false);
        assert!(slice.record_sharing(SLICE * 20, 10, true));
        assert_eq!(slice.limit(), 1);
        for _ in 0..20 {
            slice.reset();
            let _ = slice.record_sharing(Duration::from_micros(1), slice.limit().min(1000), true);
        }
        assert_eq!(slice.limit(), usize::MAX);
    }

    #[test]
    fn one_slow_step_of_a_fast_stage_is_a_hiccup() {
        let mut slice = TimeSlice::new(true);
        assert!(slice.record_sharing(SLICE * 2, 1024, true));
        assert!(slice.suspect);
        slice.reset();
        assert!(slice.start().is_some());
        assert!(!slice.record_sharing(Duration::from_micros(3), 1024, true));
        assert_eq!(slice.limit(), usize::MAX);
        assert!(!slice.suspect);
    }

    #[test]
    fn a_stage_alone_on_its_arbiter_slices_longer() {
        let mut alone = TimeSlice::new(false);
        let mut shared = TimeSlice::new(false);
        // 4,096 elements of 1 µs.
        assert!(alone.record_sharing(Duration::from_millis(4), 4096, false));
        assert!(shared.record_sharing(Duration::from_millis(4), 4096, true));
        let ratio = alone.limit() as f64 / shared.limit() as f64;
        let expected = SLICE_ALONE.as_secs_f64() / SLICE.as_secs_f64();
        assert!((ratio - expected).abs() < 0.2 * expected, "{ratio}");
        alone.reset();
        assert!(!alone.record_sharing(SLICE * 2, alone.limit(), false));
        assert!(alone.record_sharing(SLICE_ALONE, alone.limit(), false));
    }

    #[test]
    fn a_source_starts_unlimited() {
        let mut slice = TimeSlice::new(true);
        assert_eq!(slice.limit(), usize::MAX);
        assert!(slice.start().is_some(), "its first step is sampled");
        assert!(slice.record_sharing(SLICE * 4, 100, true));
        assert_eq!(slice.limit(), usize::MAX, "one slow step is only suspect");
        assert!(slice.start().is_some(), "the next is timed");
        assert!(slice.record_sharing(SLICE * 4, 100, true));
        assert!(slice.limit() < 100);
    }

    #[test]
    fn steps_that_took_nothing_only_add_their_time() {
        let mut slice = TimeSlice::new(false);
        assert!(!slice.record_sharing(SLICE * 3 / 4, 0, true));
        assert_eq!(slice.limit(), PROBE, "no elements: no speed to judge");
        assert!(slice.record_sharing(SLICE / 2, 0, true));
    }
}
