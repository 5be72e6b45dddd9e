//! A byte budget for one in-memory link: how far a sender may run ahead of its receiver.
//!
//! cp's dealing never waits for the servers (its material does not depend on their data), so on
//! an unbounded channel it runs ahead for as long as the program lasts, and everything it has
//! dealt but the servers have not used yet sits in memory. In a 100-epoch logistic regression
//! that grew the process by about 1.6 MB per epoch, without bound. A [`Backlog`] caps the bytes in flight on
//! the cp → server1 link (the one that carries the dealt corrections): when a message does not
//! fit, the sender waits until the receiver has drained the backlog to half the cap (hysteresis,
//! so a full link costs one wake-up per half-cap of traffic, not one per message). A message
//! larger than the cap is sent alone once the link is below half of it, so every message gets
//! through.
//!
//! Deadlock freedom: only cp's sends to server1 wait, and server1 receives cp's material for an
//! operation before it exchanges anything with server0 in that operation (every operation deals
//! first), so server1 always drains the backlog without needing a message that cp has not sent.
//! A receiver that goes away closes the budget, and a waiting sender then fails at once.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The shared state of one budgeted link.
#[derive(Debug)]
pub struct Backlog {
    cap: usize,
    state: Mutex<State>,
    drained: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes sent and not yet received.
    queued: usize,
    /// A sender waits for the receiver to drain the link to half the cap.
    waiting: bool,
    /// The receiver is gone.
    closed: bool,
}

impl Backlog {
    /// A budget of `cap` bytes in flight.
    pub fn new(cap: usize) -> Self {
        Backlog { cap, state: Mutex::new(State::default()), drained: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters half-updated (each update is
        // one statement), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for `bytes` before they are sent: waits while the link holds other messages
    /// and `bytes` would overflow the cap, until the receiver has drained it to half the cap.
    /// Returns false if the receiver is gone.
    pub fn reserve(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        if state.queued > 0 && state.queued + bytes > self.cap {
            state.waiting = true;
            while state.queued > self.cap / 2 && !state.closed {
                state = self.drained.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            state.waiting = false;
        }
        state.queued += bytes;
        !state.closed
    }

    /// Records that the receiver took `bytes` off the link; wakes a waiting sender once the link
    /// is down to half the cap.
    pub fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(bytes);
        if state.waiting && state.queued <= self.cap / 2 {
            self.drained.notify_one();
        }
    }

    /// The receiver is gone: a waiting or later sender stops waiting.
    pub fn close(&self) {
        self.lock().closed = true;
        self.drained.notify_all();
    }

    /// Bytes sent and not yet received.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn sender_waits_for_half_the_cap_then_continues() {
        let b = Arc::new(Backlog::new(100));
        assert!(b.reserve(60));
        assert!(b.reserve(40)); // exactly the cap
        let sender = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.reserve(10))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "a full link must make the sender wait");
        b.release(40); // 60 left: still above half the cap
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "the sender waits until the link is down to half the cap");
        b.release(60);
        assert!(sender.join().unwrap());
        assert_eq!(b.queued(), 10);
    }

    #[test]
    fn a_message_above_the_cap_goes_through_an_empty_link() {
        let b = Backlog::new(100);
        assert!(b.reserve(1000));
        assert_eq!(b.queued(), 1000);
    }

    #[test]
    fn closing_releases_a_waiting_sender_with_an_error() {
        let b = Arc::new(Backlog::new(10));
        assert!(b.reserve(10));
        let sender = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.reserve(10))
        };
        std::thread::sleep(Duration::from_millis(20));
        b.close();
        assert!(!sender.join().unwrap());
    }
}
