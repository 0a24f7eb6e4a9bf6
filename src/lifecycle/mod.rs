//! The process lifecycle after boot: readiness, reload (`SIGHUP`), drain (`SIGTERM`/`SIGINT`)
//! and systemd's notifications and watchdog.
//!
//! Why one control-plane thread owns all of it: signals, systemd and the decision to exit are
//! process-wide, and none of it may run on a shard (a shard never blocks, never reads a file).
//! So boot's main thread, once the shards serve, becomes the lifecycle thread: it takes the
//! blocked signals with `sigtimedwait` (`signals`), reloads the `-f` file through the same
//! control path as `vcl.load` + `vcl.use` (`reload`), and talks to systemd over
//! `$NOTIFY_SOCKET` (`notify`). The shards' side is one [`Pulse`]: per shard a heartbeat
//! counter (bumped by a timer task on the shard's own runtime, so it moves only while that event
//! loop advances) and the open connection count, plus the process-wide drain flag they read.
//!
//! Drain: the flag goes up (responses from then on say `Connection: close`), every listening
//! socket is `shutdown()` (each shard's in-flight accept completes with an error, so no accept
//! future is ever dropped in flight, which in monoio 0.2.4 would leak the connection it may have
//! accepted; the kernel refuses new connections from then on), each shard is told to close its
//! idle keep-alive connections, and the thread waits until no connection is open or
//! `drain_timeout` has passed.

pub mod notify;
pub mod reload;
pub mod signals;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::Control as _;
use crate::control::Control;
use crate::server::shard::ShardMsg;
use crate::server::Shared;

use notify::Notifier;
use signals::{Signal, Signals};

/// One shard's published liveness, on its own cache line (a single writer: the shard).
#[repr(align(64))]
#[derive(Default)]
struct ShardPulse {
    heartbeat: AtomicU64,
    open: AtomicU64,
}

/// What shards publish for the lifecycle thread, and the drain flag they read.
pub struct Pulse {
    shards: Box<[ShardPulse]>,
    draining: AtomicBool,
}

impl Pulse {
    pub fn new(shards: usize) -> Pulse {
        Pulse {
            shards: (0..shards).map(|_| ShardPulse::default()).collect(),
            draining: AtomicBool::new(false),
        }
    }

    /// Shard `shard`'s event loop went round once more (called from its heartbeat task).
    #[inline]
    pub fn beat(&self, shard: usize) {
        if let Some(p) = self.shards.get(shard) {
            // Single writer: a plain load and store.
            let h = p.heartbeat.load(Ordering::Relaxed);
            p.heartbeat.store(h.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Shard `shard` has `n` client connections open.
    #[inline]
    pub fn set_open(&self, shard: usize, n: u64) {
        if let Some(p) = self.shards.get(shard) {
            p.open.store(n, Ordering::Relaxed);
        }
    }

    /// Client connections open over all shards.
    pub fn open(&self) -> u64 {
        self.shards
            .iter()
            .map(|p| p.open.load(Ordering::Relaxed))
            .sum()
    }

    /// Every shard's heartbeat counter.
    pub fn heartbeats(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|p| p.heartbeat.load(Ordering::Relaxed))
            .collect()
    }

    /// Has the drain started? (Read per response on the shards: one relaxed load.)
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// How often a shard beats: often enough that several beats fall in each half watchdog period
/// (systemd's recommended ping interval), and never more often than needed without one.
pub fn heartbeat_every(watchdog: Option<Duration>) -> Duration {
    const IDLE: Duration = Duration::from_millis(250);
    match watchdog {
        Some(w) => (w / 8).clamp(Duration::from_millis(1), IDLE),
        None => IDLE,
    }
}

/// The shards whose heartbeat did not move between two readings.
pub fn stalled(before: &[u64], now: &[u64]) -> Vec<usize> {
    before
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (a, b))| a == b)
        .map(|(i, _)| i)
        .collect()
}

/// The longest a boot waits for every probe's first poke before telling systemd it is ready.
const PROBE_WAIT_MAX: Duration = Duration::from_secs(30);

/// How long `READY=1` may wait for the first probe round: the longest `.timeout` of the active
/// VCL's probes (a first poke is due at once and ends within its timeout) plus a second of
/// slack, at most [`PROBE_WAIT_MAX`]; zero without probes.
pub fn probe_wait(timeouts: impl Iterator<Item = f64>) -> Duration {
    let longest = timeouts.fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    match longest {
        None => Duration::ZERO,
        Some(t) => Duration::try_from_secs_f64(t.max(0.0) + 1.0)
            .unwrap_or(PROBE_WAIT_MAX)
            .min(PROBE_WAIT_MAX),
    }
}

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every in-flight connection finished.
    Drained,
    /// `drain_timeout` passed with connections still open (they are cut by the exit).
    TimedOut,
    /// A second SIGTERM/SIGINT during the drain.
    Forced,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Exit::Drained | Exit::TimedOut => 0,
            Exit::Forced => 1,
        }
    }
}

