//! Backend health: the board shards read, and the poller thread that writes it.
//!
//! Why a separate thread: probes are timers and sockets that must keep their schedule however
//! busy the shards are, and a shard must never wait to learn whether a backend is healthy. The
//! poller owns every probe (its own io_uring runtime, on its own core when there is one to
//! spare) and publishes health as atomic bitsets; a shard's check is one relaxed load.
//!
//! This is the skeleton the health issue fills in: the board has one bit per backend slot, all
//! healthy (a backend without a probe is healthy, as in Varnish), and the poller runs its event
//! loop with nothing to probe yet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Health of every backend slot, one bit each (1 = healthy), readable from any thread.
pub struct Board {
    words: Box<[AtomicU64]>,
}

impl Board {
    /// A board for `slots` backends, all healthy.
    pub fn new(slots: usize) -> Board {
        let n = slots.div_ceil(64).max(1);
        Board {
            words: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }

    /// Is slot `i` healthy? (Unknown slots are reported sick.)
    #[inline]
    pub fn healthy(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Sets slot `i`'s health (poller only).
    pub fn set(&self, i: usize, healthy: bool) {
        if let Some(w) = self.words.get(i / 64) {
            let bit = 1u64 << (i % 64);
            if healthy {
                w.fetch_or(bit, Ordering::Release);
            } else {
                w.fetch_and(!bit, Ordering::Release);
            }
        }
    }
}

/// How long boot waits for the poller's runtime to come up.
const POLLER_START: Duration = Duration::from_secs(10);

/// Starts the poller thread on its own monoio runtime, pinned to `core` if given, and returns
/// once its runtime runs (so "ready" means every thread of the topology is up).
pub fn spawn_poller(
    core: Option<core_affinity::CoreId>,
    _board: Arc<Board>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("ringcache-poller".into())
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            // The same engine choice as the shards: io_uring, else epoll.
            let r = crate::server::run_runtime(256, move |_engine| async move {
                let _ = up_tx.send(());
                // Probe timers live here once backends have probes.
                while !stop.load(Ordering::Relaxed) {
                    monoio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            if let Err(e) = r {
                eprintln!("ringcache: poller runtime failed to start: {e}");
            }
        })?;
    match up_rx.recv_timeout(POLLER_START) {
        Ok(()) => Ok(handle),
        Err(_) => Err(std::io::Error::other(
            "the poller's runtime did not start in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_bits() {
        let b = Board::new(70);
        assert!(b.healthy(0));
        assert!(b.healthy(69));
        b.set(69, false);
        assert!(!b.healthy(69));
        assert!(b.healthy(68));
        b.set(69, true);
        assert!(b.healthy(69));
        assert!(!b.healthy(1000));
    }
}
