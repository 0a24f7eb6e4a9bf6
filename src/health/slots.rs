//! Backend slots: which loaded VCLs use which backend, and which probe runs for it.
//!
//! Why slots and not "a backend of a VCL": an operator who loads a new VCL that declares the same
//! backends must not see them start sick, nor double the probe traffic (seed 001, Varnish's
//! 2010 plan). A slot is identified by {name, IPv4+port, IPv6+port} (or the UDS path); every VCL
//! declaring an identical backend shares it: its board bits (health and admin override), its
//! status, its one probe. At most one probe runs per slot and the active VCL's probe spec wins
//! (else the oldest user's); a slot no VCL uses is retired, its probe stopped, its index reused.
//!
//! Pure bookkeeping on the control plane (under the control mutex): the caller turns the
//! [`ProbeChange`]s it returns into poller commands.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::admin::AdminHealth;

/// What makes two declared backends the same slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotKey {
    pub name: Box<str>,
    pub ipv4: Option<SocketAddr>,
    pub ipv6: Option<SocketAddr>,
    pub path: Option<PathBuf>,
}

/// A probe as the slots compare them: equal targets are the same probe stream.
pub use super::probe::Target as ProbeWant;

/// Health before the first poke (Varnish's `vbp_reset`: `.initial` good pokes).
pub fn starts_healthy(p: &ProbeWant) -> bool {
    p.initial >= p.threshold
}

#[derive(Debug)]
struct Slot {
    key: SlotKey,
    /// (VCL name, the probe that VCL declares for it), in load order.
    users: Vec<(String, Option<ProbeWant>)>,
    /// The probe that runs now.
    running: Option<ProbeWant>,
    admin: AdminHealth,
}

/// A probe to start, replace or stop after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeChange {
    /// Start (or replace) the slot's probe.
    Start {
        slot: usize,
        probe: ProbeWant,
    },
    Stop {
        slot: usize,
    },
}

/// The slot table (control plane only).
#[derive(Debug, Default)]
pub struct Slots {
    slots: Vec<Option<Slot>>,
    by_key: HashMap<SlotKey, usize>,
    /// Retired indices, reused oldest first (late reports of a stopped probe land on a slot
    /// nobody uses yet).
    free: std::collections::VecDeque<usize>,
}

/// Every slot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full;

impl Slots {
    pub fn new() -> Slots {
        Slots::default()
    }

    /// The slot for `key` used by VCL `vcl` (created if new; `fresh` is then true).
    pub fn attach(
        &mut self,
        vcl: &str,
        key: SlotKey,
        probe: Option<ProbeWant>,
    ) -> Result<(usize, bool), Full> {
        if let Some(&i) = self.by_key.get(&key) {
            if let Some(Some(s)) = self.slots.get_mut(i) {
                s.users.push((vcl.to_string(), probe));
                return Ok((i, false));
            }
        }
        let i = match self.free.pop_front() {
            Some(i) => i,
            None if self.slots.len() < super::MAX_SLOTS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(Full),
        };
        self.slots[i] = Some(Slot {
            key: key.clone(),
            users: vec![(vcl.to_string(), probe)],
            running: None,
            admin: AdminHealth::Auto,
        });
        self.by_key.insert(key, i);
        Ok((i, true))
    }

