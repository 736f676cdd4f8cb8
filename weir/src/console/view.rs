//! What the console's JSON endpoints answer: the graphs, the live figures with
//! each pipeline's bottleneck, and the readiness verdict.

use serde::Serialize;
use weir_runtime::manager::{PipelineManager, PipelineState, PipelineStatus};
use weir_runtime::observe::{BreakerState, Health};
use weir_runtime::{Controllable, EdgeLoad, NodeRole, PipelineStats, Topology};

use super::bottleneck::Bottleneck;
use super::log::{Entry, EventLog};

/// `GET /api/graph`.
#[derive(Debug, Serialize)]
pub(crate) struct GraphView {
    pub(crate) pipelines: Vec<Topology>,
}

/// Totals over a pipeline's stages.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Totals {
    /// Elements the sources took in.
    taken_in: u64,
    /// Elements the sinks completed.
    delivered: u64,
    filtered: u64,
    dead_lettered: u64,
    failed: u64,
    retries: u64,
    restarts: u64,
    in_flight: u64,
}

impl Totals {
    fn of(stats: &PipelineStats, topology: &Topology) -> Self {
        let mut t = Totals::default();
        for (s, node) in stats.stages.iter().zip(&topology.nodes) {
            match node.role {
                NodeRole::Source => t.taken_in += s.received,
                NodeRole::Sink => t.delivered += s.completed,
                NodeRole::Stage | NodeRole::Junction => {}
            }
            t.filtered += s.filtered;
            t.dead_lettered += s.dead_lettered;
            t.failed += s.failed;
            t.retries += s.retries;
            t.restarts += s.restarts;
            t.in_flight += s.in_flight + s.mailbox;
        }
        t
    }
}

/// Whether a pipeline's counts balance: checked on the final report once a run
/// has ended (`emitted = delivered + filtered + dead-lettered + failed +
/// abandoned`, per stage).
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Conservation {
    /// The run goes on: checked when it ends.
    Running,
    /// The final report balances.
    Balanced,
    /// The final report does not balance (a bug in weir: please report it).
    Unbalanced { detail: String },
    /// The run ended without a report.
    Unknown,
}

/// One pipeline's live figures.
#[derive(Debug, Serialize)]
pub(crate) struct PipelineView {
    name: String,
    status: Option<PipelineStatus>,
    health: Health,
    stats: PipelineStats,
    edges: Vec<EdgeLoad>,
    totals: Totals,
    conservation: Conservation,
    bottleneck: Option<Bottleneck>,
    /// What the controls can act on; only when they are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    controllable: Option<Controllable>,
}

/// `GET /api/stats` and each frame of `GET /api/events`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    /// Milliseconds since the console started.
    pub(crate) uptime_ms: u64,
    /// Whether the controls are enabled (`POST /api/control/...`).
    pub(crate) controls: bool,
    pub(crate) pipelines: Vec<PipelineView>,
    pub(crate) ready: Readiness,
    pub(crate) events: Vec<Entry>,
}

pub(crate) fn stats(
    manager: &PipelineManager,
    required: &[(String, String)],
    controls: bool,
    log: &EventLog,
    uptime_ms: u64,
) -> StatsView {
    let status = manager.status();
    let pipelines = manager
        .names()
        .into_iter()
        .filter_map(|name| {
            let controller = manager.controller(&name)?;
            let stats = controller.stats();
            let edges = controller.edge_loads();
            let topology = controller.topology();
            let bottleneck = if stats.finished {
                None
            } else {
                Bottleneck::find(&topology, &edges, &stats)
            };
            let conservation = match manager.ended(&name) {
                None => Conservation::Running,
                Some(ended) => match ended.report {
                    Some(report) => match report.check_conservation() {
                        Ok(()) => Conservation::Balanced,
                        Err(e) => Conservation::Unbalanced {
                            detail: e.to_string(),
                        },
                    },
                    None => Conservation::Unknown,
                },
            };
            Some(PipelineView {
                status: status.get(&name).cloned(),
                health: controller.health(),
                totals: Totals::of(&stats, &topology),
                name,
                stats,
                edges,
                conservation,
                bottleneck,
                controllable: controls.then(|| controller.controllable()),
            })
        })
        .collect();
    StatsView {
        uptime_ms,
        controls,
        pipelines,
        ready: readiness(manager, required),
        events: log.recent(),
    }
}

/// One thing that keeps the service from being ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    pipeline: String,
    stage: Option<String>,
    reason: String,
}

/// `GET /readyz`: ready when every pipeline is running, with no circuit breaker
/// open or probing and no escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    pub(crate) problems: Vec<Problem>,
}

pub(crate) fn readiness(manager: &PipelineManager, required: &[(String, String)]) -> Readiness {
    let mut problems = Vec::new();
    for (name, status) in manager.status() {
        if status.state != PipelineState::Running {
            let what = match status.state {
                PipelineState::Escalated => "escalated: it failed past its restart intensity",
                PipelineState::Restarting => "restarting",
                PipelineState::Failed => "failed",
                PipelineState::Completed => "completed",
                PipelineState::Stopped => "stopped",
                _ => "not running",
            };
            let reason = match &status.last_error {
                Some(e) if status.state != PipelineState::Completed => format!("{what}: {e}"),
                _ => what.to_owned(),
            };
            problems.push(Problem {
                pipeline: name.clone(),
                stage: None,
                reason,
            });
            continue;
        }
        let Some(controller) = manager.controller(&name) else {
            continue;
        };
        let marked: Vec<&str> = required
            .iter()
            .filter(|(p, _)| *p == name)
            .map(|(_, s)| s.as_str())
            .collect();
        let stats = controller.stats();
        let counts = |stage: &str| marked.is_empty() || marked.contains(&stage);
        for stage in &stats.stages {
            if !counts(&stage.name) {
                continue;
            }
            let state = match stage.breaker {
                BreakerState::Closed if stage.stalled && !marked.is_empty() => "stalled",
                BreakerState::Closed => continue,
                BreakerState::Open => "circuit breaker open",
                BreakerState::HalfOpen => "circuit breaker half-open (probing)",
            };
            problems.push(Problem {
                pipeline: name.clone(),
                stage: Some(stage.name.clone()),
                reason: state.to_owned(),
            });
        }
        for failure in &stats.contained {
            if marked.contains(&failure.stage.as_str()) {
                problems.push(Problem {
                    pipeline: name.clone(),
                    stage: Some(failure.stage.clone()),
                    reason: format!(
                        "required stage failed (its merge input ended): {}",
                        failure.error
                    ),
                });
            }
        }
        // A required stage that names no stage of the pipeline is a mistake
        // worth showing, not a silent pass.
        for stage in &marked {
            if !stats.stages.iter().any(|s| s.name == *stage) {
                problems.push(Problem {
                    pipeline: name.clone(),
                    stage: Some((*stage).to_owned()),
                    reason: "marked required, but the pipeline has no stage of that name".into(),
                });
            }
        }
    }
    Readiness {
        ready: problems.is_empty(),
        problems,
    }
}
