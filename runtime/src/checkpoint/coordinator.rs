//! The per-pipeline checkpoint coordinator: injects barriers, gathers the stages'
//! snapshots, has the writer thread persist them, tells the stages to commit.
//!
//! ```text
//!  trigger(n) ──Control::Checkpoint(n)──► sources (and stages whose upstream stopped)
//!       barrier n travels with the elements; each stage snapshots as it passes
//!  stage ──ack(n, snapshot)──► coordinator ── all stages? ──► writer thread ── store.write
//!       written ──Control::Committed(n)──► every live stage (sinks commit, sources ack)
//! ```
//!
//! A stage that has stopped before barrier `n` reached it stands in with the state
//! it stopped with (its input had ended: that state is final). The checkpoint that
//! is taken when the whole pipeline has ended (completed or drained) is made of
//! those final states only, so that a restart after the end does no work.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;
use weir_supervisor::StopReason;

use super::CheckpointConfig;
use super::Deferred;
use super::dead_letters::DeadLetterFiles;
use super::store::{CheckpointData, CheckpointStore, StageState};
use crate::pipeline::shared::PipelineShared;
use crate::stage::actor::StageSnapshot;

/// What a stage acknowledged: its snapshot (maybe still to encode), none, or why
/// it could not give one.
pub(crate) type StageAck = Result<Option<Deferred>, String>;

fn from_final(snapshot: StageSnapshot) -> StageAck {
    snapshot.map(|s| s.map(Deferred::ready))
}
use crate::stage::message::Control;

/// A checkpoint that completed: durable in the checkpoint directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Its id (increasing; the first after a restore of `k` is `k + 1`).
    pub id: u64,
    /// From the trigger to durable on disk.
    pub duration: Duration,
    /// The longest time a stage held input back waiting for a barrier.
    pub alignment: Duration,
    /// The longest time one stage spent taking its snapshot (the pause it made in
    /// its own processing for the checkpoint).
    pub longest_snapshot: Duration,
    /// Bytes of state written.
    pub bytes: u64,
    /// Stages whose state it holds, with the bytes of each.
    pub stages: Vec<(String, u64)>,
    /// Taken when the pipeline ended: every stage's final state.
    pub is_final: bool,
    /// The manifest written for it (its stages' records, versions, offsets and
    /// checksums), as in the checkpoint directory.
    pub manifest: Option<super::Manifest>,
}

/// Why a checkpoint did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The pipeline was not given a [`CheckpointConfig`].
    #[error("the pipeline does not checkpoint (no CheckpointConfig was given)")]
    NotEnabled,
    /// A stage could not give its state.
    #[error("checkpoint {checkpoint} failed at stage `{stage}`: {reason}")]
    Stage {
        /// The checkpoint.
        checkpoint: u64,
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint could not be written.
    #[error("checkpoint {checkpoint} could not be written: {reason}")]
    Write {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: String,
    },
    /// The pipeline ended (or failed) before the checkpoint completed.
    #[error("checkpoint {checkpoint} did not complete: {reason}")]
    Ended {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: String,
    },
}

/// Checkpoint figures of a pipeline, in its stats and its report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// The checkpoint the pipeline was restored from, if any.
    pub restored_from: Option<u64>,
    /// Checkpoints completed by this run.
    pub completed: u64,
    /// Checkpoints that failed in this run.
    pub failed: u64,
    /// Failures since the last completed checkpoint.
    pub consecutive_failures: u32,
    /// The last completed checkpoint's id.
    pub last_id: Option<u64>,
    /// Its duration, trigger to durable, in microseconds.
    pub last_duration_us: u64,
    /// Its longest alignment, in microseconds.
    pub last_alignment_us: u64,
    /// Its longest snapshot pause in one stage, in microseconds.
    pub last_snapshot_us: u64,
    /// How long the restore at start took (reading, verifying, decoding every
    /// state), in microseconds; 0 without a restore.
    pub restore_us: u64,
    /// Its size in bytes.
    pub last_bytes: u64,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// Sources that keep no checkpointed position: after a restore they do not
    /// resume where they were (an ingress, a socket, an iterator that is not
    /// `Pipeline::replayable`), so what they had emitted after the last checkpoint
    /// is not replayed.
    pub unreplayable_sources: Vec<String>,
    /// Sinks that keep no checkpointed state: their effects are at-least-once
    /// (what they did after the last checkpoint is done again after a restore).
    pub at_least_once_sinks: Vec<String>,
}

