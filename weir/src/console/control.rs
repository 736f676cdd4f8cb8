//! The console's controls (`POST /api/control/...`), when enabled: the request
//! parsed into a [`Command`], applied through the pipeline's controller, and
//! recorded in the event list and the log whether applied or refused.

use hyper::StatusCode;
use serde_json::{Value, json};
use weir_runtime::checkpoint::CheckpointError;
use weir_runtime::manager::PipelineManager;
use weir_runtime::reconfig::ReconfigError;
use weir_runtime::{ControlError, PipelineController};

use super::log::EventLog;

/// The path every control is under.
pub(crate) const PREFIX: &str = "/api/control/";

/// What a control request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Pause { stage: String },
    Resume { stage: String },
    ResetBreaker { stage: String },
    Resize { stage: String, replicas: usize },
    Checkpoint,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::ResetBreaker { .. } => "reset-breaker",
            Command::Resize { .. } => "resize",
            Command::Checkpoint => "checkpoint",
        }
    }

    fn stage(&self) -> Option<&str> {
        match self {
            Command::Pause { stage }
            | Command::Resume { stage }
            | Command::ResetBreaker { stage }
            | Command::Resize { stage, .. } => Some(stage),
            Command::Checkpoint => None,
        }
    }
}

/// A control's answer: the status and the JSON body.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

/// Parses `path` (under [`PREFIX`]) and `query`: `<pipeline>/checkpoint`, or
/// `<pipeline>/<stage>/<action>` with action `pause`, `resume`, `reset-breaker`
/// or `resize` (`?replicas=<n>`). Names are percent-decoded.
pub(crate) fn parse(path: &str, query: &str) -> Result<(String, Command), Outcome> {
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let parts: Option<Vec<String>> = rest.split('/').map(decode).collect();
    let Some(parts) = parts else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "a name in the path is not valid percent-encoded UTF-8",
        ));
    };
    let unknown = || {
        refusal(
            StatusCode::NOT_FOUND,
            "no such control: POST /api/control/<pipeline>/checkpoint, or \
             /api/control/<pipeline>/<stage>/{pause,resume,reset-breaker,resize?replicas=N}",
        )
    };
    match parts.as_slice() {
        [pipeline, action] if action == "checkpoint" && !pipeline.is_empty() => {
            Ok((pipeline.clone(), Command::Checkpoint))
        }
        [pipeline, stage, action] if !pipeline.is_empty() && !stage.is_empty() => {
            let stage = stage.clone();
            let command = match action.as_str() {
                "pause" => Command::Pause { stage },
                "resume" => Command::Resume { stage },
                "reset-breaker" => Command::ResetBreaker { stage },
                "resize" => {
                    let given = query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix("replicas="));
                    let Some(replicas) = given.and_then(|n| n.parse::<usize>().ok()) else {
                        return Err(refusal(
                            StatusCode::BAD_REQUEST,
                            "resize needs ?replicas=<n>, a whole number",
                        ));
                    };
                    Command::Resize { stage, replicas }
                }
                _ => return Err(unknown()),
            };
            Ok((pipeline.clone(), command))
        }
        _ => Err(unknown()),
    }
}

/// Applies `command` to pipeline `pipeline` of `manager`; records it in `log`
/// (kind `control`) and in the `tracing` log, applied or refused.
pub(crate) async fn apply(
    manager: &PipelineManager,
    log: &EventLog,
    pipeline: &str,
    command: Command,
) -> Outcome {
    let result = match manager.controller(pipeline) {
        None => Err(refusal(
            StatusCode::NOT_FOUND,
            &format!("no pipeline `{pipeline}`"),
        )),
        Some(controller) => run(&controller, &command).await,
    };
    let (action, stage) = (command.name(), command.stage());
    match result {
        Ok((text, mut body)) => {
            tracing::info!(
                target: "weir::console",
                pipeline, stage, action, "console control applied: {text}"
            );
            log.push(pipeline, stage, "control", format!("{action}: {text}"));
            body["applied"] = json!(true);
            body["pipeline"] = json!(pipeline);
            body["stage"] = json!(stage);
            body["action"] = json!(action);
            body["text"] = json!(text);
            Outcome {
                status: StatusCode::OK,
                body,
            }
        }
        Err(mut refused) => {
            let why = refused.body["error"].as_str().unwrap_or("").to_owned();
            tracing::warn!(
                target: "weir::console",
                pipeline, stage, action, status = refused.status.as_u16(),
                "console control refused: {why}"
            );
            log.push(
                pipeline,
                stage,
                "control",
                format!("{action} refused: {why}"),
            );
            refused.body["pipeline"] = json!(pipeline);
            refused.body["stage"] = json!(stage);
            refused.body["action"] = json!(action);
            refused
        }
    }
}

