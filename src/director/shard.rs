//! `directors.shard()`: consistent hashing on a ring, as Varnish's shard director builds and
//! walks it (`vmod_directors_shard_cfg.c`, `vmod_directors_shard_dir.c`).
//!
//! Why consistent: a key keeps its backend while that backend is there and healthy, and when
//! one of N backends goes away only its own keys (about 1/N) move, each to the next backend on
//! the ring; every other key stays where its cache is warm.
//!
//! The ring: each backend gets `replicas × weight` points (67 by default), point `j` of a
//! backend being [`super::hash32`] of its ident (default: its name) followed by `j` in decimal;
//! the points are sorted. A key (a URL's `hash32`, the request digest, or an integer) maps to
//! the first point at or above it (Varnish's binary search, including its quirk that a key above
//! the highest point maps to the highest point rather than wrapping), and the walk goes on along
//! the ring, wrapping, visiting each backend once. `alt=N` skips N backends first, `healthy`
//! decides whether sick ones count (`CHOSEN`: the pick must be healthy, `alt` skips regardless;
//! `ALL`: `alt` skips healthy ones only; `IGNORE`: health is ignored). `rampup` (a backend that
//! became healthy less than its rampup ago passes requests to the next one with falling
//! probability) and `warmup` (a share of requests goes to the next backend to keep its cache
//! warm) are Varnish's, with time and draws given by the caller.
//!
//! Configuration is a list of changes (`add_backend`, `remove_backend`, `clear`) applied by
//! `reconfigure()` (and implicitly when `vcl_init` ends), in Varnish's order and with its
//! compaction of removed slots, so backend indexes (and `backend.list` order) are Varnish's.

use super::{hash32, Bits};

/// The most ring points one director may have (8 bytes each): a weight that would need more
/// makes `reconfigure()` fail instead of exhausting memory (Varnish would try to allocate it).
pub const MAX_POINTS: usize = 1 << 24;

/// Varnish's default `replicas`.
pub const DEFAULT_REPLICAS: u32 = 67;

/// `healthy=` of `shard.backend()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealthMode {
    /// The backend returned must be healthy; `alt` skips backends whatever their health.
    #[default]
    Chosen,
    /// Health plays no part.
    Ignore,
    /// `alt` skips healthy backends only, and the one returned is healthy.
    All,
}

impl HealthMode {
    /// `CHOSEN`, `IGNORE`, `ALL`.
    pub fn from_enum(s: &str) -> Option<HealthMode> {
        match s {
            "CHOSEN" => Some(HealthMode::Chosen),
            "IGNORE" => Some(HealthMode::Ignore),
            "ALL" => Some(HealthMode::All),
            _ => None,
        }
    }
}

/// A `shard.backend()` lookup once its arguments are checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub key: u32,
    pub alt: u32,
    /// Probability in [0, 1]; -1: the director's `set_warmup()` value.
    pub warmup: f64,
    pub rampup: bool,
    pub healthy: HealthMode,
}

impl Params {
    /// Varnish's defaults for `key`: alt 0, warmup -1, rampup on, healthy CHOSEN.
    pub fn for_key(key: u32) -> Params {
        Params {
            key,
            alt: 0,
            warmup: -1.0,
            rampup: true,
            healthy: HealthMode::Chosen,
        }
    }
}

/// The key of `by=BLOB`: the blob's first four bytes big-endian, a shorter blob right-aligned
/// (Varnish's `shard_blob_key`); an empty blob is key 0.
pub fn blob_key(b: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    let n = b.len().min(4);
    k[4 - n..].copy_from_slice(&b[..n]);
    u32::from_be_bytes(k)
}

/// What the rampup and warmup decisions need: the time, when a member's health last changed,
/// and random draws in [0, 1).
pub struct Dice<'a, M> {
    pub now: f64,
    pub changed: &'a dyn Fn(M) -> f64,
    pub draw: &'a mut dyn FnMut() -> f64,
}

