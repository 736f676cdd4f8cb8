//! The console's list of recent events: what the manager did to its pipelines
//! and what their stages' supervision did, gathered from their event streams.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_runtime::manager::{ManagerEvent, ManagerEvents, PipelineManager};
use weir_runtime::{EventError, Events, SupervisionEvent};

/// One entry of the list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    /// Increases by one per entry, from 1.
    pub(crate) seq: u64,
    /// Wall-clock time, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    pub(crate) pipeline: String,
    pub(crate) stage: Option<String>,
    /// `restart`, `escalation`, `breaker`, `failure`, `stall`, `checkpoint`,
    /// `reconfig`, `pipeline`, `lagged`.
    pub(crate) kind: &'static str,
    pub(crate) text: String,
}

/// The last `capacity` entries.
#[derive(Debug)]
pub(crate) struct EventLog {
    capacity: usize,
    inner: Mutex<(u64, VecDeque<Entry>)>,
}

impl EventLog {
    pub(crate) fn new(capacity: usize) -> Self {
        EventLog {
            capacity,
            inner: Mutex::new((0, VecDeque::with_capacity(capacity))),
        }
    }

    pub(crate) fn push(
        &self,
        pipeline: &str,
        stage: Option<&str>,
        kind: &'static str,
        text: String,
    ) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        let entry = Entry {
            seq: inner.0,
            at_ms,
            pipeline: pipeline.to_owned(),
            stage: stage.map(str::to_owned),
            kind,
            text,
        };
        if inner.1.len() == self.capacity {
            inner.1.pop_front();
        }
        inner.1.push_back(entry);
    }

    /// The entries kept, oldest first.
    pub(crate) fn recent(&self) -> Vec<Entry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.iter().cloned().collect()
    }
}

/// Follows the manager's events and each pipeline's current run's events into
/// the log; called once per tick, it never waits.
#[derive(Debug)]
pub(crate) struct Collector {
    manager: ManagerEvents,
    /// Per pipeline: the restart count of the run subscribed to, its events, and
    /// the checkpoint counts last seen.
    runs: HashMap<String, Run>,
}

#[derive(Debug)]
struct Run {
    restarts: u32,
    events: Events,
    checkpoints: (u64, u64),
    /// Per stage: the config generation and the rejected configs last seen
    /// (empty until the run's first look, which starts from the built configs).
    configs: Vec<(u64, u64)>,
}

impl Collector {
    pub(crate) fn new(manager: &PipelineManager) -> Self {
        Collector {
            manager: manager.subscribe(),
            runs: HashMap::new(),
        }
    }

    /// Moves what happened since the last call into `log`.
    pub(crate) fn collect(&mut self, manager: &PipelineManager, log: &EventLog) {
        while let Some(next) = self.manager.try_recv() {
            match next {
                Ok(event) => manager_entry(&event, log),
                Err(EventError::Lagged(n)) => {
                    log.push("", None, "lagged", format!("{n} manager events missed"));
                }
                Err(_) => break,
            }
        }
        let status = manager.status();
        self.runs.retain(|name, _| status.contains_key(name));
        for (name, st) in status {
            let Some(controller) = manager.controller(&name) else {
                continue;
            };
            let run = match self.runs.get_mut(&name) {
                Some(run) if run.restarts == st.restarts => run,
                _ => {
                    let run = Run {
                        restarts: st.restarts,
                        events: controller.subscribe(),
                        checkpoints: (0, 0),
                        configs: Vec::new(),
                    };
                    self.runs.insert(name.clone(), run);
                    self.runs.get_mut(&name).expect("just inserted")
                }
            };
            while let Some(next) = run.events.try_recv() {
                match next {
                    Ok(event) => stage_entry(&name, &event, log),
                    Err(EventError::Lagged(n)) => {
                        log.push(&name, None, "lagged", format!("{n} stage events missed"));
                    }
                    Err(_) => break,
                }
            }
            let stats = controller.stats();
            reconfigurations(&name, &stats, &mut run.configs, log);
            if let Some(c) = stats.checkpoint {
                let (done, failed) = run.checkpoints;
                if c.completed > done {
                    let id = c.last_id.map_or(String::new(), |id| format!(" {id}"));
                    log.push(
                        &name,
                        None,
                        "checkpoint",
                        format!("checkpoint{id} written ({} bytes)", c.last_bytes),
                    );
                }
                if c.failed > failed {
                    let why = c.last_error.clone().unwrap_or_default();
                    log.push(
                        &name,
                        None,
                        "checkpoint",
                        format!("checkpoint failed: {why}"),
                    );
                }
                run.checkpoints = (c.completed, c.failed);
            }
        }
    }
}

