//! The test kit's own tests: each probe, fault injector, time helper and check
//! does what it says, and each assertion fails when it should.

mod checks;
mod faults;
mod probes;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Context;

use weir::operator::{Io, Operator, Step};

/// The panic message of `f`, which must panic.
pub(crate) fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => (*payload.downcast::<&str>().expect("a text panic")).to_owned(),
    }
}

/// A deliberately broken operator: it loses the element `3` without counting it
/// (neither pushed nor filtered).
pub(crate) struct Lossy;

impl Operator for Lossy {
    type In = u32;
    type Out = u32;

    fn kind(&self) -> &'static str {
        "lossy"
    }

    fn step(&mut self, io: &mut Io<'_, u32, u32>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if x != 3 {
                io.push(x);
            }
        }
        io.finish_when_drained()
    }
}

/// An honest one-to-one operator, for wrapping.
pub(crate) struct Lossless;

impl Operator for Lossless {
    type In = u32;
    type Out = u32;

    fn kind(&self) -> &'static str {
        "lossless"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, u32, u32>, _cx: &mut Context<'_>) -> Step {
        io.map_batch(|x| x);
        io.finish_when_drained()
    }
}
