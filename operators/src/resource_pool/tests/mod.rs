//! Tests of the resource pool, under tokio's paused clock wherever time matters.

mod bounds;
mod cancellation;
mod checkout;
mod lifecycle;
mod support;