/// Everything the lifecycle thread needs (built by boot).
pub struct Lifecycle {
    pub signals: Signals,
    pub notifier: Notifier,
    /// `$WATCHDOG_USEC`, when systemd wants pings from this process.
    pub watchdog: Option<Duration>,
    pub control: Arc<Control>,
    pub shared: Arc<Shared>,
    /// Duplicates of every shard's listening socket, to `shutdown()` them at drain.
    pub listeners: Vec<std::net::TcpListener>,
    /// The `-f` file (`None` with `-b`: nothing to reload).
    pub vcl_file: Option<PathBuf>,
    pub drain_timeout: Duration,
}

/// Watchdog bookkeeping.
struct Watchdog {
    every: Duration,
    next: Instant,
    beats: Vec<u64>,
    /// A stall was reported and has not cleared yet.
    stalled: bool,
}

impl Lifecycle {
    /// Runs until the process should exit: serves signals, sends `READY=1` once every probe
    /// had its first poke (bounded), pings the watchdog. Returns how the drain ended.
    pub fn run(mut self) -> Exit {
        let started = Instant::now();
        let wait = probe_wait(
            self.control
                .active
                .current()
                .program
                .probes
                .iter()
                .map(|p| p.timeout),
        );
        let mut ready_by = Some(started + wait);
        let mut dog = self.watchdog.map(|w| Watchdog {
            every: w / 2,
            next: started + w / 2,
            beats: self.shared.pulse.heartbeats(),
            stalled: false,
        });
        let mut reloads = 0u64;
        loop {
            let now = Instant::now();
            if let Some(by) = ready_by {
                let pending = self.control.health.probes_unpoked();
                if pending == 0 || now >= by {
                    if pending > 0 {
                        eprintln!(
                            "ringcache: {pending} probes had no answer within {:.1} s; \
                             ready anyway",
                            wait.as_secs_f64()
                        );
                    }
                    self.notifier
                        .send(&format!("READY=1\nSTATUS={}", self.serving_status()));
                    ready_by = None;
                }
            }
            let mut timeout = Duration::from_secs(1);
            if ready_by.is_some() {
                timeout = timeout.min(Duration::from_millis(10));
            }
            if let Some(d) = &dog {
                timeout = timeout.min(d.next.saturating_duration_since(now));
            }
            match self.signals.wait(timeout) {
                Some(Signal::Hup) => {
                    reloads += 1;
                    self.reload(reloads);
                }
                Some(sig @ (Signal::Term | Signal::Int)) => return self.drain(sig, &mut dog),
                None => {}
            }
            if let Some(d) = &mut dog {
                self.watchdog_tick(d);
            }
        }
    }

    fn serving_status(&self) -> String {
        format!(
            "serving, {} shards, VCL {}",
            self.shared.shards,
            self.control.active_vcl()
        )
    }

    /// Sends `WATCHDOG=1` when due, if every shard's heartbeat moved since the last ping.
    fn watchdog_tick(&self, d: &mut Watchdog) {
        let now = Instant::now();
        if now < d.next {
            return;
        }
        let beats = self.shared.pulse.heartbeats();
        let stuck = stalled(&d.beats, &beats);
        if stuck.is_empty() {
            self.notifier.send("WATCHDOG=1");
            if d.stalled {
                eprintln!("ringcache: watchdog: every shard advances again; pinging systemd");
            }
            d.stalled = false;
        } else if !d.stalled {
            eprintln!(
                "ringcache: watchdog: shard {stuck:?} made no progress in {:.3} s; \
                 not pinging systemd",
                d.every.as_secs_f64()
            );
            d.stalled = true;
        }
        d.beats = beats;
        d.next = now + d.every;
    }

