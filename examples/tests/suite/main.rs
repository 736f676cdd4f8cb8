//! The examples' integration tests, linked into one binary (one link instead of one
//! per file keeps CI within its budget). The Prometheus scrape test installs a
//! global recorder and stays in its own binary.

#[path = "../common/mod.rs"]
mod common;

mod axum_service;
mod closed_stdout;
mod console_client;
mod etl;
mod examples_run;
mod graph_examples_run;
mod hubs_example_run;
mod join_examples_run;
mod limits_examples_run;
mod logproc_console;
mod logproc_dashboard;
mod logproc_follow;
mod logproc_input;
mod logproc_report;
mod logproc_resume;
mod mux_example_run;
mod sse_example_run;
mod tcp_example_run;
mod window_examples_run;