type Waiter = oneshot::Sender<Result<CheckpointInfo, CheckpointError>>;

/// One checkpoint in progress.
struct InFlight {
    started: Instant,
    /// Per stage: its snapshot once acknowledged.
    acks: Vec<Option<StageAck>>,
    /// Per stage: whether `Control::Checkpoint` was sent to it.
    injected: Vec<bool>,
    alignment: Duration,
    snapshot: Duration,
    waiters: Vec<Waiter>,
    is_final: bool,
}

/// How long a stage held its input for a barrier, and how long its snapshot took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AckTiming {
    pub(crate) alignment: Duration,
    pub(crate) snapshot: Duration,
}

#[derive(Default)]
struct State {
    next_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Per stage: why it stopped, once it has.
    stopped: Vec<Option<StopReason>>,
    stats: CheckpointStats,
    /// Written and waiting to be reported (filled by the writer thread).
    ended: bool,
}

/// What the writer thread is given.
struct Job {
    id: u64,
    /// Per stateful stage: name, kind and its snapshot, encoded by the writer.
    states: Vec<(String, &'static str, Deferred)>,
    pipeline: String,
    info: CheckpointInfo,
    waiters: Vec<Waiter>,
    done: Option<mpsc::Sender<()>>,
    /// The dead-letter files whose cuts the checkpoint holds: synced before it is
    /// written.
    dead_letters: Vec<(String, weir_supervisor::dead_letter::DlqOrder)>,
}

/// The coordinator of one pipeline.
pub(crate) struct Coordinator {
    config: CheckpointConfig,
    /// Per stage: the stages feeding it.
    upstream: Vec<Vec<usize>>,
    state: Mutex<State>,
    jobs: Mutex<Option<mpsc::Sender<Box<Job>>>>,
    /// Set once the pipeline is shared: the writer reports through it.
    pipeline: std::sync::OnceLock<Weak<PipelineShared>>,
    /// Released when the pipeline ends, so that the directory is free for the next
    /// run.
    store: Mutex<Option<Arc<CheckpointStore>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    timer_started: AtomicBool,
    /// The file dead-letter queues the stages' supervision writes to, in
    /// checkpoint order.
    dead_letters: DeadLetterFiles,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    pub(crate) fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    pub(crate) fn new(
        config: CheckpointConfig,
        store: CheckpointStore,
        upstream: Vec<Vec<usize>>,
        restored: Option<u64>,
        next_id: u64,
        guarantees: (Vec<String>, Vec<String>),
        restore_took: Duration,
    ) -> Self {
        let stages = upstream.len();
        let (unreplayable_sources, at_least_once_sinks) = guarantees;
        let stats = CheckpointStats {
            restored_from: restored,
            unreplayable_sources,
            at_least_once_sinks,
            restore_us: u64::try_from(restore_took.as_micros()).unwrap_or(u64::MAX),
            ..CheckpointStats::default()
        };
        Coordinator {
            config,
            upstream,
            state: Mutex::new(State {
                next_id,
                stopped: vec![None; stages],
                stats,
                ..State::default()
            }),
            jobs: Mutex::new(None),
            pipeline: std::sync::OnceLock::new(),
            store: Mutex::new(Some(Arc::new(store))),
            writer: Mutex::new(None),
            timer_started: AtomicBool::new(false),
            dead_letters: DeadLetterFiles::none(),
        }
    }

    /// The file dead-letter queues of the pipeline, attached to this run.
    pub(crate) fn with_dead_letters(mut self, files: DeadLetterFiles) -> Self {
        self.dead_letters = files;
        self
    }