    /// `SIGHUP`: reload the `-f` file (see `reload`), framed by `RELOADING=1` and `READY=1`.
    fn reload(&self, seq: u64) {
        self.notifier.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            notify::monotonic_usec()
        ));
        let Some(path) = &self.vcl_file else {
            eprintln!("ringcache: SIGHUP: started with -b, there is no VCL file to reload");
            self.notifier
                .send(&format!("READY=1\nSTATUS={}", self.serving_status()));
            return;
        };
        eprintln!("ringcache: SIGHUP: reloading {}", path.display());
        let now = crate::health::epoch_now() as u64;
        match reload::reload(&*self.control, path, now, seq) {
            reload::Outcome::Switched { name, warnings, .. } => {
                if !warnings.is_empty() {
                    eprint!("{warnings}");
                }
                eprintln!("ringcache: reload: VCL {name} is active");
                self.notifier
                    .send(&format!("READY=1\nSTATUS={}", self.serving_status()));
            }
            reload::Outcome::Refused { name, error } => {
                let active = self.control.active_vcl();
                eprint!("{error}");
                if !error.ends_with('\n') {
                    eprintln!();
                }
                let first = error.lines().next().unwrap_or("").trim();
                self.control.health.events.push(
                    "VCL_Event",
                    format!("VCL_Event reload_failed {name} {first}"),
                );
                eprintln!(
                    "ringcache: reload: {} refused; VCL {active} keeps serving",
                    path.display()
                );
                self.notifier.send(&format!(
                    "READY=1\nSTATUS=reload failed ({first}); serving, {} shards, VCL {active}",
                    self.shared.shards
                ));
            }
        }
    }

    /// `SIGTERM`/`SIGINT`: stop accepting, close idle connections, wait for the rest (at most
    /// `drain_timeout`).
    fn drain(&mut self, sig: Signal, dog: &mut Option<Watchdog>) -> Exit {
        let pulse = &self.shared.pulse;
        pulse.start_draining();
        self.notifier.send(&format!(
            "STOPPING=1\nSTATUS=draining: {} in flight",
            pulse.open()
        ));
        for l in self.listeners.drain(..) {
            // SAFETY: `l` is an open socket owned here (a duplicate of a shard's listener);
            // shutdown(2) on it changes the shared socket, and `l` is closed right after.
            let r = unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
            if r != 0 {
                eprintln!(
                    "ringcache: drain: shutdown of a listener failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        for inbox in &self.shared.inboxes {
            let _ = inbox.unbounded_send(ShardMsg::Drain);
        }
        let deadline = Instant::now() + self.drain_timeout;
        eprintln!(
            "ringcache: {}: draining, not accepting; {} connections open (drain_timeout {:.3} s)",
            sig.name(),
            pulse.open(),
            self.drain_timeout.as_secs_f64()
        );
        let mut last_status = Instant::now();
        loop {
            let open = pulse.open();
            if open == 0 {
                eprintln!("ringcache: drained; exiting");
                return Exit::Drained;
            }
            let now = Instant::now();
            if now >= deadline {
                eprintln!("ringcache: drain_timeout reached; exiting with {open} connections cut");
                return Exit::TimedOut;
            }
            if now.duration_since(last_status) >= Duration::from_secs(1) {
                self.notifier
                    .send(&format!("STATUS=draining: {open} in flight"));
                last_status = now;
            }
            let mut timeout = Duration::from_millis(10).min(deadline - now);
            if let Some(d) = dog.as_ref() {
                timeout = timeout.min(d.next.saturating_duration_since(now));
            }
            match self.signals.wait(timeout) {
                Some(s @ (Signal::Term | Signal::Int)) => {
                    eprintln!(
                        "ringcache: {} during the drain; exiting now with {} connections cut",
                        s.name(),
                        pulse.open()
                    );
                    return Exit::Forced;
                }
                Some(Signal::Hup) => {
                    eprintln!("ringcache: SIGHUP during the drain; not reloading");
                }
                None => {}
            }
            if let Some(d) = dog.as_mut() {
                self.watchdog_tick(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulse_counts() {
        let p = Pulse::new(3);
        assert_eq!(p.heartbeats(), vec![0, 0, 0]);
        p.beat(1);
        p.beat(1);
        p.beat(7); // out of range: ignored
        assert_eq!(p.heartbeats(), vec![0, 2, 0]);
        p.set_open(0, 4);
        p.set_open(2, 1);
        assert_eq!(p.open(), 5);
        assert!(!p.draining());
        p.start_draining();
        assert!(p.draining());
    }

    #[test]
    fn stalls_are_shards_whose_beat_did_not_move() {
        assert!(stalled(&[1, 5, 9], &[2, 6, 10]).is_empty());
        assert_eq!(stalled(&[1, 5, 9], &[2, 5, 10]), vec![1]);
        assert_eq!(stalled(&[0, 0], &[0, 0]), vec![0, 1]);
    }

    #[test]
    fn heartbeat_fits_the_watchdog() {
        assert_eq!(heartbeat_every(None), Duration::from_millis(250));
        assert_eq!(
            heartbeat_every(Some(Duration::from_secs(30))),
            Duration::from_millis(250)
        );
        assert_eq!(
            heartbeat_every(Some(Duration::from_secs(1))),
            Duration::from_millis(125)
        );
        assert_eq!(
            heartbeat_every(Some(Duration::from_micros(1))),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn probe_wait_is_the_longest_timeout_bounded() {
        assert_eq!(probe_wait([].into_iter()), Duration::ZERO);
        assert_eq!(probe_wait([2.0, 0.5].into_iter()), Duration::from_secs(3));
        assert_eq!(probe_wait([1e9].into_iter()), PROBE_WAIT_MAX);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Exit::Drained.code(), 0);
        assert_eq!(Exit::TimedOut.code(), 0);
        assert_eq!(Exit::Forced.code(), 1);
    }
}
