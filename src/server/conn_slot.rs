//! A fetch's claim on one of its backend's connections: `.max_connections` counted across all
//! shards, its wait queue (`.wait_limit`, `.wait_timeout`), and the in-flight count
//! `least_connections` compares.
//!
//! Why an atomic per backend and not a per-shard count: the limit protects the origin, which
//! sees the sum over all shards. Taking a claim is one compare-and-swap on the backend's
//! counter in the loaded VCL (`BackendRt::in_use`); only fetches, never hits, touch it. A
//! claim lives in a [`ConnGuard`] from before the connect until the connection is released or
//! closed (after the body, for a streamed response), so the count is the backend's
//! connections in use, as Varnish's `n_conn` is.
//!
//! Waiting: a fetch that finds the backend full queues when both the wait limit and the wait
//! timeout are above 0 (per backend, else the `backend_wait_*` parameters), up to the limit
//! across all shards. A release anywhere wakes the waiting shards through their inboxes
//! ([`ShardMsg::ConnFreed`]); each waiter then tries again. A waiter also looks at the health
//! board every [`HEALTH_RECHECK`], so a backend going sick ends its queue within that time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::backend::FetchError;
use crate::stats::C;
use crate::vcl::loaded::BackendRt;
use crate::vcl::LoadedVcl;

use super::shard::{Shard, ShardMsg};
use super::Shared;

/// How often a queued fetch re-reads its backend's health.
pub const HEALTH_RECHECK: Duration = Duration::from_millis(50);

/// One fetch's claim on a connection of backend `id` of `vcl`; released when dropped.
pub struct ConnGuard {
    vcl: Arc<LoadedVcl>,
    id: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnGuard({})", self.id)
    }
}

impl ConnGuard {
    /// The backend's health slot (where its `VBE` counters are kept).
    pub fn slot(&self) -> usize {
        self.vcl
            .backends
            .get(self.id)
            .map_or(usize::MAX, |b| b.slot)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let Some(be) = self.vcl.backends.get(self.id) else {
            return;
        };
        be.in_use.fetch_sub(1, Ordering::SeqCst);
        if be.max_connections > 0 && be.waiting.load(Ordering::SeqCst) > 0 {
            for inbox in &self.shared.inboxes {
                let _ = inbox.unbounded_send(ShardMsg::ConnFreed);
            }
        }
    }
}

/// One more connection in use if that stays within `max` (0: no limit).
fn try_take(be: &BackendRt) -> bool {
    let max = be.max_connections;
    if max == 0 {
        be.in_use.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    be.in_use
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// A claim on a connection of backend `id` without waiting (a pipe): `None` at
/// `.max_connections` (counted as busy).
pub fn try_acquire(shard: &Shard, vcl: &Arc<LoadedVcl>, id: usize) -> Option<ConnGuard> {
    let be = vcl.backends.get(id)?;
    if try_take(be) {
        Some(ConnGuard {
            vcl: vcl.clone(),
            id,
            shared: shard.shared.clone(),
        })
    } else {
        shard.counters().inc(C::backend_busy);
        None
    }
}

/// Counts a fetch in the backend's wait queue while it lives.
struct Waiting<'a>(&'a BackendRt);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Claims a connection of backend `id` of `vcl` for a fetch on `shard`, waiting in the
/// backend's queue if it has one. `Err(Busy)`: at `.max_connections` with no room to wait,
/// or the wait ended without a connection (timeout, the backend went sick).
pub async fn acquire(
    shard: &Shard,
    vcl: &Arc<LoadedVcl>,
    id: usize,
) -> Result<ConnGuard, FetchError> {
    let Some(be) = vcl.backends.get(id) else {
        return Err(FetchError::Busy);
    };
    let guard = || ConnGuard {
        vcl: vcl.clone(),
        id,
        shared: shard.shared.clone(),
    };
    if try_take(be) {
        return Ok(guard());
    }
    let counters = shard.counters();
    let params = shard.params();
    let limit = be.wait_limit.map_or(params.backend_wait_limit, u64::from);
    let timeout = be.wait_timeout.unwrap_or(params.backend_wait_timeout);
    if limit == 0 || timeout <= 0.0 {
        counters.inc(C::backend_busy);
        return Err(FetchError::Busy);
    }
    if u64::from(be.waiting.fetch_add(1, Ordering::SeqCst)) >= limit {
        be.waiting.fetch_sub(1, Ordering::SeqCst);
        counters.inc(C::backend_busy);
        return Err(FetchError::Busy);
    }
    let _queued = Waiting(be);
    counters.inc(C::backend_wait);
    let deadline = Instant::now() + super::io::secs(timeout);
    let health = &shard.shared.health.board;
    loop {
        // Registered before the retry: a release after a failed try finds this waiter.
        let (tx, rx) = oneshot::channel();
        {
            let mut w = shard.conn_waiters.borrow_mut();
            if w.len() >= 64 {
                // Senders of waiters that timed out or left.
                w.retain(|t| !t.is_canceled());
            }
            w.push(tx);
        }
        if try_take(be) {
            return Ok(guard());
        }
        let now = Instant::now();
        if now >= deadline || !health.healthy(be.slot) {
            break;
        }
        let nap = (deadline - now).min(HEALTH_RECHECK);
        let _ = monoio::time::timeout(nap, rx).await;
    }
    counters.inc(C::backend_wait_fail);
    counters.inc(C::backend_busy);
    Err(FetchError::Busy)
}
