//! weir's integration tests, linked into one binary (one link instead of one per
//! file keeps CI within its budget). Tests that change process-wide state — a
//! global metrics recorder or tracing subscriber, a panic hook, signals — stay in
//! their own binaries beside this directory.

#[path = "../common/mod.rs"]
mod common;

mod barrier;
mod checkpoint;
mod checkpoint_align;
mod checkpoint_crash;
mod checkpoint_dlq;
mod checkpoint_dlq_file_source;
mod checkpoint_scale;
mod checkpoint_store_crash;
mod core_backpressure;
mod core_batching;
mod core_build_errors;
mod core_embedded;
mod core_fairness;
mod core_lifecycle;
mod core_properties;
mod core_send_sync;
mod dlq_crash;
mod file_sink_crash;
mod files;
mod flow_control;
mod fusion;
mod graph_broadcast_runs;
mod graph_fan_in;
mod graph_fan_out;
mod graph_feedback;
mod graph_merge_turns;
mod graph_mux;
mod graph_pool;
mod graph_validation;
mod graph_when;
mod http_sink;
mod hubs;
mod join;
mod keyed;
mod limits;
mod manager_restart;
mod reconfig;
mod server_tls;
mod server_tls_bad_input;
mod state_loss;
mod supervision_breaker;
mod supervision_dlq_file;
mod supervision_events;
mod supervision_policy_file;
mod supervision_retry;
mod supervision_stall;
mod supervision_storm;
mod supervision_strategy;
mod topology;
#[cfg(feature = "websocket")]
mod websocket;
mod windows_order;
mod windows_processing;