/// A backend of the director.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardBackend<M> {
    pub member: M,
    /// The member's VCL name (hashed when there is no ident).
    pub name: Box<str>,
    pub ident: Option<Box<str>>,
    /// Seconds; `None`: the director's `set_rampup()` duration.
    pub rampup: Option<f64>,
    pub replicas: u32,
}

impl<M> ShardBackend<M> {
    /// The string its ring points are made of: the ident, else the name.
    pub fn ident(&self) -> &str {
        self.ident.as_deref().unwrap_or(&self.name)
    }
}

/// A configuration change waiting for `reconfigure()`.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<M> {
    Clear,
    Add {
        member: M,
        name: Box<str>,
        ident: Option<Box<str>>,
        rampup: Option<f64>,
        weight: f64,
    },
    /// By ident when one is given, else by member.
    Remove {
        member: Option<M>,
        ident: Option<Box<str>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    point: u32,
    host: u32,
}

/// A shard director: backends, ring, changes not applied yet, warmup and rampup.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard<M> {
    backends: Vec<ShardBackend<M>>,
    ring: Vec<Point>,
    pending: Vec<Change<M>>,
    /// `set_warmup()`: probability in [0, 1).
    pub warmup: f64,
    /// `set_rampup()`: seconds.
    pub rampup: f64,
}

impl<M> Default for Shard<M> {
    fn default() -> Self {
        Shard {
            backends: Vec::new(),
            ring: Vec::new(),
            pending: Vec::new(),
            warmup: 0.0,
            rampup: 0.0,
        }
    }
}

impl<M: Copy + PartialEq> Shard<M> {
    pub fn new() -> Shard<M> {
        Shard::default()
    }

    /// The configured backends, in Varnish's host order.
    pub fn backends(&self) -> &[ShardBackend<M>] {
        &self.backends
    }

    /// Ring points.
    pub fn points(&self) -> usize {
        self.ring.len()
    }

    /// Changes wait for `reconfigure()`.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Could rampup matter (some rampup above zero)? When not, no pick asks when a member's
    /// health changed.
    pub fn uses_rampup(&self) -> bool {
        self.rampup > 0.0
            || self
                .backends
                .iter()
                .any(|b| b.rampup.is_some_and(|r| r > 0.0))
    }

    /// `add_backend(be, ident, rampup, weight)`: recorded for the next `reconfigure()`. An
    /// empty ident counts as none; a weight below 1 is ignored (weight 1), as in Varnish.
    pub fn add_backend(
        &mut self,
        member: M,
        name: &str,
        ident: Option<&str>,
        rampup: Option<f64>,
        weight: Option<f64>,
    ) {
        let weight = weight.filter(|w| *w >= 1.0).unwrap_or(1.0);
        self.pending.push(Change::Add {
            member,
            name: name.into(),
            ident: ident.filter(|i| !i.is_empty()).map(Into::into),
            rampup,
            weight,
        });
    }

    /// `remove_backend(backend, ident)`: recorded for the next `reconfigure()`. Needs one of
    /// the two (Varnish's message otherwise).
    pub fn remove_backend(&mut self, member: Option<M>, ident: Option<&str>) -> Result<(), String> {
        let ident = ident.filter(|i| !i.is_empty());
        if member.is_none() && ident.is_none() {
            return Err(".remove_backend(): either backend or ident are required".into());
        }
        self.pending.push(Change::Remove {
            member,
            ident: ident.map(Into::into),
        });
        Ok(())
    }

    /// `clear()`: recorded for the next `reconfigure()`.
    pub fn clear(&mut self) {
        self.pending.push(Change::Clear);
    }