/// Logs the configs applied or rejected (a `ConfigHandle`, a reloaded policy
/// file) since `seen` was taken, and updates it.
fn reconfigurations(
    pipeline: &str,
    stats: &weir_runtime::PipelineStats,
    seen: &mut Vec<(u64, u64)>,
    log: &EventLog,
) {
    let now: Vec<(u64, u64)> = stats
        .stages
        .iter()
        .map(|s| (s.config_generation, s.config_rejected))
        .collect();
    if seen.len() != now.len() {
        // The run's first look: from the configs it was built with.
        *seen = vec![(0, 0); now.len()];
    }
    {
        for ((stage, &(generation, rejected)), &(g0, r0)) in
            stats.stages.iter().zip(&now).zip(seen.iter())
        {
            if generation > g0 {
                let shown = stage.config.as_deref().unwrap_or("?");
                log.push(
                    pipeline,
                    Some(&stage.name),
                    "reconfig",
                    format!("config applied (generation {generation}): {shown}"),
                );
            }
            if rejected > r0 {
                let n = rejected - r0;
                let s = if n == 1 { "" } else { "s" };
                log.push(
                    pipeline,
                    Some(&stage.name),
                    "reconfig",
                    format!("{n} config{s} rejected, generation {generation} kept"),
                );
            }
        }
    }
    *seen = now;
}

fn manager_entry(event: &ManagerEvent, log: &EventLog) {
    let pipeline = event.pipeline();
    match event {
        ManagerEvent::PipelineRestarted {
            restarts,
            after,
            delay,
            ..
        } => log.push(
            pipeline,
            None,
            "restart",
            format!(
                "pipeline restarted (restart {restarts}, after {delay:?}){}",
                after
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            ),
        ),
        ManagerEvent::Escalated {
            restarts,
            last_error,
            ..
        } => log.push(
            pipeline,
            None,
            "escalation",
            format!(
                "pipeline escalated after {restarts} restarts{}",
                last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            ),
        ),
        ManagerEvent::PipelineEnded { ended, .. } => log.push(
            pipeline,
            None,
            "pipeline",
            match &ended.error {
                Some(e) => format!("pipeline ended: {e}"),
                None => "pipeline ended".to_owned(),
            },
        ),
        _ => {}
    }
}

fn stage_entry(pipeline: &str, event: &SupervisionEvent, log: &EventLog) {
    use SupervisionEvent as E;
    let stage = Some(event.stage());
    match event {
        E::StageFailed { class, error, .. } => {
            log.push(pipeline, stage, "failure", format!("{class}: {error}"));
        }
        E::StageRestarted { .. } => log.push(pipeline, stage, "restart", "stage restarted".into()),
        E::Escalated { reason, .. } => {
            log.push(
                pipeline,
                stage,
                "escalation",
                format!("escalated: {reason}"),
            );
        }
        E::BreakerOpened { .. } => log.push(pipeline, stage, "breaker", "breaker opened".into()),
        E::BreakerHalfOpened { .. } => {
            log.push(
                pipeline,
                stage,
                "breaker",
                "breaker half-open (probing)".into(),
            );
        }
        E::BreakerClosed { .. } => log.push(pipeline, stage, "breaker", "breaker closed".into()),
        E::StageStalled { idle_for, .. } => log.push(
            pipeline,
            stage,
            "stall",
            format!("stalled: no progress for {idle_for:?}"),
        ),
        // Per element (retries, dead letters, skips) or routine (starts, stops):
        // the figures show them.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_entries_in_order() {
        let log = EventLog::new(3);
        for i in 0..5 {
            log.push("p", Some("s"), "restart", format!("{i}"));
        }
        let texts: Vec<_> = log.recent().into_iter().map(|e| (e.seq, e.text)).collect();
        assert_eq!(texts, [(3, "2".into()), (4, "3".into()), (5, "4".into())]);
    }
}
