//! Supervision policy (in progress).
