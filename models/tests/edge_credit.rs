//! A loom model of one edge's credit and owed accounting across a supervised
//! restart (`runtime/src/stage/credit.rs`, the counts every stage actor keeps:
//! the sender's `Credit`, the receiver's `Owed`). Three threads: the sending
//! stage sends `N` elements in batches within its credit (as
//! `StageActor::flush` does), taking grants from its mailbox; the receiving
//! stage takes batches into its queue, steps its operator over them and
//! grants what it freed at the end of each pass (as `StageActor::grant`
//! does); the restart thread asks for a restart (`Control::Restart`, or the
//! watchdog's flag) at any point, and the receiver's next element fails and
//! is retried by a fresh operator: it goes back to the front of the queue and
//! takes its place back (`Owed::put_back`), as `on_failure`'s retry does. In
//! the second model the sending stage is restarted too. The mailboxes are
//! loom channels. Under every interleaving:
//!
//! - the sender never has more elements in flight (in the receiver's mailbox
//!   or queue) than the receiver's capacity;
//! - credit is neither lost nor duplicated across the restart: the sender can
//!   always send again (no deadlock, which loom reports), and at the end
//!   `credit + grants in flight + owed = capacity`;
//! - owed places are granted exactly once: what was granted is what was
//!   freed net of put-backs, and the operator saw every element once, in
//!   order (the failed attempt not counted).

use std::collections::VecDeque;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::mpsc::{Receiver, Sender, channel};
use loom::thread;

#[path = "../../runtime/src/stage/credit.rs"]
#[allow(dead_code)]
mod credit;

use credit::{Credit, Owed};

/// Elements sent.
const N: u64 = 3;
/// The receiver's input capacity: the sender's initial credit.
const CAPACITY: usize = 2;
/// The largest batch.
const MAX_BATCH: usize = 2;
/// Elements the receiver's operator takes in one step at most.
const STEP: usize = 2;

/// What reaches the receiving stage (its `Down` and `Control` messages).
enum Down {
    Batch(Vec<u64>),
    End,
    Restart,
}

/// What reaches the sending stage (its `Up` and `Control` messages).
enum Up {
    Demand(usize),
    Restart,
}

/// Elements sent and not yet taken out of the receiver's queue (a retried
/// one is back in it): checked against the capacity whenever it grows.
#[derive(Default)]
struct InFlight(AtomicUsize);

impl InFlight {
    fn add(&self, n: usize) {
        let now = self.0.fetch_add(n, SeqCst) + n;
        assert!(
            now <= CAPACITY,
            "{now} elements in flight, capacity {CAPACITY}"
        );
    }
    fn sub(&self, n: usize) {
        self.0.fetch_sub(n, SeqCst);
    }
}

/// The sending stage: sends `0..N` within its credit, then `End`. Returns
/// its credit, its mailbox (grants still in it) and its restarts.
fn sender(
    down: Sender<Down>,
    up: Receiver<Up>,
    flight: Arc<InFlight>,
) -> thread::JoinHandle<(Credit, Receiver<Up>, u32)> {
    thread::spawn(move || {
        let mut credit = Credit::new(CAPACITY);
        let mut outbox: Vec<u64> = (0..N).collect();
        let mut restarts = 0;
        let mut on = |msg: Up, credit: &mut Credit| match msg {
            Up::Demand(n) => credit.grant(n),
            // A fresh operator; the outbox and the credit stay.
            Up::Restart => restarts += 1,
        };
        while !outbox.is_empty() {
            while let Ok(msg) = up.try_recv() {
                on(msg, &mut credit);
            }
            let n = credit.batch(outbox.len(), MAX_BATCH);
            if n == 0 {
                // No credit: wait for a grant (a lost one deadlocks here).
                let msg = up.recv().expect("the receiver keeps its mailbox");
                on(msg, &mut credit);
                continue;
            }
            flight.add(n);
            down.send(Down::Batch(outbox.drain(..n).collect())).unwrap();
            credit.spend(n);
        }
        down.send(Down::End).unwrap();
        (credit, up, restarts)
    })
}

