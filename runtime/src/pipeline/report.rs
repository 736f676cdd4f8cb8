//! [`Report`]: what a finished pipeline did, stage by stage.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use crate::operator::Counting;
use crate::stage::shared::StageShared;

/// How a pipeline ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Every source ended (or a stage finished early, like `take`) and everything
    /// in flight reached a sink.
    Completed,
    /// A graceful shutdown stopped the sources and everything in flight drained;
    /// `drained` elements reached a sink after the shutdown was requested.
    Drained {
        /// Elements delivered after the shutdown was requested.
        drained: u64,
    },
    /// A graceful shutdown ran out of time; what had not drained by the deadline was
    /// abandoned (see the per-stage `abandoned` counts).
    DeadlineExceeded {
        /// Elements delivered between the shutdown request and the deadline.
        drained: u64,
    },
    /// [`abort`](crate::Running::abort) stopped every stage at once.
    Aborted,
    /// A stage failed and the pipeline stopped.
    Failed {
        /// Name of the stage that failed first.
        stage: String,
        /// The failure, as text.
        error: String,
    },
}

/// Counts for one stage, all final.
///
/// Input counts are in the stage's input elements. For every stage:
///
/// ```text
/// input = completed + filtered + failed + dead_lettered + abandoned
/// ```
///
/// where `input` is what the stage before it produced (for a source: what it took in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Operator kind ("map", "filter", …).
    pub kind: &'static str,
    /// Input capacity (0 for a source).
    pub capacity: usize,
    /// True for sources.
    pub is_source: bool,
    /// True for sinks.
    pub is_sink: bool,
    /// True if each input becomes at most one output (see [`Counting`]).
    pub one_to_one: bool,
    /// Elements handed to this stage: produced by the stage before it, or taken in by
    /// a source (an ingress counts what it accepted).
    pub input: u64,
    /// Elements that reached the stage's input queue.
    pub received: u64,
    /// Inputs fully processed; for a sink, delivered.
    pub completed: u64,
    /// Inputs dropped on purpose by the operator (a filter).
    pub filtered: u64,
    /// Inputs destroyed by a failure of user code (including those a supervision
    /// policy skipped).
    pub failed: u64,
    /// Inputs the stage's supervision sent to the dead letters.
    pub dead_lettered: u64,
    /// Failed attempts that were tried again (by a retry or after a restart).
    pub retries: u64,
    /// Restarts of the stage.
    pub restarts: u64,
    /// State entries (keys, open windows, pending join rows) that restarts from
    /// the factory discarded (see
    /// [`Operator::state_entries`](crate::operator::Operator::state_entries)).
    pub state_lost: u64,
    /// Inputs left unprocessed when the pipeline stopped: in the stage's queue or
    /// state, in its mailbox, or still in the previous stage's output buffer.
    pub abandoned: u64,
    /// Outputs created.
    pub produced: u64,
    /// Outputs sent downstream.
    pub emitted: u64,
    /// Batches sent downstream.
    pub batches: u64,
    /// Largest batch sent downstream.
    pub largest_batch: usize,
    /// Largest occupancy of the input edge (queue + mailbox) the stage observed.
    pub peak_occupancy: usize,
    /// Times the input edge was observed above capacity. Always 0 unless weir has a
    /// flow-control bug.
    pub bound_violations: u64,
    /// Per output port of a junction (broadcast, partition, …): what each branch was
    /// given, sent and dropped. Empty for a stage with one output.
    pub outputs: Vec<PortCounts>,
    /// Generation of the config in force: 0 for the one the stage was built with,
    /// one more for each config applied at run time (see
    /// [`ConfigHandle`](crate::reconfig::ConfigHandle)).
    pub config_generation: u64,
    /// The config in force, as its `Debug` shows it, once one was applied at run
    /// time.
    pub config: Option<String>,
    /// Configs the stage rejected (the previous one stayed in force).
    pub config_rejected: u64,
}

/// Counts for one output port of a junction.
///
/// For every port, `pushed = emitted + dropped + (left in the port's buffer)`; what
/// was left is counted as abandoned by the stage after the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortCounts {
    /// Port number, from 0.
    pub port: usize,
    /// Elements routed to the port.
    pub pushed: u64,
    /// Elements sent on the port.
    pub emitted: u64,
    /// Elements the port's lag policy dropped, or that were routed to it after its
    /// branch cancelled.
    pub dropped: u64,
    /// Times the port's branch was detached by its lag policy.
    pub detached: u64,
    /// Elements in the port's buffer (live stats) or left in it (final report).
    pub buffered: usize,
}