    /// `reconfigure(replicas)`: applies the recorded changes and rebuilds the ring. Nothing
    /// recorded: nothing to do (`Ok`). `Err` (Varnish returns false and logs it): replicas not
    /// positive (nothing applied), no backend left, or too many ring points (the ring is then
    /// empty and every pick gives `None`).
    pub fn reconfigure(&mut self, replicas: i64) -> Result<(), String> {
        if replicas <= 0 {
            return Err(format!(
                ".reconfigure() invalid replicas argument {replicas}"
            ));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let replicas = u32::try_from(replicas).unwrap_or(u32::MAX);
        let changes = std::mem::take(&mut self.pending);
        self.apply(&changes, replicas);
        self.ring.clear();
        if self.backends.is_empty() {
            return Err(".reconfigure() no backends".into());
        }
        self.build_ring()
    }

    /// Varnish's `shardcfg_apply_change`: only what follows the last `clear` counts; a removed
    /// backend leaves a hole that later additions fill, and the remaining holes are filled from
    /// the end (`shardcfg_backend_finalize`).
    fn apply(&mut self, changes: &[Change<M>], replicas: u32) {
        let start = match changes.iter().rposition(|c| matches!(c, Change::Clear)) {
            Some(i) => {
                self.backends.clear();
                i + 1
            }
            None => 0,
        };
        let mut slots: Vec<Option<ShardBackend<M>>> = std::mem::take(&mut self.backends)
            .into_iter()
            .map(Some)
            .collect();
        let mut n = slots.len();
        let mut holes = 0usize;
        let mut hole_i = usize::MAX;
        for c in &changes[start..] {
            match c {
                Change::Clear => {}
                Change::Add {
                    member,
                    name,
                    ident,
                    rampup,
                    weight,
                } => {
                    let b = ShardBackend {
                        member: *member,
                        name: name.clone(),
                        ident: ident.clone(),
                        rampup: *rampup,
                        replicas: scaled_replicas(replicas, *weight),
                    };
                    if slots.iter().flatten().any(|x| same_backend(&b, x)) {
                        // Varnish: "backend ... already exists - skipping".
                        continue;
                    }
                    if holes == 0 {
                        slots.push(Some(b));
                    } else {
                        let from = hole_i.min(slots.len());
                        let i = slots[from..]
                            .iter()
                            .position(Option::is_none)
                            .map_or(slots.len(), |p| from + p);
                        if i == slots.len() {
                            slots.push(Some(b));
                        } else {
                            slots[i] = Some(b);
                        }
                        hole_i = i + 1;
                        holes -= 1;
                    }
                    n += 1;
                }
                Change::Remove { member, ident } => {
                    let max = slots.len();
                    for i in 0..max {
                        let Some(Some(b)) = slots.get(i) else {
                            continue;
                        };
                        if !remove_matches(*member, ident.as_deref(), b) {
                            continue;
                        }
                        slots[i] = None;
                        n -= 1;
                        if i < n + holes {
                            holes += 1;
                            hole_i = hole_i.min(i);
                        } else {
                            slots.truncate(n + holes);
                        }
                    }
                }
            }
        }
        // Fill the holes left from the end.
        while holes > 0 {
            while holes > 0 && matches!(slots.last(), Some(None)) {
                slots.pop();
                holes -= 1;
            }
            if holes == 0 {
                break;
            }
            let from = if hole_i == usize::MAX { 0 } else { hole_i };
            let Some(h) = slots.iter().skip(from).position(Option::is_none) else {
                break;
            };
            let h = from + h;
            let last = slots.pop().flatten();
            slots[h] = last;
            holes -= 1;
            hole_i = h + 1;
        }
        self.backends = slots.into_iter().flatten().collect();
    }

    /// `shardcfg_hashcircle`: `replicas` points per backend (at most `(2^32 - 2) / n`), sorted.
    fn build_ring(&mut self) -> Result<(), String> {
        let n = self.backends.len();
        let rmax = ((u32::MAX - 1) / n as u32) as usize;
        let total: usize = self
            .backends
            .iter()
            .map(|b| (b.replicas as usize).min(rmax))
            .sum();
        if total > MAX_POINTS {
            return Err(format!(
                ".reconfigure() needs {total} ring points, more than ringcache's {MAX_POINTS}"
            ));
        }
        let mut ring = Vec::with_capacity(total);
        let mut num = String::with_capacity(12);
        for (h, b) in self.backends.iter().enumerate() {
            let ident = b.ident().as_bytes();
            for j in 0..(b.replicas as usize).min(rmax) {
                num.clear();
                use std::fmt::Write;
                let _ = write!(num, "{j}");
                ring.push(Point {
                    point: hash32(&[ident, num.as_bytes()]),
                    host: h as u32,
                });
            }
        }
        ring.sort_by_key(|p| p.point);
        self.ring = ring;
        Ok(())
    }

    /// Varnish's `shard_lookup`: the index of the first point at or above `key` (a key above
    /// every point gives the last one).
    fn lookup(&self, key: u32) -> usize {
        let pts = &self.ring;
        let n = pts.len();
        let (mut low, mut high) = (0usize, n);
        loop {
            let i = (high + low) / 2;
            if pts[i].point == key || i == n - 1 {
                return i;
            }
            if pts[i].point < key && pts[i + 1].point >= key {
                return i + 1;
            }
            if pts[i].point > key {
                if i == 0 {
                    return 0;
                }
                high = i;
            } else {
                low = i;
            }
        }
    }

    /// The member for `p` (Varnish's `sharddir_pick_be`). `None`: no backend, or none that
    /// `p.healthy` accepts.
    pub fn pick(
        &self,
        p: &Params,
        healthy: impl Fn(M) -> bool,
        dice: &mut Dice<'_, M>,
    ) -> Option<M> {
        let n = self.backends.len();
        if n == 0 || self.ring.is_empty() {
            return None;
        }
        let alt = (p.alt as usize).min(n - 1);
        let mut w = Walk {
            shard: self,
            healthy: &healthy,
            idx: self.lookup(p.key),
            seen: Bits::new(n),
            count: 0,
            previous: None,
            last: None,
        };
        let member = |h: usize| self.backends[h].member;
        if alt > 0
            && w.next(alt as i64 - 1, p.healthy == HealthMode::All)
                .is_none()
        {
            return w.previous.map(member);
        }
        if w.next(0, p.healthy != HealthMode::Ignore).is_none() {
            return w.previous.map(member);
        }
        let chosen = w.last?;
        let warmup = if p.warmup == -1.0 {
            self.warmup
        } else {
            p.warmup
        };
        if alt > 0
            || p.healthy == HealthMode::Ignore
            || (!p.rampup && warmup == 0.0)
            || w.next(0, true).is_none()
        {
            return Some(member(chosen));
        }
        // `chosen` is now `previous`, the next healthy backend is `last`.
        let other = w.last?;
        let chosen_r = self.rampup_of(chosen);
        let other_r = self.rampup_of(other);
        let since = dice.now - (dice.changed)(member(chosen));
        if since < chosen_r {
            // The chosen backend is ramping up: it keeps the request unless the dice say
            // otherwise (probability since / rampup), or the other one is ramping up too.
            if !p.rampup
                || dice.now - (dice.changed)(member(other)) < other_r
                || (dice.draw)() * chosen_r < since
            {
                return Some(member(chosen));
            }
        } else if warmup == 0.0 || (dice.draw)() > warmup {
            return Some(member(chosen));
        }
        Some(member(other))
    }

    fn rampup_of(&self, host: usize) -> f64 {
        self.backends
            .get(host)
            .and_then(|b| b.rampup)
            .filter(|r| !r.is_nan())
            .unwrap_or(self.rampup)
    }
}

/// `shardcfg_backend_cmp` == 0: the same member when neither has an ident, else the same
/// ident (a name standing for a missing ident).
fn same_backend<M: PartialEq>(a: &ShardBackend<M>, b: &ShardBackend<M>) -> bool {
    if a.ident.is_none() && b.ident.is_none() {
        return a.member == b.member;
    }
    a.ident() == b.ident()
}

/// `shardcfg_backend_del_cmp` == 0: by ident when the removal names one, else by member.
fn remove_matches<M: PartialEq>(
    member: Option<M>,
    ident: Option<&str>,
    b: &ShardBackend<M>,
) -> bool {
    match (ident, member) {
        (Some(i), _) => i == b.ident(),
        (None, Some(m)) => m == b.member,
        (None, None) => false,
    }
}

/// `replicas × weight`, saturating at `u32::MAX` (weights are at least 1).
fn scaled_replicas(replicas: u32, weight: f64) -> u32 {
    let r = f64::from(replicas) * weight;
    if r >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        r as u32
    }
}

