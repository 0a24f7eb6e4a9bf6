//! Backend health: the board shards read, and the poller thread that writes it.
//!
//! Why a separate thread: probes are timers and sockets that must keep their schedule however
//! busy the shards are, and a shard must never wait to learn whether a backend is healthy. The
//! poller owns every probe (its own io_uring runtime, on its own core when there is one to
//! spare) and publishes health as atomic bitsets; a shard's check is a few relaxed loads.
//!
//! Backends are *slots* (`slots`): a backend declared identically ({name, IPv4+port, IPv6+port}
//! or UDS path) by several loaded VCLs is one slot, so they share its health, admin override
//! and probe. `window` is the pure probe state machine, `probe` one poke on the wire, `poller`
//! the thread that schedules pokes; [`Health`] is what they publish: the [`Board`] for shards,
//! per-slot status and the event log for the control plane.

pub mod poller;
pub mod probe;
pub mod slots;
pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};

/// Most backend slots that can exist at once (a VCL that would need more is refused).
pub const MAX_SLOTS: usize = 65_536;

const WORDS: usize = MAX_SLOTS / 64;

/// Health of every backend slot, readable from any thread without a lock.
///
/// Three bitsets: the probe's verdict (1 = healthy; a slot without probe stays 1), the admin
/// override flag (`backend.set_health healthy|sick`) and the override's value. A slot is
/// healthy when it is forced healthy, or not forced and its probe says healthy. Each writer owns
/// one bitset (the poller the verdicts, the admin thread the override), so no writer ever has
/// to read-modify-write another's bits.
pub struct Board {
    probe: Box<[AtomicU64]>,
    forced: Box<[AtomicU64]>,
    forced_up: Box<[AtomicU64]>,
    /// Per slot: when its health last changed (seconds since the epoch, as `f64` bits), for
    /// `backend.list` and the shard director's rampup (read on a shard, so no lock).
    changed: Box<[AtomicU64]>,
    /// Per slot: no new connection before this time (seconds since the epoch, `f64` bits),
    /// after a refused or failed connect (Varnish's holddown). Written by any shard.
    held_until: Box<[AtomicU64]>,
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

impl Board {
    /// A board of [`MAX_SLOTS`] slots, all healthy, none forced.
    pub fn new() -> Board {
        let words = |v: u64| (0..WORDS).map(|_| AtomicU64::new(v)).collect();
        Board {
            probe: words(u64::MAX),
            forced: words(0),
            forced_up: words(0),
            changed: (0..MAX_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            held_until: (0..MAX_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Are new connections to slot `i` held down at `now` (seconds since the epoch)?
    #[inline]
    pub fn held_down(&self, i: usize, now: f64) -> bool {
        self.held_until
            .get(i)
            .is_some_and(|h| now < f64::from_bits(h.load(Ordering::Relaxed)))
    }

    /// Holds new connections to slot `i` down until `until` (never shortens a holddown).
    pub fn hold_down(&self, i: usize, until: f64) {
        if let Some(h) = self.held_until.get(i) {
            let _ = h.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (until > f64::from_bits(old)).then_some(until.to_bits())
            });
        }
    }

    /// When slot `i`'s health last changed (seconds since the epoch; 0 for unknown slots).
    #[inline]
    pub fn changed(&self, i: usize) -> f64 {
        self.changed
            .get(i)
            .map_or(0.0, |c| f64::from_bits(c.load(Ordering::Relaxed)))
    }

    /// Records that slot `i`'s health changed at `t` (seconds since the epoch).
    pub fn set_changed(&self, i: usize, t: f64) {
        if let Some(c) = self.changed.get(i) {
            c.store(t.to_bits(), Ordering::Relaxed);
        }
    }

    /// Is slot `i` healthy? (Slots past [`MAX_SLOTS`] are reported sick.)
    #[inline]
    pub fn healthy(&self, i: usize) -> bool {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        let Some(forced) = self.forced.get(w) else {
            return false;
        };
        if forced.load(Ordering::Acquire) & bit != 0 {
            self.forced_up[w].load(Ordering::Acquire) & bit != 0
        } else {
            self.probe[w].load(Ordering::Acquire) & bit != 0
        }
    }

    /// The probe's verdict for slot `i`, ignoring the admin override.
    pub fn probe_healthy(&self, i: usize) -> bool {
        self.probe
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Sets slot `i`'s probe verdict (the poller, and the control plane before a slot's first
    /// poke). Returns the previous verdict.
    pub fn set_probe(&self, i: usize, healthy: bool) -> bool {
        set_bit(&self.probe, i, healthy)
    }

    /// Sets slot `i`'s admin override (`None`: auto, the probe decides).
    pub fn set_admin(&self, i: usize, forced: Option<bool>) {
        match forced {
            None => {
                set_bit(&self.forced, i, false);
            }
            Some(up) => {
                // Value first, then the flag: a reader never sees the flag with a stale value.
                set_bit(&self.forced_up, i, up);
                set_bit(&self.forced, i, true);
            }
        }
    }
}

fn set_bit(words: &[AtomicU64], i: usize, on: bool) -> bool {
    let Some(w) = words.get(i / 64) else {
        return false;
    };
    let bit = 1u64 << (i % 64);
    let old = if on {
        w.fetch_or(bit, Ordering::AcqRel)
    } else {
        w.fetch_and(!bit, Ordering::AcqRel)
    };
    old & bit != 0
}

/// A probe's state as the control plane shows it (`backend.list -p` / `-j`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeView {
    pub good: u32,
    pub threshold: u32,
    pub window: u32,
    /// Exponential average response time of good probes, seconds.
    pub avg: f64,
    /// The 64-poke history bitmaps, newest in bit 0, in Varnish's order:
    /// good IPv4, good IPv6, good UNIX, error xmit, good xmit, error recv, good recv, happy.
    pub bits: [u64; 8],
}

impl ProbeView {
    /// What `backend.list` shows of window `w`.
    pub fn of(w: &window::Window) -> ProbeView {
        ProbeView {
            good: w.good(),
            threshold: w.threshold(),
            window: w.window(),
            avg: w.avg(),
            bits: w.bits(),
        }
    }
}

/// What the control plane knows of one slot beyond its board bits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotStatus {
    /// `None`: no probe runs for the slot.
    pub probe: Option<ProbeView>,
    /// A probe was started for the slot and not stopped since: only then are the poller's
    /// reports applied (a report racing a stop is dropped).
    pub probing: bool,
    /// The probe has been poked at least once (its first verdict is real, not `.initial`).
    pub poked: bool,
}

/// One structured event (`Backend_health`, `VCL_Event`...): tests and `ringcache log` read them.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Increases by one per event, from 1.
    pub seq: u64,
    pub tag: &'static str,
    /// The line as printed (starting with the tag).
    pub line: String,
}

/// Events kept for readers that come later.
pub const EVENTS_KEPT: usize = 4096;

/// The control plane's event log: a bounded ring of the latest events (the oldest is dropped
/// first), which `log.read` serves; every event also goes to the log writer (`crate::logs`:
/// stderr or `log_file`).
#[derive(Default)]
pub struct Events {
    ring: std::sync::Mutex<(u64, std::collections::VecDeque<Event>)>,
}

impl Events {
    /// Logs `line` (which starts with `tag`): kept here at once, written by the log writer.
    pub fn push(&self, tag: &'static str, line: String) {
        self.keep(tag, line.clone());
        crate::logs::emit_kept(tag, line);
    }