    /// Marks this thread as running stage `stage` while the scope lives, when the
    /// pipeline writes a file dead-letter queue in checkpoint order.
    pub(crate) fn stage_scope(
        &self,
        stage: usize,
    ) -> Option<weir_supervisor::dead_letter::StageScope> {
        self.dead_letters.enter(stage)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds the coordinator to its pipeline and starts the writer thread and, if
    /// there is an interval, the timer.
    pub(crate) fn attach(&self, pipeline: &Arc<PipelineShared>) {
        let _ = self.pipeline.set(Arc::downgrade(pipeline));
        let (tx, rx) = mpsc::channel::<Box<Job>>();
        *self.jobs.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        let Some(store) = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let weak = Arc::downgrade(pipeline);
        let name = format!("weir-checkpoint-{}", pipeline.name);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            for job in rx {
                let mut job = *job;
                let written = encode_and_write(&store, &mut job);
                if let Some(pipeline) = weak.upgrade() {
                    pipeline.checkpoint_written(job.id, written, job.info, job.waiters);
                } else {
                    for w in job.waiters {
                        let _ = w.send(Err(CheckpointError::Ended {
                            checkpoint: job.id,
                            reason: "the pipeline was dropped".into(),
                        }));
                    }
                }
                if let Some(done) = job.done {
                    let _ = done.send(());
                }
            }
        });
        match spawned {
            Ok(handle) => {
                *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            Err(e) => tracing::error!(error = %e, "could not start the checkpoint writer thread"),
        }
        if let Some(interval) = self.config.interval
            && !self.timer_started.swap(true, Relaxed)
        {
            let weak = Arc::downgrade(pipeline);
            pipeline.timer_arbiter.spawn(async move {
                loop {
                    actix_rt::time::sleep(interval).await;
                    let Some(pipeline) = weak.upgrade() else {
                        break;
                    };
                    if pipeline.is_finished() || pipeline.is_ending() {
                        break;
                    }
                    if let Some(c) = &pipeline.checkpoints
                        && c.state().in_flight.is_empty()
                    {
                        c.trigger(&pipeline, None, false);
                    }
                }
            });
        }
    }

    pub(crate) fn stats(&self) -> CheckpointStats {
        self.state().stats.clone()
    }

    /// Starts checkpoint `next_id`; `waiter` learns how it ended.
    pub(crate) fn trigger(
        &self,
        pipeline: &PipelineShared,
        waiter: Option<Waiter>,
        is_final: bool,
    ) -> u64 {
        let stages = self.upstream.len();
        let id = {
            let mut st = self.state();
            if st.ended && !is_final {
                drop(st);
                if let Some(w) = waiter {
                    let _ = w.send(Err(CheckpointError::Ended {
                        checkpoint: 0,
                        reason: "the pipeline has ended".into(),
                    }));
                }
                return 0;
            }
            let id = st.next_id;
            st.next_id += 1;
            st.in_flight.insert(
                id,
                InFlight {
                    started: Instant::now(),
                    acks: (0..stages).map(|_| None).collect(),
                    injected: vec![false; stages],
                    alignment: Duration::ZERO,
                    snapshot: Duration::ZERO,
                    waiters: waiter.into_iter().collect(),
                    is_final,
                },
            );
            id
        };
        tracing::debug!(pipeline = %pipeline.name, checkpoint = id, "checkpoint triggered");
        self.advance(pipeline);
        id
    }

    /// Stage `stage` passed barrier `id`.
    pub(crate) fn ack(
        &self,
        pipeline: &PipelineShared,
        stage: usize,
        id: u64,
        snapshot: StageAck,
        timing: AckTiming,
    ) {
        // Whether or not the checkpoint is still in flight: what the stage writes
        // to a dead-letter file from now on is after the barrier.
        self.dead_letters.passed(stage, id);
        {
            let mut st = self.state();
            let Some(ck) = st.in_flight.get_mut(&id) else {
                // Failed or abandoned already.
                return;
            };
            ck.alignment = ck.alignment.max(timing.alignment);
            ck.snapshot = ck.snapshot.max(timing.snapshot);
            if ck.acks[stage].is_none() {
                ck.acks[stage] = Some(snapshot);
            }
        }
        self.advance(pipeline);
    }

