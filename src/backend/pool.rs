//! A shard's idle backend connections, reused last-in-first-out.
//!
//! Why LIFO: the most recently used connection is the one least likely to have been closed by
//! the backend's own keep-alive timer, and surplus connections sink to the bottom where the idle
//! sweep closes them (Varnish's pools are LIFO for the same reason). Every connection here was
//! released after a complete, well-framed response; anything that saw an error or a timeout is
//! dropped by the fetch code and never reaches the pool.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::conn::{Endpoint, Stream};

struct Idle {
    stream: Stream,
    since: Instant,
}

/// Idle connections per endpoint (destination and preamble: see `conn`).
pub struct Pool {
    idle: HashMap<Endpoint, Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: HashMap::new(),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently returned live connection to `ep`, if any. Expired ones are closed.
    pub fn take(&mut self, ep: &Endpoint, now: Instant) -> Option<Stream> {
        let list = self.idle.get_mut(ep)?;
        while let Some(idle) = list.pop() {
            if now.duration_since(idle.since) < self.idle_timeout {
                return Some(idle.stream);
            }
            // Older than backend_idle_timeout: everything below it is older still.
            list.clear();
        }
        None
    }

    /// Returns a connection after a complete response. Over `max_idle`, the oldest is closed.
    pub fn put(&mut self, ep: &Endpoint, stream: Stream, now: Instant) {
        if self.max_idle == 0 {
            return;
        }
        let list = match self.idle.get_mut(ep) {
            Some(l) => l,
            None => self.idle.entry(ep.clone()).or_default(),
        };
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push(Idle { stream, since: now });
        debug_assert!(list.len() <= self.max_idle);
    }

    /// New limits (`param.set backend_idle_max` / `backend_idle_timeout`): the oldest
    /// connections over the new count are closed now, the timeout applies at the next take or
    /// sweep.
    pub fn set_limits(&mut self, max_idle: usize, idle_timeout: Duration) {
        self.max_idle = max_idle;
        self.idle_timeout = idle_timeout;
        for list in self.idle.values_mut() {
            let over = list.len().saturating_sub(max_idle);
            list.drain(..over);
        }
        self.idle.retain(|_, l| !l.is_empty());
    }

    /// Closes connections idle longer than the timeout; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut closed = 0;
        for list in self.idle.values_mut() {
            let keep_from = list
                .iter()
                .position(|i| now.duration_since(i.since) < self.idle_timeout)
                .unwrap_or(list.len());
            closed += keep_from;
            list.drain(..keep_from);
        }
        self.idle.retain(|_, l| !l.is_empty());
        closed
    }

    /// Idle connections held for `ep`.
    pub fn idle_count(&self, ep: &Endpoint) -> usize {
        self.idle.get(ep).map_or(0, |l| l.len())
    }
}