    /// Keeps `line` in the ring only (the log writer does this for lines from the shards).
    pub fn keep(&self, tag: &'static str, line: String) {
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let seq = g.0;
        if g.1.len() >= EVENTS_KEPT {
            g.1.pop_front();
        }
        g.1.push_back(Event { seq, tag, line });
    }

    /// Events after `seq` (at most `max`), oldest first.
    pub fn since(&self, seq: u64, max: usize) -> Vec<Event> {
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter()
            .filter(|e| e.seq > seq)
            .take(max)
            .cloned()
            .collect()
    }
}

/// What the health side publishes: the board (data plane) and, for the control plane, each
/// slot's status and the event log.
pub struct Health {
    pub board: Board,
    pub events: Events,
    /// `log_probes`: every poke's `Backend_health` line goes to the log, not only transitions
    /// (all of them are in the event ring either way). Set at boot.
    pub log_pokes: std::sync::atomic::AtomicBool,
    status: std::sync::Mutex<Vec<SlotStatus>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            board: Board::new(),
            events: Events::default(),
            log_pokes: std::sync::atomic::AtomicBool::new(false),
            status: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Slot `i`'s status (default when never set).
    pub fn status(&self, i: usize) -> SlotStatus {
        let g = self.status.lock().unwrap_or_else(|p| p.into_inner());
        g.get(i).cloned().unwrap_or_default()
    }