    /// VCL `vcl` no longer uses slot `i`. `Some(stop)` when the slot was retired (`stop`: its
    /// probe was running and must be stopped); `None` while other VCLs still use it.
    pub fn detach(&mut self, vcl: &str, i: usize) -> Option<bool> {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return None;
        };
        if let Some(pos) = s.users.iter().position(|(v, _)| v == vcl) {
            s.users.remove(pos);
        }
        if !s.users.is_empty() {
            return None;
        }
        let s = self.slots[i].take()?;
        self.by_key.remove(&s.key);
        self.free.push_back(i);
        Some(s.running.is_some())
    }

    /// Slot `i`'s name (the backend's name in VCL), if it exists.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.slots.get(i)?.as_ref().map(|s| &*s.key.name)
    }

    /// Slot `i`'s admin health.
    pub fn admin(&self, i: usize) -> AdminHealth {
        self.slots
            .get(i)
            .and_then(|s| s.as_ref())
            .map_or(AdminHealth::Auto, |s| s.admin)
    }

    /// Sets slot `i`'s admin health; returns whether it changed.
    pub fn set_admin(&mut self, i: usize, a: AdminHealth) -> bool {
        match self.slots.get_mut(i) {
            Some(Some(s)) if s.admin != a => {
                s.admin = a;
                true
            }
            _ => false,
        }
    }

    /// Does slot `i` run a probe?
    pub fn probed(&self, i: usize) -> bool {
        matches!(self.slots.get(i), Some(Some(s)) if s.running.is_some())
    }

    /// Brings every live slot's running probe in line with what `active` (the active VCL's
    /// name) wants: the active VCL's spec if it uses the slot, else its oldest user's. Returns
    /// the poller commands to send, in slot order.
    pub fn reconcile(&mut self, active: &str) -> Vec<ProbeChange> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            let want = s
                .users
                .iter()
                .find(|(v, _)| v == active)
                .or_else(|| s.users.first())
                .and_then(|(_, p)| p.clone());
            if want == s.running {
                continue;
            }
            out.push(match &want {
                Some(p) => ProbeChange::Start {
                    slot: i,
                    probe: p.clone(),
                },
                None => ProbeChange::Stop { slot: i },
            });
            s.running = want;
        }
        out
    }

    /// How many slots are live.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, port: u16) -> SlotKey {
        SlotKey {
            name: name.into(),
            ipv4: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            ipv6: None,
            path: None,
        }
    }

    fn probe(interval_ms: u64) -> ProbeWant {
        ProbeWant {
            name: "web".into(),
            dest: crate::backend::Dest::Tcp(SocketAddr::from(([127, 0, 0, 1], 80))),
            request: std::sync::Arc::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
            proxy_v1_at: None,
            expected: 200,
            timeout: std::time::Duration::from_secs(2),
            interval: std::time::Duration::from_millis(interval_ms),
            window: 8,
            threshold: 3,
            initial: 2,
            expect_close: true,
        }
    }

    #[test]
    fn identical_backends_share_a_slot_and_one_probe() {
        let mut s = Slots::new();
        let (a, fresh) = s.attach("boot", key("web", 80), Some(probe(5000))).unwrap();
        assert!(fresh);
        let (b, fresh) = s.attach("v2", key("web", 80), Some(probe(5000))).unwrap();
        assert_eq!((a, fresh), (b, false));
        let (c, _) = s.attach("v2", key("web", 81), None).unwrap();
        assert_ne!(a, c, "another port is another slot");
        let (d, _) = s.attach("v2", key("api", 80), None).unwrap();
        assert_ne!(a, d, "another name is another slot");
        let ch = s.reconcile("boot");
        assert_eq!(ch.len(), 1, "one probe for the shared slot: {ch:?}");
        assert!(s.reconcile("boot").is_empty(), "nothing changes twice");
        assert!(
            s.reconcile("v2").is_empty(),
            "same spec: the stream goes on"
        );
    }

    #[test]
    fn active_spec_wins_and_unused_slots_retire() {
        let mut s = Slots::new();
        let (a, _) = s.attach("boot", key("web", 80), Some(probe(5000))).unwrap();
        s.attach("v2", key("web", 80), Some(probe(1000))).unwrap();
        assert_eq!(
            s.reconcile("boot"),
            vec![ProbeChange::Start {
                slot: a,
                probe: probe(5000)
            }]
        );
        assert_eq!(
            s.reconcile("v2"),
            vec![ProbeChange::Start {
                slot: a,
                probe: probe(1000)
            }]
        );
        assert_eq!(s.detach("boot", a), None);
        assert!(s.set_admin(a, AdminHealth::Sick));
        assert_eq!(
            s.detach("v2", a),
            Some(true),
            "no VCL uses it; its probe stops"
        );
        assert_eq!(s.len(), 0);
        let (again, fresh) = s.attach("v3", key("db", 80), None).unwrap();
        assert_eq!((again, fresh), (a, true), "the index is reused");
        assert_eq!(s.admin(again), AdminHealth::Auto, "a new slot starts auto");
    }
}