    /// Stage `stage` stopped for `reason`.
    pub(crate) fn stopped(&self, pipeline: &PipelineShared, stage: usize, reason: StopReason) {
        self.dead_letters.stopped(stage);
        self.state().stopped[stage] = Some(reason);
        self.advance(pipeline);
    }

    /// Takes what can be taken: stopped stages stand in with their final state,
    /// barriers are injected where the stages feeding a stage have all stopped,
    /// checkpoints whose every stage acknowledged go to the writer.
    fn advance(&self, pipeline: &PipelineShared) {
        let mut inject: Vec<(usize, u64)> = Vec::new();
        let mut complete: Vec<(u64, InFlight)> = Vec::new();
        let mut failed: Vec<(u64, InFlight, String, String)> = Vec::new();
        {
            let mut st = self.state();
            let stopped = st.stopped.clone();
            let ids: Vec<u64> = st.in_flight.keys().copied().collect();
            for id in ids {
                let Some(ck) = st.in_flight.get_mut(&id) else {
                    continue;
                };
                let mut failure: Option<(String, String)> = None;
                for (i, reason) in stopped.iter().enumerate() {
                    if ck.acks[i].is_some() {
                        continue;
                    }
                    let Some(reason) = reason else {
                        continue;
                    };
                    // A contained failure ended only its branch, like an end.
                    let ended = matches!(reason, StopReason::Completed | StopReason::Cancelled)
                        || (*reason == StopReason::Failed && pipeline.stages[i].contained);
                    match reason {
                        _ if ended => {
                            let snapshot = pipeline.stages[i].final_snapshot().unwrap_or(Ok(None));
                            ck.acks[i] = Some(from_final(snapshot));
                        }
                        other => {
                            failure = Some((
                                pipeline.stages[i].name.clone(),
                                format!(
                                    "the stage stopped ({other:?}) before the barrier passed it"
                                ),
                            ));
                        }
                    }
                }
                if failure.is_none()
                    && let Some((i, Some(Err(reason)))) = ck
                        .acks
                        .iter()
                        .enumerate()
                        .find(|(_, a)| matches!(a, Some(Err(_))))
                {
                    failure = Some((pipeline.stages[i].name.clone(), reason.clone()));
                }
                if let Some((stage, reason)) = failure {
                    if let Some(ck) = st.in_flight.remove(&id) {
                        failed.push((id, ck, stage, reason));
                    }
                    continue;
                }
                for i in 0..ck.acks.len() {
                    if ck.acks[i].is_some() || ck.injected[i] || stopped[i].is_some() {
                        continue;
                    }
                    if self.upstream[i].iter().all(|&u| stopped[u].is_some()) {
                        ck.injected[i] = true;
                        inject.push((i, id));
                    }
                }
                if ck.acks.iter().all(Option::is_some) {
                    // Checkpoints complete in order: barriers keep their order on
                    // every edge, so every stage acknowledged the earlier ones first.
                    if let Some(ck) = st.in_flight.remove(&id) {
                        complete.push((id, ck));
                    }
                }
            }
        }
        for (stage, id) in inject {
            pipeline.control(stage, Control::Checkpoint(id));
        }
        for (id, ck, stage, reason) in failed {
            let err = CheckpointError::Stage {
                checkpoint: id,
                stage,
                reason,
            };
            self.record_failure(pipeline, id, &err);
            for w in ck.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        for (id, ck) in complete {
            self.persist(pipeline, id, ck, None);
        }
    }

    /// Hands a complete checkpoint to the writer thread.
    fn persist(
        &self,
        pipeline: &PipelineShared,
        id: u64,
        ck: InFlight,
        done: Option<mpsc::Sender<()>>,
    ) {
        let mut states = Vec::new();
        for (i, ack) in ck.acks.into_iter().enumerate() {
            if let Some(Ok(Some(snapshot))) = ack {
                let shared = &pipeline.stages[i];
                states.push((shared.name.clone(), shared.kind, snapshot));
            }
        }
        // Every stage acknowledged (or stands in): every file has its cut.
        states.extend(self.dead_letters.records(id));
        let info = CheckpointInfo {
            id,
            duration: ck.started.elapsed(),
            alignment: ck.alignment,
            longest_snapshot: ck.snapshot,
            bytes: 0,
            stages: Vec::new(),
            is_final: ck.is_final,
            manifest: None,
        };
        let job = Job {
            id,
            states,
            pipeline: pipeline.name.clone(),
            info,
            waiters: ck.waiters,
            done,
            dead_letters: self.dead_letters.orders(),
        };
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|tx| tx.send(Box::new(job)));
        if let Some(Err(mpsc::SendError(job))) = sent {
            let err = CheckpointError::Write {
                checkpoint: id,
                reason: "the checkpoint writer thread has stopped".into(),
            };
            self.record_failure(pipeline, id, &err);
            for w in job.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }

    /// The writer thread finished checkpoint `id`.
    pub(crate) fn written(
        &self,
        pipeline: &PipelineShared,
        id: u64,
        result: Result<(), CheckpointError>,
        mut info: CheckpointInfo,
        waiters: Vec<Waiter>,
    ) {
        match result {
            Ok(()) => {
                info.duration = info.duration.max(Duration::from_nanos(1));
                {
                    let mut st = self.state();
                    let s = &mut st.stats;
                    s.completed += 1;
                    s.consecutive_failures = 0;
                    s.last_id = Some(id);
                    s.last_duration_us =
                        u64::try_from(info.duration.as_micros()).unwrap_or(u64::MAX);
                    s.last_alignment_us =
                        u64::try_from(info.alignment.as_micros()).unwrap_or(u64::MAX);
                    s.last_snapshot_us =
                        u64::try_from(info.longest_snapshot.as_micros()).unwrap_or(u64::MAX);
                    s.last_bytes = info.bytes;
                }
                crate::observe::metrics::checkpoint_completed(&pipeline.name, &info);
                tracing::info!(
                    pipeline = %pipeline.name,
                    checkpoint = id,
                    duration_us = info.duration.as_micros() as u64,
                    alignment_us = info.alignment.as_micros() as u64,
                    bytes = info.bytes,
                    "checkpoint completed"
                );
                pipeline.broadcast_control(Control::Committed(id));
                for w in waiters {
                    let _ = w.send(Ok(info.clone()));
                }
            }
            Err(err) => {
                self.record_failure(pipeline, id, &err);
                for w in waiters {
                    let _ = w.send(Err(err.clone()));
                }
            }
        }
    }

    fn record_failure(&self, pipeline: &PipelineShared, id: u64, err: &CheckpointError) {
        let give_up = {
            let mut st = self.state();
            let s = &mut st.stats;
            s.failed += 1;
            s.consecutive_failures += 1;
            s.last_error = Some(err.to_string());
            self.config.max_consecutive_failures > 0
                && s.consecutive_failures >= self.config.max_consecutive_failures
        };
        crate::observe::metrics::checkpoint_failed(&pipeline.name);
        tracing::warn!(pipeline = %pipeline.name, checkpoint = id, error = %err, "checkpoint failed");
        if give_up {
            pipeline.checkpoints_gave_up(err);
        }
    }

    /// The pipeline has ended. `consistent` is true when every stage ended on its
    /// own (completed, drained, or cancelled by a stage that had finished): then
    /// every stage's final state makes one last checkpoint, which stands for those
    /// still in flight too, and this returns once it is durable. Otherwise the
    /// checkpoints in flight are abandoned.
    pub(crate) fn pipeline_ended(&self, pipeline: &PipelineShared, consistent: bool) {
        let (mut abandoned, next) = {
            let mut st = self.state();
            st.ended = true;
            let next = st.next_id;
            st.next_id += 1;
            (std::mem::take(&mut st.in_flight), next)
        };
        let waiters: Vec<Waiter> = abandoned
            .values_mut()
            .flat_map(|ck| std::mem::take(&mut ck.waiters))
            .collect();
        if consistent {
            let (id, started) = match abandoned.iter().next_back() {
                Some((&id, ck)) => (id, ck.started),
                None => (next, Instant::now()),
            };
            let stages = self.upstream.len();
            let acks: Vec<Option<StageAck>> = (0..stages)
                .map(|i| {
                    Some(from_final(
                        pipeline.stages[i].final_snapshot().unwrap_or(Ok(None)),
                    ))
                })
                .collect();
            let bad = acks.iter().enumerate().find_map(|(i, a)| match a {
                Some(Err(reason)) => Some((i, reason.clone())),
                _ => None,
            });
            if let Some((i, reason)) = bad {
                let err = CheckpointError::Stage {
                    checkpoint: id,
                    stage: pipeline.stages[i].name.clone(),
                    reason,
                };
                self.record_failure(pipeline, id, &err);
                for w in waiters {
                    let _ = w.send(Err(err.clone()));
                }
            } else {
                let ck = InFlight {
                    started,
                    acks,
                    injected: vec![true; stages],
                    alignment: Duration::ZERO,
                    snapshot: Duration::ZERO,
                    waiters,
                    is_final: true,
                };
                let (tx, rx) = mpsc::channel();
                self.persist(pipeline, id, ck, Some(tx));
                // Durable before anyone learns that the pipeline ended.
                let _ = rx.recv();
            }
        } else {
            let id = abandoned.keys().next_back().copied().unwrap_or(next);
            for w in waiters {
                let _ = w.send(Err(CheckpointError::Ended {
                    checkpoint: id,
                    reason: "the pipeline stopped before every stage passed the barrier".into(),
                }));
            }
        }
        // The letters still held (an abort, a failure) go to their files.
        self.dead_letters.detach();
        // No more jobs: the writer thread ends once it has written what it has,
        // and the directory is free for the next run when the handle learns of
        // the end.
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.thread().id() != std::thread::current().id()
        {
            let _ = writer.join();
        }
    }
}

/// On the writer thread: encodes the deferred snapshots, then writes checkpoint
/// `job.id`; fills in the sizes of `job.info`.
fn encode_and_write(store: &CheckpointStore, job: &mut Job) -> Result<(), CheckpointError> {
    let mut stages = Vec::with_capacity(job.states.len());
    let mut sizes = Vec::with_capacity(job.states.len());
    for (stage, kind, deferred) in std::mem::take(&mut job.states) {
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deferred.resolve()));
        let snapshot = match encoded {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                return Err(CheckpointError::Stage {
                    checkpoint: job.id,
                    stage,
                    reason: e.to_string(),
                });
            }
            Err(payload) => {
                return Err(CheckpointError::Stage {
                    checkpoint: job.id,
                    stage,
                    reason: format!(
                        "encoding the snapshot panicked: {}",
                        weir_supervisor::Failure::from_panic(payload)
                    ),
                });
            }
        };
        sizes.push((stage.clone(), snapshot.byte_len() as u64));
        stages.push(StageState {
            stage,
            kind: kind.to_owned(),
            snapshot,
        });
    }
    // The cuts the checkpoint records are on disk before it is.
    for (file, order) in &job.dead_letters {
        order.sync().map_err(|e| CheckpointError::Write {
            checkpoint: job.id,
            reason: format!("dead-letter file {file}: {e}"),
        })?;
    }
    job.info.bytes = sizes.iter().map(|(_, b)| b).sum();
    job.info.stages = sizes;
    let created_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let data = CheckpointData {
        id: job.id,
        pipeline: job.pipeline.clone(),
        created_unix_ms,
        stages,
    };
    let manifest = store.write(&data).map_err(|e| CheckpointError::Write {
        checkpoint: job.id,
        reason: e.to_string(),
    })?;
    job.info.manifest = Some(manifest);
    Ok(())
}
