//! The control plane: loaded VCLs, the active one, backend slots and their admin health.
//!
//! Why one owner: `vcl.load`, `vcl.use`, `vcl.discard` and `backend.set_health` change several
//! things that must stay consistent (which VCLs use which slot, which probe runs for it, what
//! the board says), and they come from admin threads at any time. `Control` does all of it under
//! one mutex, on control-plane threads only. The data plane sees two things: the [`Active`] VCL
//! (an `Arc` swapped under a generation counter, which a shard checks with one relaxed load per
//! request and re-reads only when it moved) and the health board (atomic bitsets). A shard never
//! takes this mutex.
//!
//! Compiling a VCL (which reads files and resolves host names) happens before the mutex is
//! taken, so a slow `vcl.load` never holds up another admin command's bookkeeping.
//!
//! The runtime parameters (`param.set`) and the ban list (`ban`) are published the same way, as
//! [`Published`] snapshots: shards read the parameters through `server::shard::Tuning` and the
//! bans through `crate::bans`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::admin::{AdminHealth, BackendRow, ParamSetError, PollerStats, VclRow, VclText};
use crate::bans::{BanRow, Bans};
use crate::cache::ban::BanSpec;
use crate::health::poller::Lateness;
use crate::health::slots::{starts_healthy, ProbeChange, ProbeWant, SlotKey, Slots};
use crate::health::window::Window;
use crate::health::{epoch_now, Health, ProbeView, SlotStatus};
use crate::params::{ParamDef, Params};
use crate::stats::view::{Plane, PlaneBackend};
use crate::stats::Stats;
use crate::vcl::exec::BackendRef;
use crate::vcl::program::{BackendDef, Endpoint, ObjectKind, Program};
use crate::vcl::LoadedVcl;

/// The name of the VCL given at startup (`-f` or `-b`), as in varnishd.
pub const BOOT_VCL: &str = "boot";

/// The active VCL, as the shards read it.
pub struct Active {
    generation: AtomicU64,
    current: Mutex<Arc<LoadedVcl>>,
}

impl Active {
    fn new(vcl: Arc<LoadedVcl>) -> Active {
        Active {
            generation: AtomicU64::new(1),
            current: Mutex::new(vcl),
        }
    }

    /// Changes whenever the active VCL changes (a shard compares it on every request).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The active VCL now (a shard calls this only when the generation moved).
    pub fn current(&self) -> Arc<LoadedVcl> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, vcl: Arc<LoadedVcl>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = vcl;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// A value the control plane publishes to the shards (the parameters, the ban list): an `Arc`
/// swapped under a generation counter, as [`Active`] does for the VCL. A shard keeps the `Arc`
/// it last read with its generation, compares the generation (one atomic load) when it needs
/// the value, and takes the mutex only when the generation moved. The mutex guards a pointer
/// swap, never I/O.
pub struct Published<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published {
            generation: AtomicU64::new(1),
            current: Mutex::new(Arc::new(value)),
        }
    }

    /// Changes whenever the value changes.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the value by what `f` makes of it (or keeps it, on `Err`), under the lock, so
    /// two writers cannot lose each other's change.
    pub fn update<E>(&self, f: impl FnOnce(&T) -> Result<Option<T>, E>) -> Result<(), E> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(next) = f(&cur)? {
            *cur = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        let r: Result<(), std::convert::Infallible> = self.update(|_| Ok(Some(value)));
        let Ok(()) = r;
    }
}

/// Where probe changes go (the poller's command channel).
pub type ProbeSink = Box<dyn Fn(ProbeChange) + Send + Sync>;

struct Entry {
    name: String,
    vcl: Arc<LoadedVcl>,
}

struct Inner {
    vcls: Vec<Entry>,
    active: String,
    slots: Slots,
}

/// The control plane's state (see the module comment).
pub struct Control {
    inner: Mutex<Inner>,
    pub health: Arc<Health>,
    pub active: Arc<Active>,
    probes: ProbeSink,
    /// How late the poller starts probes (written by the poller thread).
    lateness: Arc<Lateness>,
    /// The runtime parameters in force (`param.set` publishes a new snapshot).
    pub params: Arc<Published<Params>>,
    pub bans: Arc<Bans>,
    /// The shards' counters, for rebasing a retired slot's `VBE` counters (`None` in tests).
    stats: Option<Arc<Stats>>,
}

