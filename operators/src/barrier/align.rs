//! [`Alignment`]: the step-alignment engine behind [`Barrier`](super::Barrier),
//! kept apart from the junction so that checkpoint barriers can reuse it.
//!
//! It knows nothing of elements: it is told, per input, whether that input has
//! reached the current step, and says whether the step can be released, how
//! long it may still wait, or which inputs are late.

use std::time::{Duration, Instant};

/// What the inputs' positions mean for the current step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Aligned {
    /// No input has reached the step yet: nothing to wait for.
    Idle,
    /// Every input has reached the step: release it.
    Ready,
    /// Some inputs have reached the step; wait for the others until `deadline`
    /// (none without a timeout).
    Waiting { deadline: Option<Instant> },
    /// The timeout passed with `late` inputs still short of the step.
    TimedOut { late: Vec<usize>, waited: Duration },
}

/// Step alignment over `inputs` inputs.
#[derive(Debug, Clone)]
pub(crate) struct Alignment {
    inputs: usize,
    step: u64,
    /// When the first input was seen at the current step while others were not.
    open_since: Option<Instant>,
    timeout: Option<Duration>,
}

impl Alignment {
    pub(crate) fn new(inputs: usize, timeout: Option<Duration>) -> Self {
        Alignment {
            inputs,
            step: 0,
            open_since: None,
            timeout,
        }
    }

    /// The step being aligned (the number of steps released so far).
    pub(crate) fn step(&self) -> u64 {
        self.step
    }

    /// Looks at the inputs at `now`; `arrived(i)` says whether input `i` has
    /// reached the current step.
    pub(crate) fn observe(&mut self, arrived: impl Fn(usize) -> bool, now: Instant) -> Aligned {
        let late: Vec<usize> = (0..self.inputs).filter(|&i| !arrived(i)).collect();
        if late.is_empty() {
            return Aligned::Ready;
        }
        if late.len() == self.inputs {
            self.open_since = None;
            return Aligned::Idle;
        }
        let since = *self.open_since.get_or_insert(now);
        match self.timeout {
            None => Aligned::Waiting { deadline: None },
            Some(timeout) => {
                let waited = now.saturating_duration_since(since);
                if waited >= timeout {
                    Aligned::TimedOut { late, waited }
                } else {
                    Aligned::Waiting {
                        deadline: Some(since + timeout),
                    }
                }
            }
        }
    }

    /// Goes on from step `step` (a restored checkpoint's).
    pub(crate) fn restore_step(&mut self, step: u64) {
        self.step = step;
        self.open_since = None;
    }

    /// The current step was released: align the next one. The inputs that are
    /// already there start its clock now.
    pub(crate) fn released(&mut self) {
        self.step += 1;
        self.open_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_barrier_says_why_it_cannot_be_checkpointed() {
        use weir_runtime::junction::Junction;
        let j = crate::barrier::BarrierJunction::<u32>::new(crate::barrier::Barrier::new(), 2);
        assert!(j.not_checkpointable().unwrap().contains("step barrier"));
        let mut j = j.checkpointed();
        assert_eq!(j.not_checkpointable(), None);
        assert!(j.queue_codec().is_some() && j.checkpoint().is_some());
    }

    #[test]
    fn waits_for_every_input_then_times_out_naming_the_late_ones() {
        let t0 = Instant::now();
        let mut a = Alignment::new(3, Some(Duration::from_secs(2)));
        assert_eq!(a.observe(|_| false, t0), Aligned::Idle);
        let deadline = Some(t0 + Duration::from_secs(2));
        assert_eq!(a.observe(|i| i == 0, t0), Aligned::Waiting { deadline });
        // The clock runs from the first arrival, not from later looks.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(a.observe(|i| i != 2, t1), Aligned::Waiting { deadline });
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(
            a.observe(|i| i != 2, t2),
            Aligned::TimedOut {
                late: vec![2],
                waited: Duration::from_secs(2)
            }
        );
        assert_eq!(a.observe(|_| true, t2), Aligned::Ready);
        a.released();
        assert_eq!(a.step(), 1);
        let t3 = t2 + Duration::from_secs(5);
        assert_eq!(
            a.observe(|i| i == 1, t3),
            Aligned::Waiting {
                deadline: Some(t3 + Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn without_a_timeout_it_waits_forever() {
        let mut a = Alignment::new(2, None);
        let t0 = Instant::now();
        assert_eq!(
            a.observe(|i| i == 1, t0),
            Aligned::Waiting { deadline: None }
        );
        let much_later = t0 + Duration::from_secs(86_400);
        assert_eq!(
            a.observe(|i| i == 1, much_later),
            Aligned::Waiting { deadline: None }
        );
    }
}