/// The walk along the ring (`struct shard_state`, `shard_next`): which hosts were seen, the
/// last one picked and the one before.
struct Walk<'a, M, H> {
    shard: &'a Shard<M>,
    healthy: &'a H,
    idx: usize,
    seen: Bits,
    count: usize,
    previous: Option<usize>,
    last: Option<usize>,
}

impl<M: Copy, H: Fn(M) -> bool> Walk<'_, M, H> {
    /// Varnish's `shard_next`: from the current point, skips `skip` backends (healthy ones,
    /// and sick ones too unless `healthy_only`) and picks the next; each backend is visited
    /// once. Healthy backends passed over become `previous`; the pick becomes `last` (the
    /// former `last` moving to `previous`).
    fn next(&mut self, mut skip: i64, healthy_only: bool) -> Option<usize> {
        let n = self.shard.backends.len();
        let points = self.shard.ring.len();
        let mut chosen = None;
        while self.count < n && skip >= 0 {
            let c = self.shard.ring[self.idx].host as usize;
            if !self.seen.get(c) {
                self.seen.set(c);
                self.count += 1;
                let m = self.shard.backends[c].member;
                let mut to_last = false;
                let mut to_previous = false;
                if (self.healthy)(m) {
                    if skip == 0 {
                        chosen = Some(c);
                        to_last = true;
                    } else {
                        to_previous = true;
                    }
                    skip -= 1;
                } else if !healthy_only {
                    if skip == 0 {
                        chosen = Some(c);
                        to_last = true;
                    }
                    skip -= 1;
                }
                if to_last {
                    if self.last.is_some() {
                        self.previous = self.last;
                    }
                    self.last = Some(c);
                } else if to_previous {
                    self.previous = Some(c);
                }
                if chosen.is_some() {
                    break;
                }
            }
            self.idx += 1;
            if self.idx == points {
                self.idx = 0;
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dice() -> (impl Fn(usize) -> f64, impl FnMut() -> f64) {
        (|_| 0.0, || 0.5)
    }

    fn pick(s: &Shard<usize>, p: &Params, healthy: impl Fn(usize) -> bool) -> Option<usize> {
        let (changed, mut draw) = no_dice();
        let mut d = Dice {
            now: 1e9,
            changed: &changed,
            draw: &mut draw,
        };
        s.pick(p, healthy, &mut d)
    }

    /// `n` backends named b0..b{n-1}, reconfigured with `replicas`.
    fn ring(n: usize, replicas: i64) -> Shard<usize> {
        let mut s = Shard::new();
        for i in 0..n {
            s.add_backend(i, &format!("b{i}"), None, None, None);
        }
        s.reconfigure(replicas).expect("reconfigures");
        s
    }

    /// Varnish's directors_c00006.vtc: s1, s2 (weight 2), s3 (weight 0.3 ignored, removed,
    /// re-added with weight 3), 25 replicas: its debug log lists the ring and three lookups.
    #[test]
    fn ring_of_varnish_c00006() {
        let mut s = Shard::new();
        s.add_backend(1, "s1", None, None, None);
        s.add_backend(2, "s2", None, None, Some(2.0));
        s.add_backend(3, "s3", None, None, Some(0.3));
        s.remove_backend(Some(3), None).expect("ok");
        s.add_backend(3, "s3", None, None, Some(3.0));
        s.reconfigure(25).expect("ok");
        assert_eq!(s.points(), 150);
        let hosts: Vec<usize> = s.backends().iter().map(|b| b.member).collect();
        assert_eq!(hosts, [1, 2, 3]);
        for (i, point, host) in [
            (0, 0x0238_d0ef, 2),
            (1, 0x0321_c598, 2),
            (2, 0x03b6_b56a, 0),
            (8, 0x1013_6c05, 0),
            (10, 0x1112_f910, 1),
            (69, 0x7f87_4929, 2),
            (79, 0x8bc8_bc11, 0),
            (149, 0xfc28_e8d2, 2),
        ] {
            assert_eq!(s.ring[i], Point { point, host }, "point {i}");
        }
        for (key, idx, member) in [
            (0x564c_a84f, 45, 1),
            (0x19cf_e9f3, 16, 2),
            (0x46a5_8f28, 41, 3),
        ] {
            assert_eq!(s.lookup(key), idx);
            assert_eq!(pick_members(&s, key), Some(member));
        }
    }

    fn pick_members(s: &Shard<usize>, key: u32) -> Option<usize> {
        pick(s, &Params::for_key(key), |_| true)
    }

    /// Varnish's directors_c00003.vtc: s1..s3, 25 replicas, by=KEY.
    #[test]
    fn keys_of_varnish_c00003() {
        let mut s = Shard::new();
        for (m, name) in [(1, "s1"), (2, "s2"), (3, "s3")] {
            s.add_backend(m, name, None, None, None);
        }
        s.reconfigure(25).expect("ok");
        assert_eq!(pick_members(&s, 1), Some(1));
        assert_eq!(pick_members(&s, 2_147_483_647), Some(2));
        assert_eq!(pick_members(&s, 4_294_967_295), Some(3));
    }

    #[test]
    fn lookup_edges() {
        let s = ring(3, 5);
        let first = s.ring[0].point;
        let last = s.ring[s.ring.len() - 1].point;
        assert_eq!(s.lookup(0), 0);
        assert_eq!(s.lookup(first), 0);
        assert_eq!(s.lookup(last), s.ring.len() - 1);
        // Varnish's quirk: above the last point is the last point, not the first.
        if last < u32::MAX {
            assert_eq!(s.lookup(u32::MAX), s.ring.len() - 1);
        }
        for i in 1..s.ring.len() {
            let k = s.ring[i - 1].point + 1;
            if k <= s.ring[i].point {
                assert_eq!(s.ring[s.lookup(k)].point, s.ring[i].point);
            }
        }
    }

    /// Removing one of N backends moves exactly the keys it had (about 1/N), and marking it
    /// sick does the same without a rebuild.
    #[test]
    fn ring_is_stable_when_one_backend_goes() {
        let n = 10;
        let full = ring(n, 67);
        let mut fewer = Shard::new();
        for i in (0..n).filter(|i| *i != 4) {
            fewer.add_backend(i, &format!("b{i}"), None, None, None);
        }
        fewer.reconfigure(67).expect("ok");
        let keys: Vec<u32> = (0..20_000u32)
            .map(|i| hash32(&[format!("/k{i}").as_bytes()]))
            .collect();
        let mut moved = 0;
        let mut had = 0;
        for k in &keys {
            let a = pick_members(&full, *k);
            let b = pick_members(&fewer, *k);
            let sick = pick(&full, &Params::for_key(*k), |m| m != 4);
            assert_eq!(b, sick, "a sick backend is skipped like a removed one");
            if a == Some(4) {
                had += 1;
                assert_ne!(b, Some(4));
            }
            if a != b {
                moved += 1;
                assert_eq!(a, Some(4), "only the removed backend's keys move");
            }
        }
        assert_eq!(moved, had);
        let share = moved as f64 / keys.len() as f64;
        assert!((0.05..0.15).contains(&share), "{share}");
    }

    #[test]
    fn keys_spread_over_backends() {
        let s = ring(4, 67);
        let mut per = [0usize; 4];
        for i in 0..8000u32 {
            let k = hash32(&[format!("/u{i}").as_bytes()]);
            per[pick_members(&s, k).unwrap_or(9)] += 1;
        }
        for c in per {
            assert!((1200..2800).contains(&c), "{per:?}");
        }
    }

    /// The walk order for a key is the ring order of hosts; alt and healthy follow Varnish.
    #[test]
    fn alt_and_health_modes() {
        let s = ring(4, 67);
        let key = 0x8000_0000;
        let all = |_| true;
        let order: Vec<usize> = (0..4)
            .map(|alt| {
                let p = Params {
                    alt,
                    ..Params::for_key(key)
                };
                pick(&s, &p, all).expect("picks")
            })
            .collect();
        let mut distinct = order.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "alt 0..3 visit every backend: {order:?}");
        // alt beyond n-1 is n-1.
        let p9 = Params {
            alt: 9,
            ..Params::for_key(key)
        };
        assert_eq!(pick(&s, &p9, all), Some(order[3]));
        let first_sick = |m: usize| m != order[0];
        let with = |alt, healthy| Params {
            alt,
            healthy,
            ..Params::for_key(key)
        };
        // CHOSEN: the first backend sick, alt=0 moves on to the second.
        assert_eq!(
            pick(&s, &with(0, HealthMode::Chosen), first_sick),
            Some(order[1])
        );
        // CHOSEN, alt=1 skips the first whatever its health: the second.
        assert_eq!(
            pick(&s, &with(1, HealthMode::Chosen), first_sick),
            Some(order[1])
        );
        // ALL, alt=1 skips one *healthy* backend: the third.
        assert_eq!(
            pick(&s, &with(1, HealthMode::All), first_sick),
            Some(order[2])
        );
        // IGNORE: the sick first backend is returned.
        assert_eq!(
            pick(&s, &with(0, HealthMode::Ignore), first_sick),
            Some(order[0])
        );
        // All sick.
        assert_eq!(pick(&s, &with(0, HealthMode::Chosen), |_| false), None);
        assert_eq!(pick(&s, &with(2, HealthMode::Chosen), |_| false), None);
        assert_eq!(
            pick(&s, &with(0, HealthMode::Ignore), |_| false),
            Some(order[0])
        );
        // alt whose target and successors are sick: the healthy backend alt skipped.
        let only_first = |m: usize| m == order[0];
        assert_eq!(
            pick(&s, &with(2, HealthMode::Chosen), only_first),
            Some(order[0])
        );
        // ... but a sick backend alt landed on is not returned.
        let only_second = |m: usize| m == order[1];
        assert_eq!(pick(&s, &with(2, HealthMode::Chosen), only_second), None);
    }

    #[test]
    fn rampup_and_warmup() {
        let mut s = ring(3, 67);
        let key = 12345;
        let p = Params::for_key(key);
        let order: Vec<usize> = (0..2)
            .map(|alt| pick(&s, &Params { alt, ..p }, |_| true).expect("picks"))
            .collect();
        let (chosen, next) = (order[0], order[1]);
        s.rampup = 10.0;
        let now = 1000.0;
        // The chosen backend came up 4 s ago: it keeps a request when draw * 10 < 4.
        let changed = |m: usize| if m == chosen { now - 4.0 } else { 0.0 };
        let run = |s: &Shard<usize>, p: &Params, draw: f64, changed: &dyn Fn(usize) -> f64| {
            let mut d = move || draw;
            let mut dice = Dice {
                now,
                changed,
                draw: &mut d,
            };
            s.pick(p, |_| true, &mut dice)
        };
        assert_eq!(run(&s, &p, 0.3, &changed), Some(chosen));
        assert_eq!(run(&s, &p, 0.5, &changed), Some(next));
        let no_rampup = Params { rampup: false, ..p };
        assert_eq!(run(&s, &no_rampup, 0.5, &changed), Some(chosen));
        // The other one ramping up too: no change.
        assert_eq!(run(&s, &p, 0.5, &|_| now - 1.0), Some(chosen));
        // Warmup: with probability 0.2 the next backend gets the request.
        s.rampup = 0.0;
        s.warmup = 0.2;
        assert_eq!(run(&s, &p, 0.1, &changed), Some(next));
        assert_eq!(run(&s, &p, 0.3, &changed), Some(chosen));
        let no_warmup = Params { warmup: 0.0, ..p };
        assert_eq!(run(&s, &no_warmup, 0.1, &changed), Some(chosen));
        // alt > 0 never warms up.
        assert_eq!(run(&s, &Params { alt: 1, ..p }, 0.1, &changed), Some(next));
        // Per-backend rampup overrides the director's.
        let mut t = Shard::new();
        for i in 0..3 {
            t.add_backend(i, &format!("b{i}"), None, Some(10.0), None);
        }
        t.reconfigure(67).expect("ok");
        assert!(t.uses_rampup());
        assert_eq!(run(&t, &p, 0.5, &changed), Some(next));
        assert!(!ring(2, 3).uses_rampup());
    }

    #[test]
    fn changes_follow_varnish() {
        let mut s: Shard<usize> = Shard::new();
        assert!(s.reconfigure(67).is_ok(), "nothing to do");
        assert!(s.reconfigure(0).is_err());
        s.add_backend(0, "a", None, None, None);
        s.add_backend(0, "a", None, None, None);
        s.add_backend(1, "b", Some("x"), None, None);
        s.add_backend(2, "c", Some("x"), None, None);
        s.add_backend(3, "d", Some(""), None, None);
        s.reconfigure(2).expect("ok");
        // Duplicates (same member without ident, or same ident) are skipped.
        let got: Vec<(usize, &str)> = s.backends().iter().map(|b| (b.member, b.ident())).collect();
        assert_eq!(got, [(0, "a"), (1, "x"), (3, "d")]);
        assert_eq!(s.points(), 6);
        // Remove the first by ident: the last fills its hole.
        s.remove_backend(None, Some("a")).expect("ok");
        s.reconfigure(2).expect("ok");
        let got: Vec<usize> = s.backends().iter().map(|b| b.member).collect();
        assert_eq!(got, [3, 1]);
        // A later addition fills a hole first.
        s.remove_backend(Some(3), None).expect("ok");
        s.add_backend(7, "g", None, None, None);
        s.reconfigure(2).expect("ok");
        let got: Vec<usize> = s.backends().iter().map(|b| b.member).collect();
        assert_eq!(got, [7, 1]);
        assert!(s.remove_backend(None, None).is_err());
        // Only what follows the last clear counts.
        s.add_backend(8, "h", None, None, None);
        s.clear();
        s.add_backend(9, "i", None, None, None);
        s.reconfigure(3).expect("ok");
        let got: Vec<usize> = s.backends().iter().map(|b| b.member).collect();
        assert_eq!(got, [9]);
        assert_eq!(s.points(), 3);
        s.clear();
        assert!(s.reconfigure(3).is_err(), "no backends");
        assert_eq!(pick_members(&s, 5), None);
        // Weight scales the replicas; a huge weight is refused, not allocated.
        s.add_backend(1, "b", None, None, Some(2.5));
        s.reconfigure(10).expect("ok");
        assert_eq!(s.points(), 25);
        s.add_backend(2, "c", None, None, Some(1e12));
        assert!(s.reconfigure(10).is_err());
        assert_eq!(pick_members(&s, 5), None);
    }

    #[test]
    fn single_backend_and_blob_keys() {
        let s = ring(1, 1);
        assert_eq!(pick_members(&s, 0), Some(0));
        assert_eq!(pick_members(&s, u32::MAX), Some(0));
        assert_eq!(blob_key(b""), 0);
        assert_eq!(blob_key(&[0x12]), 0x12);
        assert_eq!(blob_key(&[0x12, 0x34, 0x56, 0x78, 0x9a]), 0x1234_5678);
        assert_eq!(HealthMode::from_enum("ALL"), Some(HealthMode::All));
        assert_eq!(HealthMode::from_enum("x"), None);
    }

    #[test]
    fn large_director_picks() {
        let s = ring(1000, 67);
        assert_eq!(s.points(), 67_000);
        let m = pick(&s, &Params::for_key(7), |m| m % 2 == 0).expect("picks");
        assert_eq!(m % 2, 0);
    }
}