impl PortCounts {
    pub(crate) fn of(s: &StageShared) -> Vec<PortCounts> {
        let finished = s.final_state().is_some();
        s.out_ports
            .iter()
            .enumerate()
            .map(|(port, c)| PortCounts {
                port,
                pushed: c.pushed.load(Relaxed),
                emitted: c.emitted.load(Relaxed),
                dropped: c.dropped.load(Relaxed),
                detached: c.detached.load(Relaxed),
                buffered: if finished {
                    c.final_outbox.load(Relaxed)
                } else {
                    c.buffered.load(Relaxed)
                },
            })
            .collect()
    }
}

impl StageReport {
    pub(crate) fn finalize(s: &StageShared) -> Self {
        let fs = s.final_state().unwrap_or_default();
        let received = s.received.load(Relaxed);
        let (input, abandoned) = match s.inputs.get() {
            Some(inputs) if !inputs.is_empty() => {
                let mut input = 0;
                let mut in_transit = 0;
                for (port, edge) in inputs.iter().enumerate() {
                    input += edge.produced();
                    in_transit += edge.emitted(Relaxed).saturating_sub(s.received_on(port))
                        + edge.final_outbox();
                }
                (input, fs.queued as u64 + fs.held as u64 + in_transit)
            }
            // A source's "held" elements were taken in but never emitted (an
            // ingress's buffered elements).
            _ => (received + fs.held as u64, fs.held as u64),
        };
        StageReport {
            name: s.name.clone(),
            kind: s.kind,
            capacity: s.capacity,
            is_source: s.is_source,
            is_sink: s.is_sink,
            one_to_one: s.counting == Counting::OneToOne,
            input,
            received: if s.is_source { input } else { received },
            completed: s.completed.load(Relaxed),
            filtered: s.filtered.load(Relaxed),
            failed: s.failed.load(Relaxed),
            dead_lettered: s.dead_lettered.load(Relaxed),
            retries: s.retries.load(Relaxed),
            restarts: s.restarts.load(Relaxed),
            state_lost: s.state_lost.load(Relaxed),
            abandoned,
            produced: s.produced.load(Relaxed),
            emitted: s.emitted.load(Relaxed),
            batches: s.batches.load(Relaxed),
            largest_batch: s.largest_batch.load(Relaxed),
            peak_occupancy: s.peak_occupancy.load(Relaxed),
            bound_violations: s.bound_violations.load(Relaxed),
            outputs: PortCounts::of(s),
            config_generation: s.config_generation.load(Relaxed),
            config: s.config(),
            config_rejected: s.config_rejected.load(Relaxed),
        }
    }

    /// Mean elements per batch sent downstream (0 if none was sent).
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.emitted as f64 / self.batches as f64
        }
    }
}

/// What a finished pipeline did. Returned by [`Running::join`](crate::Running::join),
/// [`shutdown`](crate::Running::shutdown) and [`abort`](crate::Running::abort), and
/// carried by a failure.
///
/// Conservation holds in every report, whatever the outcome; see
/// [`check_conservation`](Self::check_conservation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Pipeline name.
    pub pipeline: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Time from start to the last stage stopping.
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
    /// One entry per stage, from source to sink.
    pub stages: Vec<StageReport>,
    /// Failures that ended only a merge input instead of the pipeline (a merge
    /// with [`InputFailure::EndInput`](crate::junction::InputFailure::EndInput)),
    /// in the order they happened. Empty otherwise.
    pub contained: Vec<ContainedFailure>,
    /// Checkpoint figures, for a checkpointed pipeline (see
    /// [`Runnable::checkpoints`](crate::Runnable::checkpoints)).
    pub checkpoint: Option<crate::checkpoint::CheckpointStats>,
}

/// A stage failure that ended only the merge input its branch fed (see
/// [`InputFailure::EndInput`](crate::junction::InputFailure::EndInput)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainedFailure {
    /// The stage that failed.
    pub stage: String,
    /// The failure, as text.
    pub error: String,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A conservation equation that does not hold. Seeing one means weir lost or invented
/// elements: a bug to report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conservation broken at `{stage}`: {equation}")]
pub struct ConservationError {
    /// The stage (or "pipeline") whose equation failed.
    pub stage: String,
    /// The equation with its numbers.
    pub equation: String,
}

