//! Runnable weir scenarios.