impl Control {
    /// The control plane with the startup VCL loaded as `boot` and active; its probes start.
    pub fn boot(
        vcl: LoadedVcl,
        health: Arc<Health>,
        probes: ProbeSink,
        lateness: Arc<Lateness>,
        params: Params,
        bans: Arc<Bans>,
    ) -> Result<Control, String> {
        let mut inner = Inner {
            vcls: Vec::new(),
            active: BOOT_VCL.to_string(),
            slots: Slots::new(),
        };
        let vcl = install(&mut inner, &health, BOOT_VCL, vcl)?;
        let c = Control {
            inner: Mutex::new(inner),
            health,
            active: Arc::new(Active::new(vcl)),
            probes,
            lateness,
            params: Arc::new(Published::new(params)),
            bans,
            stats: None,
        };
        c.reconcile(&mut c.lock());
        Ok(c)
    }

    /// Gives the control plane the shards' counters (before it is shared).
    pub fn set_stats(&mut self, stats: Arc<Stats>) {
        self.stats = Some(stats);
    }

    /// What the counters take from the control plane: loaded VCLs, their backends (with their
    /// slots and probe bitmaps), the poller's lateness and the log writers' drops.
    pub fn plane(&self, uptime: u64) -> Plane {
        use crate::admin::Control as _;
        let inner = self.lock();
        let mut backends = Vec::new();
        for e in &inner.vcls {
            let vcl: Arc<str> = Arc::from(e.name.as_str());
            for be in e.vcl.backends.iter() {
                let happy = if inner.slots.probed(be.slot) {
                    self.health.status(be.slot).probe.map_or(0, |p| p.bits[7])
                } else {
                    0
                };
                backends.push(PlaneBackend {
                    vcl: vcl.clone(),
                    name: Arc::from(&*be.name),
                    slot: be.slot,
                    happy,
                    conn: u64::from(be.in_use.load(std::sync::atomic::Ordering::Relaxed)),
                });
            }
        }
        let n_vcl = inner.vcls.len() as u64;
        drop(inner);
        Plane {
            uptime,
            n_vcl,
            backends,
            poller: Some(self.poller_stats(false)),
            log_dropped: crate::logs::dropped(),
            access_log_dropped: crate::logs::access::dropped(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts and stops probes so that each slot runs what the active VCL wants.
    fn reconcile(&self, inner: &mut Inner) {
        let active = inner.active.clone();
        for ch in inner.slots.reconcile(&active) {
            match &ch {
                ProbeChange::Stop { slot } => {
                    let board = &self.health.board;
                    self.health.update_status(*slot, |s| {
                        s.probing = false;
                        s.probe = None;
                        board.set_probe(*slot, true);
                    });
                }
                ProbeChange::Start { slot, probe } => {
                    // A slot that was not probed starts from its probe's initial state at
                    // once, as Varnish's does at VCL load: `backend.list` and the board agree
                    // before the poller's first report (without this, `backend.list` showed
                    // "0/0 healthy" until then while the board said sick).
                    let board = &self.health.board;
                    self.health.update_status(*slot, |s| {
                        s.probing = true;
                        if s.probe.is_none() {
                            let w = Window::new(probe.window, probe.threshold, probe.initial);
                            board.set_probe(*slot, w.healthy());
                            s.probe = Some(ProbeView::of(&w));
                        }
                    });
                }
            }
            (self.probes)(ch);
        }
    }

    fn retire(&self, slot: usize, stop: bool) {
        if let Some(stats) = &self.stats {
            stats.vbe().rebase(slot);
        }
        let board = &self.health.board;
        self.health.update_status(slot, |s| {
            *s = SlotStatus::default();
            board.set_probe(slot, true);
            board.set_admin(slot, None);
        });
        if stop {
            (self.probes)(ProbeChange::Stop { slot });
        }
    }
}

/// Gives each backend of `vcl` its slot (sharing identical ones), initialises fresh slots'
/// board bits, and records the VCL as `name`.
fn install(
    inner: &mut Inner,
    health: &Health,
    name: &str,
    mut vcl: LoadedVcl,
) -> Result<Arc<LoadedVcl>, String> {
    let mut attached = Vec::with_capacity(vcl.backends.len());
    for (i, def) in vcl.program.backends.iter().enumerate() {
        let probe = probe_want(&vcl.program, def);
        let start_healthy = probe.as_ref().is_none_or(starts_healthy);
        match inner.slots.attach(name, slot_key(def), probe) {
            Ok((slot, fresh)) => {
                if fresh {
                    health.board.set_admin(slot, None);
                    health.board.set_probe(slot, start_healthy);
                    health.update_status(slot, |s| *s = SlotStatus::default());
                    health.board.set_changed(slot, epoch_now());
                }
                attached.push((i, slot));
            }
            Err(_) => {
                for &(_, slot) in &attached {
                    inner.slots.detach(name, slot);
                }
                return Err(format!(
                    "too many backends: at most {} can be loaded at once",
                    crate::health::MAX_SLOTS
                ));
            }
        }
    }
    for (i, slot) in attached {
        if let Some(b) = vcl.backends.get_mut(i) {
            b.slot = slot;
        }
    }
    let vcl = Arc::new(vcl);
    inner.vcls.push(Entry {
        name: name.to_string(),
        vcl: vcl.clone(),
    });
    Ok(vcl)
}

fn slot_key(def: &BackendDef) -> SlotKey {
    let (ipv4, ipv6, path) = match &def.endpoint {
        Endpoint::None => (None, None, None),
        Endpoint::Tcp { ipv4, ipv6 } => (*ipv4, *ipv6, None),
        Endpoint::Uds(p) => (None, None, Some(p.clone())),
    };
    SlotKey {
        name: def.name.clone(),
        ipv4,
        ipv6,
        path,
    }
}

/// The probe that runs for backend `def`, if it has one (a `none` backend has no address and
/// is never probed). A `.via` backend is probed through its via backend.
fn probe_want(program: &Program, def: &BackendDef) -> Option<ProbeWant> {
    let spec = program.probes.get(def.probe?)?;
    let via = def.via.and_then(|v| program.backends.get(v));
    ProbeWant::for_backend(def, via, spec, false)
}

/// Varnish's `backend.list` type word for a director.
fn kind_word(k: Option<ObjectKind>) -> &'static str {
    match k {
        Some(ObjectKind::RoundRobin) => "round-robin",
        Some(ObjectKind::Fallback) => "fallback",
        Some(ObjectKind::Random) => "random",
        Some(ObjectKind::Hash) => "hash",
        Some(ObjectKind::Shard) => "shard",
        Some(ObjectKind::LeastConnections) => "least-connections",
        _ => "director",
    }
}

impl crate::admin::Control for Control {
    fn active_vcl(&self) -> String {
        self.lock().active.clone()
    }

    fn backends(&self) -> Vec<BackendRow> {
        let inner = self.lock();
        let board = &self.health.board;
        let mut rows = Vec::new();
        for e in &inner.vcls {
            let vcl = &e.vcl;
            for (be, def) in vcl.backends.iter().zip(&vcl.program.backends) {
                let status = self.health.status(be.slot);
                let probed = inner.slots.probed(be.slot);
                let (ipv4, ipv6) = match &def.endpoint {
                    Endpoint::Tcp { ipv4, ipv6 } => (*ipv4, *ipv6),
                    _ => (None, None),
                };
                rows.push(BackendRow {
                    vcl: e.name.clone(),
                    name: be.name.to_string(),
                    kind: "backend",
                    admin: inner.slots.admin(be.slot),
                    probe: if probed { status.probe } else { None },
                    healthy: board.healthy(be.slot),
                    last_change: board.changed(be.slot),
                    ipv4,
                    ipv6,
                    members: Vec::new(),
                });
            }
            for (obj, d) in vcl.directors.iter().enumerate() {
                let Some(decl) = vcl.program.objects.get(obj) else {
                    continue;
                };
                let members: Vec<(String, bool)> = d
                    .members
                    .iter()
                    .map(|m| {
                        let name = match m {
                            BackendRef::Backend(id) => {
                                crate::vcl::loaded::backend_name(vcl, *id).to_string()
                            }
                            BackendRef::Director(o) => vcl
                                .program
                                .objects
                                .get(*o)
                                .map_or("?".into(), |o| o.name.to_string()),
                        };
                        let up = vcl.healthy_with(*m, &|slot| board.healthy(slot));
                        (name, up)
                    })
                    .collect();
                let last_change = d
                    .members
                    .iter()
                    .filter_map(|m| match m {
                        BackendRef::Backend(id) => vcl.backends.get(*id),
                        BackendRef::Director(_) => None,
                    })
                    .map(|b| board.changed(b.slot))
                    .fold(0.0, f64::max);
                rows.push(BackendRow {
                    vcl: e.name.clone(),
                    name: decl.name.to_string(),
                    kind: kind_word(d.kind),
                    admin: AdminHealth::Auto,
                    probe: None,
                    healthy: members.iter().any(|m| m.1),
                    last_change,
                    ipv4: None,
                    ipv6: None,
                    members,
                });
            }
        }
        rows
    }

    fn set_health(&self, targets: &[(String, String)], state: AdminHealth) {
        let mut inner = self.lock();
        let mut slots = Vec::new();
        for (vcl, name) in targets {
            let Some(e) = inner.vcls.iter().find(|e| &e.name == vcl) else {
                continue;
            };
            if let Some(b) = e.vcl.backends.iter().find(|b| &*b.name == name) {
                slots.push(b.slot);
            }
        }
        for slot in slots {
            let before = self.health.board.healthy(slot);
            if inner.slots.set_admin(slot, state) {
                self.health.board.set_admin(
                    slot,
                    match state {
                        AdminHealth::Auto => None,
                        AdminHealth::Healthy => Some(true),
                        AdminHealth::Sick => Some(false),
                    },
                );
                if self.health.board.healthy(slot) != before {
                    self.health.board.set_changed(slot, epoch_now());
                }
            }
        }
    }

    fn vcl_load(&self, name: &str, text: VclText) -> Result<String, String> {
        if self.lock().vcls.iter().any(|e| e.name == name) {
            return Err(format!("Already a VCL named {name}"));
        }
        let compiled = match &text {
            VclText::File(p) => LoadedVcl::from_file(p),
            VclText::Inline(t) => LoadedVcl::from_text("<vcl.inline>", t),
        };
        let (vcl, warnings) = compiled.map_err(|e| e.0)?;
        let mut inner = self.lock();
        if inner.vcls.iter().any(|e| e.name == name) {
            return Err(format!("Already a VCL named {name}"));
        }
        install(&mut inner, &self.health, name, vcl)?;
        self.reconcile(&mut inner);
        drop(inner);
        self.health
            .events
            .push("VCL_Event", format!("VCL_Event load {name}"));
        Ok(warnings)
    }

    fn vcl_use(&self, name: &str) -> Result<(), String> {
        let mut inner = self.lock();
        let Some(vcl) = inner
            .vcls
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.vcl.clone())
        else {
            return Err(format!("No VCL named {name} known."));
        };
        if inner.active != name {
            inner.active = name.to_string();
            self.active.set(vcl);
            self.reconcile(&mut inner);
            drop(inner);
            self.health
                .events
                .push("VCL_Event", format!("VCL_Event use {name}"));
        }
        Ok(())
    }

    fn vcl_discard(&self, name: &str) -> Result<(), String> {
        let mut inner = self.lock();
        if inner.active == name {
            return Err(format!("Cannot discard active VCL program {name}"));
        }
        let Some(pos) = inner.vcls.iter().position(|e| e.name == name) else {
            return Err(format!("No VCL named {name} known."));
        };
        let e = inner.vcls.remove(pos);
        for b in &e.vcl.backends {
            if let Some(stop) = inner.slots.detach(name, b.slot) {
                self.retire(b.slot, stop);
            }
        }
        self.reconcile(&mut inner);
        drop(inner);
        self.health
            .events
            .push("VCL_Event", format!("VCL_Event discard {name}"));
        Ok(())
    }

    fn vcls(&self) -> Vec<VclRow> {
        let inner = self.lock();
        inner
            .vcls
            .iter()
            .map(|e| VclRow {
                name: e.name.clone(),
                active: e.name == inner.active,
                state: "auto",
                temperature: "warm",
                busy: 0,
            })
            .collect()
    }

    fn events(&self, after: u64, max: usize) -> Vec<(u64, &'static str, String)> {
        self.health
            .events
            .since(after, max)
            .into_iter()
            .map(|e| (e.seq, e.tag, e.line))
            .collect()
    }

    fn poller_stats(&self, reset: bool) -> PollerStats {
        let l = &self.lateness;
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let s = PollerStats {
            probes: l.count(),
            p50_us: us(l.p50()),
            p99_us: us(l.p99()),
            max_us: us(l.max()),
        };
        if reset {
            l.reset();
        }
        s
    }

    fn params(&self) -> Params {
        (*self.params.current()).clone()
    }

    fn param_set(&self, name: &str, value: &str) -> Result<(), ParamSetError> {
        let def = ParamDef::find(name).ok_or(ParamSetError::Unknown)?;
        self.params.update(|cur| {
            let mut next = cur.clone();
            next.set(name, value).map_err(ParamSetError::Invalid)?;
            if next.get(name) == cur.get(name) {
                // Setting the value in force is always fine (scripts set every parameter).
                return Ok(None);
            }
            if !def.live() {
                return Err(ParamSetError::NotLive);
            }
            Ok(Some(next))
        })
    }

    fn ban(&self, spec: BanSpec) {
        self.bans.add(spec);
    }

    fn ban_list(&self) -> Vec<BanRow> {
        self.bans.rows()
    }

    fn vcl_source(&self, name: &str) -> Option<Vec<(String, String)>> {
        let inner = self.lock();
        inner
            .vcls
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.vcl.sources.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Control as _;

    /// The control plane over `text`, with no poller behind it: probe changes are recorded.
    fn boot(text: &str) -> (Control, Arc<Mutex<Vec<String>>>) {
        let (vcl, _warnings) = LoadedVcl::from_text("<test>", text).expect("the VCL compiles");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: ProbeSink = Box::new(move |ch| {
            let what = match ch {
                ProbeChange::Start { slot, .. } => format!("start {slot}"),
                ProbeChange::Stop { slot } => format!("stop {slot}"),
            };
            s.lock().unwrap().push(what);
        });
        let stats = Arc::new(Stats::new(1));
        let c = Control::boot(
            vcl,
            Arc::new(Health::new()),
            sink,
            Arc::new(Lateness::new()),
            Params::default(),
            Arc::new(Bans::new(1, stats)),
        )
        .expect("boot");
        (c, seen)
    }

    // Goal: a probed backend shows its probe's initial state from the moment its VCL is loaded,
    // in `backend.list` and on the board alike, before the poller has reported anything
    // (Varnish sets it at VCL load). Before, `backend.list` showed "0/0 healthy" for a probe
    // starting sick until the poller's first report, and a client could read it as healthy.
    #[test]
    fn a_probe_starts_from_its_initial_state_before_any_report() {
        let (c, seen) = boot(
            "vcl 4.1;\n\
             backend sick { .host = \"127.0.0.1\"; .port = \"9\";\n\
               .probe = { .url = \"/\"; .window = 3; .threshold = 2; .initial = 0; } }\n\
             backend fine { .host = \"127.0.0.1\"; .port = \"10\";\n\
               .probe = { .url = \"/\"; .window = 8; .threshold = 3; .initial = 3; } }\n\
             backend plain { .host = \"127.0.0.1\"; .port = \"11\"; }\n\
             sub vcl_recv {\n\
               if (req.url == \"/s\") { set req.backend_hint = sick; }\n\
               elsif (req.url == \"/f\") { set req.backend_hint = fine; }\n\
               else { set req.backend_hint = plain; }\n\
             }\n",
        );
        assert_eq!(seen.lock().unwrap().len(), 2, "two probes started");
        let rows = c.backends();
        let row = |name: &str| rows.iter().find(|r| r.name == name).expect(name).clone();
        let sick = row("sick");
        assert!(!sick.healthy, "the board says sick at once");
        let p = sick.probe.expect("a probe view before any report");
        assert_eq!((p.good, p.threshold, p.window), (0, 2, 3));
        let fine = row("fine");
        assert!(fine.healthy);
        let p = fine.probe.expect("a probe view");
        assert_eq!((p.good, p.threshold, p.window), (3, 3, 8));
        let plain = row("plain");
        assert!(plain.healthy && plain.probe.is_none());
    }
}