impl Report {
    /// The report of the stage with this name.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Elements the sources took in.
    pub fn admitted(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.is_source)
            .map(|s| s.input)
            .sum()
    }

    /// Elements the sources emitted into the pipeline.
    pub fn emitted_by_sources(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.is_source)
            .map(|s| s.produced)
            .sum()
    }

    /// Elements the sinks delivered.
    pub fn delivered(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.is_sink)
            .map(|s| s.completed)
            .sum()
    }

    /// Elements filtered, over all stages.
    pub fn filtered(&self) -> u64 {
        self.stages.iter().map(|s| s.filtered).sum()
    }

    /// Elements destroyed by failures, over all stages.
    pub fn failed(&self) -> u64 {
        self.stages.iter().map(|s| s.failed).sum()
    }

    /// Elements sent to the dead letters, over all stages.
    pub fn dead_lettered(&self) -> u64 {
        self.stages.iter().map(|s| s.dead_lettered).sum()
    }

    /// Failed attempts tried again, over all stages.
    pub fn retries(&self) -> u64 {
        self.stages.iter().map(|s| s.retries).sum()
    }

    /// Stage restarts, over all stages.
    pub fn restarts(&self) -> u64 {
        self.stages.iter().map(|s| s.restarts).sum()
    }

    /// Elements abandoned, over all stages (see each stage's count for where).
    pub fn abandoned(&self) -> u64 {
        self.stages.iter().map(|s| s.abandoned).sum()
    }

    /// Checks that no element was lost or invented.
    ///
    /// For every stage, `input = completed + filtered + failed + dead_lettered +
    /// abandoned`; for every
    /// one-to-one stage, `completed = produced`. When every stage between sources and
    /// sinks is one-to-one, these compose into the end-to-end equation
    /// `admitted = delivered + filtered + failed + dead_lettered + abandoned`, which is
    /// checked too.
    ///
    /// # Errors
    ///
    /// The first equation that does not hold, with its numbers.
    pub fn check_conservation(&self) -> Result<(), ConservationError> {
        for s in &self.stages {
            let out = s.completed + s.filtered + s.failed + s.dead_lettered + s.abandoned;
            if s.input != out {
                return Err(ConservationError {
                    stage: s.name.clone(),
                    equation: format!(
                        "input {} != completed {} + filtered {} + failed {} + dead_lettered {} + abandoned {}",
                        s.input, s.completed, s.filtered, s.failed, s.dead_lettered, s.abandoned
                    ),
                });
            }
            if s.one_to_one && !s.is_sink && s.completed != s.produced {
                return Err(ConservationError {
                    stage: s.name.clone(),
                    equation: format!("completed {} != produced {}", s.completed, s.produced),
                });
            }
        }
        if self.stages.iter().all(|s| s.one_to_one || s.is_sink) {
            let (admitted, delivered) = (self.admitted(), self.delivered());
            let rest = self.filtered() + self.failed() + self.dead_lettered() + self.abandoned();
            if admitted != delivered + rest {
                return Err(ConservationError {
                    stage: "pipeline".to_owned(),
                    equation: format!(
                        "admitted {admitted} != delivered {delivered} + filtered {} + failed {} + dead_lettered {} + abandoned {}",
                        self.filtered(),
                        self.failed(),
                        self.dead_lettered(),
                        self.abandoned()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline `{}`: {:?} in {:.3}s — admitted {}, delivered {}, filtered {}, failed {}, dead-lettered {}, abandoned {}; retries {}, restarts {}",
            self.pipeline,
            self.outcome,
            self.elapsed.as_secs_f64(),
            self.admitted(),
            self.delivered(),
            self.filtered(),
            self.failed(),
            self.dead_lettered(),
            self.abandoned(),
            self.retries(),
            self.restarts()
        )?;
        writeln!(
            f,
            "  {:<16} {:>10} {:>10} {:>9} {:>7} {:>9} {:>10} {:>10}",
            "stage",
            "input",
            "completed",
            "filtered",
            "failed",
            "abandoned",
            "emitted",
            "mean batch"
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "  {:<16} {:>10} {:>10} {:>9} {:>7} {:>9} {:>10} {:>10.1}",
                s.name,
                s.input,
                s.completed,
                s.filtered,
                s.failed,
                s.abandoned,
                s.emitted,
                s.mean_batch()
            )?;
        }
        Ok(())
    }
}