    /// Probes started and not yet poked once: boot waits for 0 (bounded) before telling
    /// systemd it is ready, so the first requests see real health.
    pub fn probes_unpoked(&self) -> usize {
        let g = self.status.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().filter(|s| s.probing && !s.poked).count()
    }

    /// Updates slot `i`'s status.
    pub fn update_status(&self, i: usize, f: impl FnOnce(&mut SlotStatus)) {
        if i >= MAX_SLOTS {
            return;
        }
        let mut g = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() <= i {
            g.resize(i + 1, SlotStatus::default());
        }
        f(&mut g[i]);
    }
}

/// Seconds since the epoch, now.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Applies one poller report for `slot` (the poller's `Report` callback): the board bit, the
/// status `backend.list` shows, and the `Backend_health` event. Dropped when the slot's probe
/// was stopped meanwhile.
pub fn apply_report(
    health: &Health,
    slot: usize,
    w: &window::Window,
    t: window::Transition,
    line: &str,
) {
    let mut applied = false;
    health.update_status(slot, |s| {
        if !s.probing {
            return;
        }
        applied = true;
        s.poked |= w.pokes() > 0;
        health.board.set_probe(slot, w.healthy());
        s.probe = Some(ProbeView::of(w));
        if t.changed() {
            health.board.set_changed(slot, epoch_now());
        }
    });
    if applied {
        // The log (the journal) gets transitions; every poke is in the event ring, which
        // `log.read` and `ringcache log` serve as varnishlog shows Varnish's.
        if t.changed() || health.log_pokes.load(Ordering::Relaxed) {
            health.events.push("Backend_health", line.to_string());
        } else {
            health.events.keep("Backend_health", line.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_bits_and_override() {
        let b = Board::new();
        assert!(b.healthy(0));
        assert!(b.healthy(MAX_SLOTS - 1));
        assert!(!b.healthy(MAX_SLOTS));
        assert!(b.set_probe(69, false));
        assert!(!b.healthy(69));
        assert!(b.healthy(68));
        b.set_admin(69, Some(true));
        assert!(b.healthy(69), "forced healthy wins over a sick probe");
        assert!(!b.probe_healthy(69));
        b.set_probe(69, true);
        b.set_admin(69, Some(false));
        assert!(!b.healthy(69), "forced sick wins over a healthy probe");
        b.set_admin(69, None);
        assert!(b.healthy(69), "auto: the probe decides again");
    }

    #[test]
    fn unpoked_probes_are_counted_until_their_first_poke() {
        let h = Health::new();
        assert_eq!(h.probes_unpoked(), 0);
        h.update_status(3, |s| s.probing = true);
        h.update_status(5, |s| s.probing = true);
        h.update_status(9, |s| s.poked = false);
        assert_eq!(h.probes_unpoked(), 2);
        // The report at probe start carries the `.initial` history: not a poke.
        let mut w = window::Window::new(8, 3, 2);
        apply_report(&h, 3, &w, w.initial_transition(), "start");
        assert_eq!(h.probes_unpoked(), 2);
        let t = w.poke(&window::Poke::default(), 1.0);
        apply_report(&h, 3, &w, t, "poked");
        assert_eq!(h.probes_unpoked(), 1);
        // A report for a slot that is not probing is dropped and changes nothing.
        apply_report(&h, 9, &w, t, "stray");
        assert!(!h.status(9).poked);
        apply_report(&h, 5, &w, t, "poked");
        assert_eq!(h.probes_unpoked(), 0);
    }

    #[test]
    fn events_ring_is_bounded_and_ordered() {
        let e = Events::default();
        for i in 0..EVENTS_KEPT + 10 {
            e.push("Test", format!("Test {i}"));
        }
        let all = e.since(0, usize::MAX);
        assert_eq!(all.len(), EVENTS_KEPT);
        assert_eq!(all[0].seq, 11);
        assert_eq!(e.since(all[5].seq, 2).len(), 2);
        assert_eq!(e.since((EVENTS_KEPT + 10) as u64, 10).len(), 0);
    }
}