/// The receiving stage: passes over its mailbox's messages, steps its
/// operator and grants what it freed. Returns what its operator saw, what it
/// still owes (not granted after the input's end, as the runtime does), and
/// how many restarts retried an element.
fn receiver(
    down: Receiver<Down>,
    up: Sender<Up>,
    flight: Arc<InFlight>,
) -> thread::JoinHandle<(Vec<u64>, Owed, u32, Receiver<Down>)> {
    thread::spawn(move || {
        let mut queue = VecDeque::new();
        let mut owed = Owed::default();
        let mut seen = Vec::new();
        let (mut ended, mut restart_pending, mut retried) = (false, false, 0);
        loop {
            // An actor with queued elements goes on stepping; an idle one
            // waits for its mailbox.
            let msg = if queue.is_empty() {
                Some(down.recv().expect("the sender sends End"))
            } else {
                down.try_recv().ok()
            };
            match msg {
                Some(Down::Batch(batch)) => {
                    queue.extend(batch);
                    assert!(queue.len() <= CAPACITY, "queue beyond its capacity");
                }
                Some(Down::End) => ended = true,
                Some(Down::Restart) => restart_pending = true,
                None => {}
            }
            // One step: the operator takes up to STEP elements; the first
            // after a restart request fails, and the fresh operator retries
            // it from the front of the queue.
            let mut taken = 0;
            while taken < STEP
                && let Some(x) = queue.pop_front()
            {
                taken += 1;
                if std::mem::take(&mut restart_pending) {
                    queue.push_front(x);
                    owed.freed(taken);
                    owed.put_back(1);
                    flight.sub(taken - 1);
                    taken = 0;
                    retried += 1;
                    break;
                }
                seen.push(x);
            }
            owed.freed(taken);
            flight.sub(taken);
            if ended && queue.is_empty() {
                return (seen, owed, retried, down);
            }
            // The grant at the end of the pass (none after the input's end:
            // the upstream has finished).
            let n = owed.take();
            if n > 0 && !ended {
                up.send(Up::Demand(n)).unwrap();
            }
        }
    })
}

/// Runs the two stages and a restart (of the receiver, and of the sender
/// when `both`), then checks the counts.
fn check(both: bool) {
    let (down_tx, down_rx) = channel();
    let (up_tx, up_rx) = channel();
    let flight = Arc::new(InFlight::default());
    let restart = {
        let (down_tx, up_tx) = (down_tx.clone(), up_tx.clone());
        thread::spawn(move || {
            // The receiver may already be gone: a late restart is moot.
            let _ = down_tx.send(Down::Restart);
            if both {
                let _ = up_tx.send(Up::Restart);
            }
        })
    };
    let receiving = receiver(down_rx, up_tx, Arc::clone(&flight));
    let sending = sender(down_tx, up_rx, Arc::clone(&flight));
    let (seen, owed, retried, _down) = receiving.join().unwrap();
    restart.join().unwrap();
    let (mut credit, up, _) = sending.join().unwrap();
    // Grants still in the sender's mailbox are its credit too.
    while let Ok(msg) = up.try_recv() {
        if let Up::Demand(n) = msg {
            credit.grant(n);
        }
    }
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "each element once, in order"
    );
    assert!(retried <= 1);
    assert_eq!(flight.0.load(SeqCst), 0);
    assert_eq!(
        credit.get() + owed.get(),
        CAPACITY,
        "credit neither lost nor duplicated: credit + owed = capacity"
    );
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// The receiving stage restarts (its next element is retried by a fresh
/// operator) at any point while the sender sends.
#[test]
fn credit_is_neither_lost_nor_duplicated_across_a_restart() {
    model(|| check(false));
}

/// Both stages restart: the sender's credit and outbox stay with its actor.
#[test]
fn restarting_both_ends_keeps_the_credit() {
    model(|| check(true));
}
