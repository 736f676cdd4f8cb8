//! How many of weir's actors (stage groups and junctions) live on the current
//! arbiter thread. A stage slices its slow steps only when it shares its arbiter
//! (see `actor/slice.rs`): alone on a thread, handing it back helps nobody and
//! costs a smaller batch per slice, each a message (and often a thread wake-up)
//! for the next actor.

use std::cell::Cell;

thread_local! {
    static HERE: Cell<usize> = const { Cell::new(0) };
}

/// One actor's presence on the thread it started on; dropped with the actor
/// (also when a panic tore it down).
#[derive(Debug)]
pub(crate) struct Presence(());

impl Presence {
    /// Counts the calling actor on this thread until the value drops.
    pub(crate) fn here() -> Presence {
        HERE.with(|n| n.set(n.get() + 1));
        Presence(())
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        HERE.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Whether another of weir's actors lives on this thread.
pub(crate) fn shared() -> bool {
    HERE.with(|n| n.get() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_actors_present_on_this_thread() {
        assert!(!shared());
        let a = Presence::here();
        assert!(!shared(), "alone");
        let b = Presence::here();
        assert!(shared());
        let other = std::thread::spawn(|| {
            let _c = Presence::here();
            shared()
        });
        assert!(!other.join().unwrap(), "another thread counts its own");
        drop(a);
        assert!(!shared());
        drop(b);
        assert!(!shared());
    }
}