/// Runs the command: what it did as text and JSON, or the refusal.
async fn run(
    controller: &PipelineController,
    command: &Command,
) -> Result<(String, Value), Outcome> {
    match command {
        Command::Pause { stage } => {
            let was_running = controller.pause_source(stage).map_err(refused)?;
            let text = if was_running {
                "source paused"
            } else {
                "source was paused already"
            };
            Ok((text.into(), json!({ "paused": true })))
        }
        Command::Resume { stage } => {
            let was_paused = controller.resume_source(stage).map_err(refused)?;
            let text = if was_paused {
                "source resumed"
            } else {
                "source was not paused"
            };
            Ok((text.into(), json!({ "paused": false })))
        }
        Command::ResetBreaker { stage } => {
            let was = controller.reset_breaker(stage).map_err(refused)?;
            let was = serde_json::to_value(was).unwrap_or(Value::Null);
            let text = match was.as_str() {
                Some("closed") => "breaker was closed already".to_owned(),
                Some(state) => format!("breaker reset ({state} before)"),
                None => "breaker reset".to_owned(),
            };
            Ok((text, json!({ "was": was })))
        }
        Command::Resize { stage, replicas } => {
            let applied = controller
                .resize_pool(stage, *replicas)
                .await
                .map_err(refused)?;
            Ok((
                format!(
                    "pool resized to {replicas} replicas (generation {})",
                    applied.generation
                ),
                json!({ "replicas": replicas, "generation": applied.generation }),
            ))
        }
        Command::Checkpoint => match controller.checkpoint().await {
            Ok(info) => Ok((
                format!("checkpoint {} written ({} bytes)", info.id, info.bytes),
                json!({
                    "checkpoint": info.id,
                    "bytes": info.bytes,
                    "duration_ms": u64::try_from(info.duration.as_millis()).unwrap_or(u64::MAX),
                }),
            )),
            Err(CheckpointError::NotEnabled) => Err(refusal(
                StatusCode::CONFLICT,
                "the pipeline does not checkpoint (no CheckpointConfig was given)",
            )),
            Err(e) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        },
    }
}

/// The status of a refused control: `404` for a stage that does not exist,
/// `409` for one that cannot do it (or a pipeline that ended), `400` for a size
/// the pool refuses.
fn refused(e: ControlError) -> Outcome {
    let status = match &e {
        ControlError::NoSuchStage { .. } => StatusCode::NOT_FOUND,
        ControlError::Resize(ReconfigError::Rejected { .. }) => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    };
    refusal(status, &e.to_string())
}

pub(crate) fn refusal(status: StatusCode, message: &str) -> Outcome {
    Outcome {
        status,
        body: json!({ "error": message }),
    }
}

/// Percent-decodes one path segment; `None` if it is not valid UTF-8 after.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_commands() {
        let stage = |s: &str| s.to_owned();
        assert_eq!(
            parse("/api/control/ingest/src/pause", "").unwrap(),
            (
                stage("ingest"),
                Command::Pause {
                    stage: stage("src")
                }
            )
        );
        assert_eq!(
            parse("/api/control/my%20feed/pool.dispatch/resize", "replicas=3").unwrap(),
            (
                stage("my feed"),
                Command::Resize {
                    stage: stage("pool.dispatch"),
                    replicas: 3
                }
            )
        );
        assert_eq!(
            parse("/api/control/p/checkpoint", "").unwrap(),
            (stage("p"), Command::Checkpoint)
        );
        let status = |path: &str, query: &str| parse(path, query).unwrap_err().status;
        assert_eq!(
            status("/api/control/p/s/resize", ""),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status("/api/control/p/s/resize", "replicas=x"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status("/api/control/p/s/explode", ""),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status("/api/control/p", ""), StatusCode::NOT_FOUND);
        assert_eq!(status("/api/control//s/pause", ""), StatusCode::NOT_FOUND);
        assert_eq!(
            status("/api/control/p/%ff/pause", ""),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status("/api/control/p/%2/pause", ""),
            StatusCode::BAD_REQUEST
        );
    }
}
