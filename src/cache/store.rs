//! The per-shard object store: lookup with Varnish's hit / grace / miss / wait decisions, request
//! coalescing through a per-key busy flag and waiting list, and SIEVE eviction by bytes.
//!
//! Why this shape: each shard owns its keys, so the store is single-threaded and needs no locks;
//! the only shared things are the immutable `Arc<Object>`s it hands out. It is pure (time is an
//! argument, waiters are opaque values handed back to the caller) so every coalescing and expiry
//! rule is a plain unit test. Lookup follows Varnish's `HSH_Lookup`: variants are scanned newest
//! first, the first fresh one decides (hit, hit-for-miss or hit-for-pass), otherwise the newest
//! expired one is the grace candidate, and a per-key busy flag (Varnish's busy objcore on the
//! objhead) guarantees one fetch per key while later requests either get the graced object or
//! park. Eviction is SIEVE (NSDI'24): one FIFO queue, a visited bit set on hits and a hand that
//! walks from the oldest entry clearing bits until it finds an unvisited victim; it needs no
//! list moves on hits, scans resist one-hit floods, and it lives in a `Slab` with index links so
//! there is no per-object allocation beyond the slab slot. Expiry uses a min-heap of death times
//! with lazy deletion (generation-stamped), so `expire` only touches dead objects.
//!
//! Bans (`cache::ban`): each stored object carries its checkpoint, the sequence number of the
//! newest ban it has been tested against (the newest ban when it was stored). A lookup hands
//! the store a [`BanFilter`] for its request; a candidate variant with an older checkpoint is
//! tested against the newer bans, and is removed (and skipped, so the lookup may miss) if one
//! matches, as Varnish's `HSH_Lookup` does. [`Store::sweep_bans`] tests objects in queue order
//! without a request (the ban lurker). The store counts objects per checkpoint so the control
//! plane can tell which bans no object needs any more.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use slab::Slab;

use crate::cache::object::{CacheKey, ObjKind, Object};
use crate::http::Headers;

/// Bounds of one shard's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Sum of `Object::weight()` the store keeps; `insert` evicts down to it.
    pub capacity_bytes: usize,
    /// Parked requests per key; beyond it `lookup` hands the waiter back (`WaitListFull`).
    pub waiters_max: usize,
}

/// Point-in-time counters of one store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Objects (including hit-for-miss / hit-for-pass markers) held.
    pub n_object: usize,
    /// Sum of their weights.
    pub bytes_used: usize,
    /// Objects removed because they were dead (past ttl + grace + keep).
    pub n_expired: u64,
    /// Live objects evicted for space.
    pub n_lru_nuked: u64,
    /// Objects removed because a ban matched them.
    pub n_banned: u64,
    /// Keys with a fetch in flight.
    pub busy_keys: usize,
    /// Requests parked on busy keys.
    pub waiters: usize,
}

/// Tests stored objects against the bans newer than their checkpoint (see the module comment).
pub trait BanFilter {
    /// The newest ban's sequence number: an object checked up to it needs no test.
    fn newest(&self) -> u64;
    /// Tests `obj`, checked up to `checked` (older than [`BanFilter::newest`]): `None` if a ban
    /// matches (the store removes it), else the checkpoint it has now reached.
    fn check(&mut self, obj: &Object, checked: u64) -> Option<u64>;
}

/// No bans (unit tests, and a store that never saw one).
pub struct NoBans;

impl BanFilter for NoBans {
    fn newest(&self) -> u64 {
        0
    }
    fn check(&mut self, _: &Object, checked: u64) -> Option<u64> {
        Some(checked)
    }
}

/// What a lookup found; see [`Store::lookup`].
#[derive(Clone, Debug)]
pub enum Lookup {
    /// A fresh object: deliver it.
    Hit(Arc<Object>),
    /// An expired object within grace: deliver it. When `bgfetch` is true this request set the
    /// key busy and must start a background fetch, then call `insert` or `unbusy`.
    Grace { stale: Arc<Object>, bgfetch: bool },
    /// Nothing usable: this request set the key busy and must fetch, then call `insert` (or
    /// `unbusy` if the fetch fails or is abandoned).
    Miss,
    /// A hit-for-miss marker: fetch without coalescing (the key is not made busy). If the
    /// response turns out cacheable, store it with `insert_unbusy`.
    HitMiss,
    /// A fresh hit-for-pass marker (returned for logging its xid and TTL): pass.
    HitPass(Arc<Object>),
    /// The key is busy (a fetch is in flight) and nothing graced can be served: the caller
    /// parks a waiter with [`Store::park`], which comes back from `insert`/`unbusy`.
    Busy,
}

/// A key with its variants, busy flag and waiting list (Varnish's objhead).
struct Head<W> {
    key: Bytes,
    busy: bool,
    waiters: VecDeque<W>,
    /// Slab indices of the variants, oldest first.
    variants: Vec<usize>,
}

impl<W> Head<W> {
    fn idle(&self) -> bool {
        self.variants.is_empty() && !self.busy && self.waiters.is_empty()
    }
}

/// One stored object in the SIEVE queue.
struct Node {
    obj: Arc<Object>,
    weight: usize,
    key_hash: u64,
    key: Bytes,
    /// Towards the newest end of the queue.
    newer: Option<usize>,
    /// Towards the oldest end of the queue.
    older: Option<usize>,
    visited: bool,
    /// Deliveries from the cache so far (VCL's `obj.hits`).
    hits: u64,
    /// Distinguishes this node from later ones reusing the slab slot (for the death heap).
    gen: u64,
    /// The newest ban this object has been tested against (its ban checkpoint).
    ban_seq: u64,
}

/// A death-heap entry: when the node at `idx` (if still generation `gen`) becomes dead.
struct Death {
    at: f64,
    idx: usize,
    gen: u64,
}

impl PartialEq for Death {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Death {}
impl PartialOrd for Death {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Death {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .total_cmp(&other.at)
            .then(self.idx.cmp(&other.idx))
            .then(self.gen.cmp(&other.gen))
    }
}

/// `CacheKey::hash` is already a keyed 64-bit digest, so the map uses it as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Why a node leaves the store (for counters).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Expired,
    Nuked,
    Replaced,
    Banned,
}

/// One shard's cache. `W` is the caller's parked request.
pub struct Store<W> {
    limits: StoreLimits,
    /// Buckets by `CacheKey::hash`; keys are told apart by their bytes inside a bucket.
    map: Map<W>,
    nodes: Slab<Node>,
    newest: Option<usize>,
    oldest: Option<usize>,
    /// The SIEVE hand; `None` means "start from the oldest".
    hand: Option<usize>,
    deaths: BinaryHeap<Reverse<Death>>,
    next_gen: u64,
    bytes_used: usize,
    n_expired: u64,
    n_lru_nuked: u64,
    busy_keys: usize,
    waiters: usize,
    /// `obj.hits` of the object the last `lookup` returned as a hit or grace hit.
    last_hits: u64,
    /// The newest ban sequence number the shard knows: the checkpoint of objects stored now.
    ban_newest: u64,
    /// Objects per ban checkpoint (for retiring bans and `ban.list`'s counts).
    ban_refs: BTreeMap<u64, usize>,
    /// `ban_refs` changed since [`Store::take_ban_refs`] last read it.
    ban_refs_dirty: bool,
    /// Where the ban sweep goes on (a slab index; checked before use).
    ban_cursor: Option<usize>,
    n_banned: u64,
}

impl<W> Store<W> {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            limits,
            map: HashMap::default(),
            nodes: Slab::new(),
            newest: None,
            oldest: None,
            hand: None,
            deaths: BinaryHeap::new(),
            next_gen: 0,
            bytes_used: 0,
            n_expired: 0,
            n_lru_nuked: 0,
            busy_keys: 0,
            waiters: 0,
            last_hits: 0,
            ban_newest: 0,
            ban_refs: BTreeMap::new(),
            ban_refs_dirty: false,
            ban_cursor: None,
            n_banned: 0,
        }
    }

    /// The most requests parked per key from now on (`waitinglist_max` changed at runtime).
    pub fn set_waiters_max(&mut self, waiters_max: usize) {
        self.limits.waiters_max = waiters_max;
    }

    /// The newest ban sequence number: objects stored from now on are checked up to it.
    pub fn set_ban_newest(&mut self, seq: u64) {
        self.ban_newest = self.ban_newest.max(seq);
    }

    /// The objects per ban checkpoint, ascending.
    pub fn ban_refs(&self) -> Vec<(u64, usize)> {
        self.ban_refs.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// Have the objects per checkpoint changed since [`Store::ban_refs_reported`]?
    pub fn ban_refs_dirty(&self) -> bool {
        self.ban_refs_dirty
    }

    /// The caller has passed [`Store::ban_refs`] on.
    pub fn ban_refs_reported(&mut self) {
        self.ban_refs_dirty = false;
    }

    /// The oldest ban checkpoint of any stored object (`None`: no object).
    pub fn oldest_ban_checkpoint(&self) -> Option<u64> {
        self.ban_refs.keys().next().copied()
    }

    /// Varnish's `HSH_Lookup`, simplified. `req` is the request's headers (for Vary);
    /// `req_grace` is VCL's `req.grace` (`None` or negative: use the object's grace).
    ///
    /// Variants whose Vary matches `req` are scanned newest first, skipping those with
    /// `ttl <= 0` (as Varnish does); dead variants are dropped on the way. The first fresh one
    /// decides: hit-for-pass → `HitPass`, hit-for-miss → `HitMiss`, normal → `Hit`. Otherwise
    /// the newest expired one is the candidate: a marker → `HitMiss` (Varnish's "grace/keep
    /// HFM"), a normal object within `min(obj.grace, req_grace)` → graced. Then, if a fetch is
    /// in flight for the key, a graced candidate is served (`bgfetch: false`) or the waiter is
    /// parked (`Wait`, or `WaitListFull` at `waiters_max`); if not, the key becomes busy and the
    /// result is `Grace { bgfetch: true }` or `Miss`. `Busy` asks the caller to `park` a waiter.
    pub fn lookup(
        &mut self,
        key: &CacheKey,
        req: &Headers,
        now: f64,
        req_grace: Option<f64>,
    ) -> Lookup {
        self.lookup_filtered(key, req, now, req_grace, &mut NoBans)
    }

    /// [`Store::lookup`], testing each candidate variant against the bans of `bans` first: a
    /// banned variant is removed and skipped (Varnish tests bans after Vary, before freshness).
    pub fn lookup_filtered(
        &mut self,
        key: &CacheKey,
        req: &Headers,
        now: f64,
        req_grace: Option<f64>,
        bans: &mut dyn BanFilter,
    ) -> Lookup {
        self.drop_dead_variants(key, now);

        let mut fresh = None;
        let mut expired: Option<(usize, f64)> = None;
        let mut banned: Vec<usize> = Vec::new();
        let newest_ban = bans.newest();
        let head = self
            .map
            .get(&key.hash)
            .and_then(|b| b.iter().find(|h| h.key == key.bytes));
        if let Some(head) = head {
            for &i in head.variants.iter().rev() {
                let Some(node) = self.nodes.get_mut(i) else {
                    continue;
                };
                let o = &node.obj;
                // NaN-safe: only a positive TTL makes an object usable.
                if o.ttl.partial_cmp(&0.0) != Some(Ordering::Greater) {
                    continue;
                }
                if let Some(v) = &o.vary {
                    if !v.matches(req) {
                        continue;
                    }
                }
                if node.ban_seq < newest_ban {
                    match bans.check(o, node.ban_seq) {
                        None => {
                            banned.push(i);
                            continue;
                        }
                        Some(c) => {
                            move_ref(&mut self.ban_refs, node.ban_seq, c);
                            self.ban_refs_dirty |= c != node.ban_seq;
                            node.ban_seq = c;
                        }
                    }
                }
                let o = &node.obj;
                if o.is_fresh(now) {
                    fresh = Some(i);
                    break;
                }
                if expired.is_none_or(|(_, t)| o.t_origin > t) {
                    expired = Some((i, o.t_origin));
                }
            }
        }
        for i in banned {
            self.remove_node(i, Why::Banned);
        }

        if let Some(i) = fresh {
            if let Some(node) = self.nodes.get_mut(i) {
                node.visited = true;
                node.hits += 1;
                self.last_hits = node.hits;
                let obj = node.obj.clone();
                let found = match obj.kind {
                    ObjKind::HitForPass => Lookup::HitPass(obj),
                    ObjKind::HitForMiss => Lookup::HitMiss,
                    ObjKind::Normal => Lookup::Hit(obj),
                };
                return found;
            }
        }

        let mut graced = None;
        if let Some((i, _)) = expired {
            if let Some(node) = self.nodes.get_mut(i) {
                if node.obj.kind != ObjKind::Normal {
                    node.visited = true;
                    return Lookup::HitMiss;
                }
                let grace = match req_grace {
                    Some(g) if g >= 0.0 && g < node.obj.grace => g,
                    _ => node.obj.grace,
                };
                if node.obj.in_grace(now, grace) {
                    graced = Some(i);
                }
            }
        }

        let stale = graced.and_then(|i| self.nodes.get_mut(i)).map(|n| {
            n.visited = true;
            n.hits += 1;
            self.last_hits = n.hits;
            Arc::clone(&n.obj)
        });
        let head = head_in(&mut self.map, key);
        if head.busy {
            if let Some(stale) = stale {
                return Lookup::Grace {
                    stale,
                    bgfetch: false,
                };
            }
            return Lookup::Busy;
        }
        head.busy = true;
        self.busy_keys += 1;
        match stale {
            Some(stale) => Lookup::Grace {
                stale,
                bgfetch: true,
            },
            None => Lookup::Miss,
        }
    }

    /// `obj.hits` of the object the last [`Store::lookup`] returned as `Hit` or `Grace`
    /// (counting that delivery), for VCL's `obj.hits`.
    pub fn last_hits(&self) -> u64 {
        self.last_hits
    }

    /// The object a miss may revalidate (Varnish's keep): the newest expired, not yet dead,
    /// normal 200 variant matching `req` that carries an `ETag` or `Last-Modified`, and that
    /// has been tested against every ban known (a lookup tests the usable ones; an object it
    /// skipped is not revalidated, so a banned one is never brought back by a 304).
    pub fn keep_candidate(&self, key: &CacheKey, req: &Headers, now: f64) -> Option<Arc<Object>> {
        let head = self.head(key)?;
        let mut best: Option<&Arc<Object>> = None;
        for &i in &head.variants {
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            let o = &node.obj;
            let usable = o.kind == ObjKind::Normal
                && o.status == 200
                && !o.is_fresh(now)
                && !o.is_dead(now)
                && o.vary.as_ref().is_none_or(|v| v.matches(req))
                && node.ban_seq >= self.ban_newest
                && (o.headers.contains("etag") || o.headers.contains("last-modified"));
            if usable && best.is_none_or(|b| o.t_origin > b.t_origin) {
                best = Some(o);
            }
        }
        best.cloned()
    }

    /// Parks `waiter` on a busy key (after `lookup` answered `Busy`). Hands it back when the
    /// key's waiting list is full or the key is not busy.
    pub fn park(&mut self, key: &CacheKey, waiter: W) -> Result<(), W> {
        let max = self.limits.waiters_max;
        let Some(head) = self.head_mut(key) else {
            return Err(waiter);
        };
        if !head.busy || head.waiters.len() >= max {
            return Err(waiter);
        }
        head.waiters.push_back(waiter);
        self.waiters += 1;
        Ok(())
    }

    /// Stores the result of the fetch that held the key busy (a `Miss` or a `Grace` background
    /// fetch): `obj` replaces the variant with the same `VarySpec` and any key-wide (no Vary)
    /// hit-for-miss/pass marker, busy is cleared, and the store is evicted down to capacity
    /// (never evicting `obj`; an object larger than the whole capacity is not stored). Returns
    /// the parked waiters in arrival order, for the caller to run `lookup` again (the rush).
    pub fn insert(&mut self, key: &CacheKey, obj: Arc<Object>, now: f64) -> Vec<W> {
        self.store(key, obj, now);
        self.release(key, true)
    }

    /// The busy fetch failed or was abandoned: clears busy, keeps whatever objects exist (a
    /// stale one stays available for grace) and returns the parked waiters in arrival order.
    pub fn unbusy(&mut self, key: &CacheKey) -> Vec<W> {
        self.release(key, true)
    }

    /// Stores an object fetched without holding busy (a hit-for-miss fetch whose response was
    /// cacheable). Replaces like `insert` but leaves another fetch's busy flag alone; if that
    /// fetch has waiters they are returned so they can try the new object (those it does not
    /// satisfy park again behind the still-busy key), as Varnish rushes the waiting list
    /// whenever an object is unbusied on the objhead.
    pub fn insert_unbusy(&mut self, key: &CacheKey, obj: Arc<Object>, now: f64) -> Vec<W> {
        self.store(key, obj, now);
        self.release(key, false)
    }

    /// Removes every variant (and marker) of `key`; returns how many. A fetch in flight and its
    /// waiters are not affected.
    pub fn purge(&mut self, key: &CacheKey) -> usize {
        let idx: Vec<usize> = self
            .head(key)
            .map(|h| h.variants.clone())
            .unwrap_or_default();
        for &i in &idx {
            self.remove_node(i, Why::Replaced);
        }
        idx.len()
    }

    /// Removes up to `budget` dead objects (past ttl + grace + keep at `now`), soonest-dead
    /// first; returns how many were removed.
    pub fn expire(&mut self, now: f64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some(Reverse(top)) = self.deaths.peek() else {
                break;
            };
            if now < top.at {
                break;
            }
            let (idx, gen) = (top.idx, top.gen);
            self.deaths.pop();
            let live = self
                .nodes
                .get(idx)
                .is_some_and(|n| n.gen == gen && n.obj.is_dead(now));
            if live {
                self.remove_node(idx, Why::Expired);
                removed += 1;
            }
        }
        removed
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            n_object: self.nodes.len(),
            bytes_used: self.bytes_used,
            n_expired: self.n_expired,
            n_lru_nuked: self.n_lru_nuked,
            n_banned: self.n_banned,
            busy_keys: self.busy_keys,
            waiters: self.waiters,
        }
    }

    /// True while a fetch holds the key busy.
    pub fn is_busy(&self, key: &CacheKey) -> bool {
        self.head(key).is_some_and(|h| h.busy)
    }

    /// The ban sweep (Varnish's ban lurker): tests up to `budget` objects, going round the
    /// queue from where the last sweep stopped, against `bans`; removes the banned ones.
    /// Returns how many were tested. Nothing is done when every object is checked up to the
    /// newest ban.
    pub fn sweep_bans(&mut self, bans: &mut dyn BanFilter, budget: usize) -> usize {
        let newest = bans.newest();
        if self.oldest_ban_checkpoint().is_none_or(|c| c >= newest) {
            return 0;
        }
        let mut cur = self.ban_cursor.filter(|&i| self.nodes.contains(i));
        let mut tested = 0;
        for _ in 0..budget.min(self.nodes.len()) {
            let Some(idx) = cur.or(self.oldest) else {
                break;
            };
            let Some(node) = self.nodes.get_mut(idx) else {
                break;
            };
            cur = node.newer;
            if node.ban_seq >= newest {
                continue;
            }
            tested += 1;
            match bans.check(&node.obj, node.ban_seq) {
                None => {
                    self.remove_node(idx, Why::Banned);
                }
                Some(c) => {
                    move_ref(&mut self.ban_refs, node.ban_seq, c);
                    self.ban_refs_dirty |= c != node.ban_seq;
                    node.ban_seq = c;
                }
            }
        }
        self.ban_cursor = cur;
        tested
    }

    // ---- internals ----------------------------------------------------------------------

    fn head(&self, key: &CacheKey) -> Option<&Head<W>> {
        self.map.get(&key.hash)?.iter().find(|h| h.key == key.bytes)
    }

    fn head_mut(&mut self, key: &CacheKey) -> Option<&mut Head<W>> {
        self.map
            .get_mut(&key.hash)?
            .iter_mut()
            .find(|h| h.key == key.bytes)
    }

    /// Removes the head of `key` if it holds nothing.
    fn drop_if_idle(&mut self, hash: u64, key: &[u8]) {
        if let Some(bucket) = self.map.get_mut(&hash) {
            if let Some(p) = bucket.iter().position(|h| h.key == key) {
                if bucket[p].idle() {
                    bucket.swap_remove(p);
                }
            }
            if bucket.is_empty() {
                self.map.remove(&hash);
            }
        }
    }

    /// Optionally clears busy, and hands back the waiters if busy was cleared or (for
    /// `insert_unbusy`) if another fetch is still busy; drops the head if it is now empty.
    fn release(&mut self, key: &CacheKey, clear_busy: bool) -> Vec<W> {
        let mut out = Vec::new();
        let Some(bucket) = self.map.get_mut(&key.hash) else {
            return out;
        };
        let Some(head) = bucket.iter_mut().find(|h| h.key == key.bytes) else {
            return out;
        };
        if clear_busy && head.busy {
            head.busy = false;
            self.busy_keys -= 1;
        }
        out.extend(head.waiters.drain(..));
        self.waiters -= out.len();
        self.drop_if_idle(key.hash, &key.bytes);
        out
    }

    fn drop_dead_variants(&mut self, key: &CacheKey, now: f64) {
        let dead: Vec<usize> = match self.head(key) {
            Some(h) => h
                .variants
                .iter()
                .copied()
                .filter(|&i| self.nodes.get(i).is_some_and(|n| n.obj.is_dead(now)))
                .collect(),
            None => return,
        };
        for i in dead {
            self.remove_node(i, Why::Expired);
        }
    }

    /// Replaces and stores `obj` under `key`, then evicts down to capacity.
    fn store(&mut self, key: &CacheKey, obj: Arc<Object>, now: f64) {
        let replaced: Vec<usize> = match self.head(key) {
            Some(h) => h
                .variants
                .iter()
                .copied()
                .filter(|&i| {
                    self.nodes.get(i).is_some_and(|n| {
                        n.obj.vary == obj.vary
                            || (n.obj.kind != ObjKind::Normal && n.obj.vary.is_none())
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        for i in replaced {
            self.remove_node(i, Why::Replaced);
        }

        // The key bytes live in the store's entry for as long as the object does.
        let weight = obj.weight() + key.bytes.len();
        if weight > self.limits.capacity_bytes {
            return;
        }
        let at = death_time(&obj);
        let gen = self.next_gen;
        self.next_gen += 1;
        let idx = self.nodes.insert(Node {
            obj,
            weight,
            key_hash: key.hash,
            key: key.bytes.clone(),
            newer: None,
            older: self.newest,
            visited: false,
            hits: 0,
            gen,
            ban_seq: self.ban_newest,
        });
        *self.ban_refs.entry(self.ban_newest).or_insert(0) += 1;
        self.ban_refs_dirty = true;
        if let Some(n) = self.newest.and_then(|n| self.nodes.get_mut(n)) {
            n.newer = Some(idx);
        }
        self.newest = Some(idx);
        if self.oldest.is_none() {
            self.oldest = Some(idx);
        }
        self.bytes_used += weight;
        head_in(&mut self.map, key).variants.push(idx);
        if !at.is_nan() {
            self.deaths.push(Reverse(Death { at, idx, gen }));
        }

        self.evict(idx, now);
        if self.deaths.len() > 2 * self.nodes.len() + 1024 {
            self.rebuild_deaths();
        }
    }

    /// SIEVE: evicts until `bytes_used <= capacity_bytes`, never evicting `protect`. Dead
    /// objects the hand meets are removed as expired.
    fn evict(&mut self, protect: usize, now: f64) {
        while self.bytes_used > self.limits.capacity_bytes && self.nodes.len() > 1 {
            match self.next_victim(protect, now) {
                Some((idx, why)) => {
                    self.remove_node(idx, why);
                }
                None => break,
            }
        }
    }

    /// Moves the hand to the next victim and returns it (the hand is left just past it).
    fn next_victim(&mut self, protect: usize, now: f64) -> Option<(usize, Why)> {
        // Two full passes always find an unvisited node (the first clears every bit).
        let limit = 2 * self.nodes.len() + 2;
        let mut cur = self.hand.or(self.oldest);
        for _ in 0..limit {
            let idx = match cur {
                Some(i) => i,
                None => self.oldest?,
            };
            let node = self.nodes.get_mut(idx)?;
            let newer = node.newer;
            if idx == protect {
                cur = newer;
                continue;
            }
            if node.obj.is_dead(now) {
                self.hand = newer;
                return Some((idx, Why::Expired));
            }
            if node.visited {
                node.visited = false;
                cur = newer;
                continue;
            }
            self.hand = newer;
            return Some((idx, Why::Nuked));
        }
        None
    }

    /// Unlinks node `idx` from the queue, its head and the byte count.
    fn remove_node(&mut self, idx: usize, why: Why) -> Option<Arc<Object>> {
        let node = self.nodes.try_remove(idx)?;
        match node.older.and_then(|o| self.nodes.get_mut(o)) {
            Some(o) => o.newer = node.newer,
            None => self.oldest = node.newer,
        }
        match node.newer.and_then(|n| self.nodes.get_mut(n)) {
            Some(n) => n.older = node.older,
            None => self.newest = node.older,
        }
        if self.hand == Some(idx) {
            self.hand = node.newer;
        }
        self.bytes_used -= node.weight;
        if let Some(n) = self.ban_refs.get_mut(&node.ban_seq) {
            *n -= 1;
            if *n == 0 {
                self.ban_refs.remove(&node.ban_seq);
            }
        }
        self.ban_refs_dirty = true;
        match why {
            Why::Expired => self.n_expired += 1,
            Why::Nuked => self.n_lru_nuked += 1,
            Why::Banned => self.n_banned += 1,
            Why::Replaced => {}
        }
        if let Some(head) = self
            .map
            .get_mut(&node.key_hash)
            .and_then(|b| b.iter_mut().find(|h| h.key == node.key))
        {
            head.variants.retain(|&i| i != idx);
        }
        self.drop_if_idle(node.key_hash, &node.key);
        Some(node.obj)
    }

    /// Drops stale death-heap entries (nodes since removed).
    fn rebuild_deaths(&mut self) {
        let live: Vec<Reverse<Death>> = self
            .nodes
            .iter()
            .filter_map(|(idx, n)| {
                let at = death_time(&n.obj);
                (!at.is_nan()).then_some(Reverse(Death {
                    at,
                    idx,
                    gen: n.gen,
                }))
            })
            .collect();
        self.deaths = BinaryHeap::from(live);
    }
}

/// Moves one object's count from checkpoint `from` to checkpoint `to`.
fn move_ref(refs: &mut BTreeMap<u64, usize>, from: u64, to: u64) {
    if from == to {
        return;
    }
    if let Some(n) = refs.get_mut(&from) {
        *n -= 1;
        if *n == 0 {
            refs.remove(&from);
        }
    }
    *refs.entry(to).or_insert(0) += 1;
}

/// When `Object::is_dead` becomes true (same expression).
fn death_time(o: &Object) -> f64 {
    o.t_origin + o.ttl + o.grace.max(0.0) + o.keep.max(0.0)
}

type Map<W> = HashMap<u64, Vec<Head<W>>, BuildHasherDefault<PassThrough>>;

/// The head of `key`, created empty if absent (a free function so callers can keep borrowing
/// the store's other fields).
fn head_in<'a, W>(map: &'a mut Map<W>, key: &CacheKey) -> &'a mut Head<W> {
    let bucket = map.entry(key.hash).or_default();
    let pos = match bucket.iter().position(|h| h.key == key.bytes) {
        Some(p) => p,
        None => {
            bucket.push(Head {
                key: key.bytes.clone(),
                busy: false,
                waiters: VecDeque::new(),
                variants: Vec::new(),
            });
            bucket.len() - 1
        }
    };
    &mut bucket[pos]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::VarySpec;

    /// What a lookup plus the caller's park gives: the store's answer, or for a busy key
    /// whether the waiter was parked (`Wait`) or refused (`WaitListFull`). Shadows the store's
    /// `Lookup` so each test reads as one request's whole outcome.
    #[derive(Debug)]
    enum Lookup {
        Hit(Arc<Object>),
        Grace { stale: Arc<Object>, bgfetch: bool },
        Miss,
        HitMiss,
        HitPass(Arc<Object>),
        Wait,
        WaitListFull,
    }

    /// One request: `lookup`, then `park` the waiter when the key is busy. The waiter comes
    /// back in the second slot unless it was parked.
    fn lk(
        s: &mut Store<u32>,
        key: &CacheKey,
        req: &Headers,
        now: f64,
        req_grace: Option<f64>,
        w: u32,
    ) -> (Lookup, Option<u32>) {
        let l = match s.lookup(key, req, now, req_grace) {
            super::Lookup::Hit(o) => Lookup::Hit(o),
            super::Lookup::Grace { stale, bgfetch } => Lookup::Grace { stale, bgfetch },
            super::Lookup::Miss => Lookup::Miss,
            super::Lookup::HitMiss => Lookup::HitMiss,
            super::Lookup::HitPass(o) => Lookup::HitPass(o),
            super::Lookup::Busy => {
                return match s.park(key, w) {
                    Ok(()) => (Lookup::Wait, None),
                    Err(w) => (Lookup::WaitListFull, Some(w)),
                };
            }
        };
        (l, Some(w))
    }

    fn mk(kind: ObjKind, t_origin: f64, ttl: f64, grace: f64, keep: f64) -> Object {
        let headers = Headers::new();
        Object {
            xid: 1,
            kind,
            status: 200,
            reason: Bytes::from_static(b"OK"),
            head: Object::build_head(200, b"OK", &headers),
            headers,
            body: Bytes::from(vec![b'x'; 100]),
            t_origin,
            ttl,
            grace,
            keep,
            vary: None,
        }
    }

    fn normal(t: f64, ttl: f64, grace: f64) -> Arc<Object> {
        Arc::new(mk(ObjKind::Normal, t, ttl, grace, 0.0))
    }

    fn tagged(t: f64, ttl: f64, xid: u64) -> Arc<Object> {
        let mut o = mk(ObjKind::Normal, t, ttl, 10.0, 0.0);
        o.xid = xid;
        Arc::new(o)
    }

    fn marker(kind: ObjKind, t: f64, ttl: f64) -> Arc<Object> {
        Arc::new(mk(kind, t, ttl, 10.0, 0.0))
    }

    fn varied(t: f64, ttl: f64, req: &Headers) -> Arc<Object> {
        let mut resp = Headers::new();
        resp.append("Vary", "Accept-Encoding");
        let mut o = mk(ObjKind::Normal, t, ttl, 10.0, 0.0);
        o.vary = VarySpec::from_response(&resp, req);
        Arc::new(o)
    }

    /// What the store charges for a normal test object under `k` (object plus key bytes).
    fn charged(k: &CacheKey) -> usize {
        normal(0.0, 1e9, 0.0).weight() + k.bytes.len()
    }

    fn key(s: &str) -> CacheKey {
        CacheKey::from_parts(&[s.as_bytes(), b"example.com"])
    }

    fn store() -> Store<u32> {
        Store::new(StoreLimits {
            capacity_bytes: 1 << 30,
            waiters_max: 4,
        })
    }

    fn req() -> Headers {
        Headers::new()
    }

    fn ae(v: &'static str) -> Headers {
        let mut h = Headers::new();
        h.append("Accept-Encoding", v);
        h
    }

    fn is_hit(l: &Lookup) -> bool {
        matches!(l, Lookup::Hit(_))
    }

    #[test]
    fn hit_after_insert() {
        let mut s = store();
        let k = key("/a");
        let (l, w) = lk(&mut s, &k, &req(), 0.0, None, 1);
        assert!(matches!(l, Lookup::Miss));
        assert_eq!(w, Some(1));
        assert!(s.is_busy(&k));
        assert!(s.insert(&k, normal(0.0, 10.0, 10.0), 0.0).is_empty());
        assert!(!s.is_busy(&k));
        let (l, w) = lk(&mut s, &k, &req(), 5.0, None, 2);
        assert!(is_hit(&l));
        assert_eq!(w, Some(2));
        let st = s.stats();
        assert_eq!((st.n_object, st.busy_keys, st.waiters), (1, 0, 0));
        assert!(st.bytes_used > 0);
    }

    #[test]
    fn miss_coalesces_and_rush_returns_waiters_in_order() {
        let mut s = store();
        let k = key("/a");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        for w in 2..=4 {
            let (l, back) = lk(&mut s, &k, &req(), 0.0, None, w);
            assert!(matches!(l, Lookup::Wait));
            assert_eq!(back, None);
        }
        assert_eq!(s.stats().waiters, 3);
        assert_eq!(s.stats().busy_keys, 1);
        let rushed = s.insert(&k, normal(0.0, 10.0, 10.0), 0.5);
        assert_eq!(rushed, vec![2, 3, 4]);
        assert_eq!(s.stats().waiters, 0);
        for w in rushed {
            assert!(is_hit(&lk(&mut s, &k, &req(), 0.5, None, w).0));
        }
    }

    #[test]
    fn wait_list_is_bounded() {
        let mut s = Store::new(StoreLimits {
            capacity_bytes: 1 << 20,
            waiters_max: 2,
        });
        let k = key("/a");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 2).0,
            Lookup::Wait
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 3).0,
            Lookup::Wait
        ));
        let (l, back) = lk(&mut s, &k, &req(), 0.0, None, 4);
        assert!(matches!(l, Lookup::WaitListFull));
        assert_eq!(back, Some(4));
        assert_eq!(s.unbusy(&k), vec![2, 3]);
        // The rush re-runs lookup: the first becomes the fetcher, the next waits again.
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 2).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 3).0,
            Lookup::Wait
        ));
    }

    #[test]
    fn hit_for_miss_never_coalesces() {
        let mut s = store();
        let k = key("/a");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 2).0,
            Lookup::Wait
        ));
        assert_eq!(
            s.insert(&k, marker(ObjKind::HitForMiss, 0.0, 120.0), 0.0),
            vec![2]
        );
        for w in 0..10 {
            let (l, back) = lk(&mut s, &k, &req(), 1.0 + f64::from(w), None, w);
            assert!(matches!(l, Lookup::HitMiss), "{l:?}");
            assert_eq!(back, Some(w));
            assert!(!s.is_busy(&k));
        }
        // Past its TTL but not dead (grace 10): still hit-for-miss, like Varnish's
        // "grace/keep HFM".
        assert!(matches!(
            lk(&mut s, &k, &req(), 125.0, None, 1).0,
            Lookup::HitMiss
        ));
        // A hit-for-miss fetch that turned cacheable replaces the marker.
        assert!(s
            .insert_unbusy(&k, normal(126.0, 60.0, 10.0), 126.0)
            .is_empty());
        assert_eq!(s.stats().n_object, 1);
        assert!(is_hit(&lk(&mut s, &k, &req(), 127.0, None, 1).0));
        // Once dead, the marker is gone and lookups miss.
        let k2 = key("/b");
        s.insert_unbusy(&k2, marker(ObjKind::HitForMiss, 0.0, 120.0), 0.0);
        assert!(matches!(
            lk(&mut s, &k2, &req(), 130.0, None, 1).0,
            Lookup::Miss
        ));
    }

    #[test]
    fn hit_for_pass() {
        let mut s = store();
        let k = key("/a");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        let mut m = mk(ObjKind::HitForPass, 0.0, 30.0, 0.0, 0.0);
        m.xid = 77;
        s.insert(&k, Arc::new(m), 0.0);
        for _ in 0..3 {
            match lk(&mut s, &k, &req(), 10.0, None, 1).0 {
                Lookup::HitPass(o) => assert_eq!(o.xid, 77),
                other => panic!("{other:?}"),
            }
        }
        assert!(!s.is_busy(&k));
        assert!(matches!(
            lk(&mut s, &k, &req(), 30.0, None, 1).0,
            Lookup::Miss
        ));
    }

    #[test]
    fn vary_variants_coexist() {
        let mut s = store();
        let k = key("/v");
        let (gz, br, none) = (ae("gzip"), ae("br"), req());
        assert!(matches!(lk(&mut s, &k, &gz, 0.0, None, 1).0, Lookup::Miss));
        s.insert(&k, varied(0.0, 100.0, &gz), 0.0);
        assert!(matches!(lk(&mut s, &k, &br, 0.0, None, 2).0, Lookup::Miss));
        s.insert(&k, varied(0.0, 100.0, &br), 0.0);
        assert_eq!(s.stats().n_object, 2);
        assert!(is_hit(&lk(&mut s, &k, &gz, 1.0, None, 3).0));
        assert!(is_hit(&lk(&mut s, &k, &br, 1.0, None, 3).0));
        // A request matching no variant misses and makes the key busy...
        assert!(matches!(
            lk(&mut s, &k, &none, 1.0, None, 4).0,
            Lookup::Miss
        ));
        // ...while the stored variants keep hitting, and busy is per key.
        assert!(is_hit(&lk(&mut s, &k, &gz, 1.0, None, 5).0));
        assert!(matches!(
            lk(&mut s, &k, &ae("deflate"), 1.0, None, 6).0,
            Lookup::Wait
        ));
        // Re-inserting the gzip variant replaces it rather than adding a third.
        assert_eq!(s.insert(&k, varied(2.0, 100.0, &gz), 2.0), vec![6]);
        assert_eq!(s.stats().n_object, 2);
        match lk(&mut s, &k, &gz, 3.0, None, 7).0 {
            Lookup::Hit(o) => assert_eq!(o.t_origin, 2.0),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.purge(&k), 2);
        assert_eq!(s.stats().n_object, 0);
    }

    #[test]
    fn grace_serves_stale_and_fetches_once() {
        let mut s = store();
        let k = key("/g");
        lk(&mut s, &k, &req(), 0.0, None, 0);
        s.insert(&k, normal(0.0, 10.0, 30.0), 0.0);
        match lk(&mut s, &k, &req(), 15.0, None, 1) {
            (
                Lookup::Grace {
                    stale,
                    bgfetch: true,
                },
                Some(1),
            ) => assert_eq!(stale.t_origin, 0.0),
            other => panic!("{other:?}"),
        }
        assert!(s.is_busy(&k));
        for w in 2..6 {
            let (l, back) = lk(&mut s, &k, &req(), 16.0, None, w);
            assert!(matches!(l, Lookup::Grace { bgfetch: false, .. }), "{l:?}");
            assert_eq!(back, Some(w));
        }
        assert_eq!(s.stats().waiters, 0);
        assert!(s.insert(&k, normal(17.0, 10.0, 30.0), 17.0).is_empty());
        assert_eq!(s.stats().n_object, 1);
        assert!(is_hit(&lk(&mut s, &k, &req(), 18.0, None, 9).0));
    }

    #[test]
    fn unbusy_keeps_stale_and_req_grace_limits() {
        let mut s = store();
        let k = key("/g");
        lk(&mut s, &k, &req(), 0.0, None, 0);
        s.insert(&k, normal(0.0, 10.0, 30.0), 0.0);
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, None, 1).0,
            Lookup::Grace { bgfetch: true, .. }
        ));
        assert!(s.unbusy(&k).is_empty());
        assert!(!s.is_busy(&k));
        assert_eq!(s.stats().n_object, 1);
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, None, 1).0,
            Lookup::Grace { bgfetch: true, .. }
        ));
        s.unbusy(&k);
        // req.grace = 0: no stale delivery, a plain miss; later req.grace=0 requests wait.
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, Some(0.0), 2).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, Some(0.0), 3).0,
            Lookup::Wait
        ));
        // ...but a request with default grace still gets the stale object without waiting.
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, None, 4).0,
            Lookup::Grace { bgfetch: false, .. }
        ));
        // req.grace shorter than the time past TTL, and negative req.grace = unset.
        assert_eq!(s.unbusy(&k), vec![3]);
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, Some(4.0), 5).0,
            Lookup::Miss
        ));
        s.unbusy(&k);
        assert!(matches!(
            lk(&mut s, &k, &req(), 15.0, Some(-1.0), 6).0,
            Lookup::Grace { .. }
        ));
        s.unbusy(&k);
        // Past grace: miss (the stale object stays until dead, for keep).
        assert!(matches!(
            lk(&mut s, &k, &req(), 40.0, None, 7).0,
            Lookup::Miss
        ));
    }

    #[test]
    fn zero_ttl_objects_are_never_served() {
        let mut s = store();
        let k = key("/z");
        s.insert_unbusy(&k, normal(0.0, 0.0, 30.0), 0.0);
        assert_eq!(s.stats().n_object, 1);
        assert!(matches!(
            lk(&mut s, &k, &req(), 1.0, None, 1).0,
            Lookup::Miss
        ));
    }

    #[test]
    fn dead_objects_expire() {
        let mut s = store();
        for (i, t) in [0.0, 5.0, 10.0].iter().enumerate() {
            let k = key(&format!("/e{i}"));
            s.insert_unbusy(&k, Arc::new(mk(ObjKind::Normal, *t, 10.0, 5.0, 5.0)), *t);
        }
        assert_eq!(s.expire(19.9, 10), 0);
        assert_eq!(s.expire(20.0, 10), 1);
        assert_eq!(s.expire(100.0, 1), 1); // budget
        assert_eq!(s.expire(100.0, 10), 1);
        let st = s.stats();
        assert_eq!((st.n_object, st.n_expired, st.bytes_used), (0, 3, 0));
        // Lazy removal on lookup: keep time (past grace, before dead) is a miss, but the
        // object stays; once dead the lookup removes it.
        let k = key("/lazy");
        s.insert_unbusy(&k, Arc::new(mk(ObjKind::Normal, 0.0, 10.0, 5.0, 5.0)), 0.0);
        assert!(matches!(
            lk(&mut s, &k, &req(), 17.0, None, 1).0,
            Lookup::Miss
        ));
        assert_eq!(s.stats().n_object, 1);
        s.unbusy(&k);
        assert!(matches!(
            lk(&mut s, &k, &req(), 20.0, None, 1).0,
            Lookup::Miss
        ));
        assert_eq!(s.stats().n_object, 0);
        assert_eq!(s.stats().n_expired, 4);
        s.unbusy(&k);
        assert_eq!(s.expire(1e12, 100), 0);
        assert!(s.map.is_empty());
    }

    #[test]
    fn flood_of_unique_keys_stays_within_capacity() {
        let w = charged(&key("/flood/00000"));
        let cap = 100 * w + w / 2;
        let mut s: Store<u32> = Store::new(StoreLimits {
            capacity_bytes: cap,
            waiters_max: 4,
        });
        for i in 0..10_000u32 {
            let k = key(&format!("/flood/{i:05}"));
            assert!(matches!(
                lk(&mut s, &k, &req(), 0.0, None, i).0,
                Lookup::Miss
            ));
            assert!(s.insert(&k, normal(0.0, 1e9, 0.0), 0.0).is_empty());
            assert!(s.stats().bytes_used <= cap);
            assert!(is_hit(&lk(&mut s, &k, &req(), 0.0, None, i).0));
        }
        let st = s.stats();
        assert_eq!(st.n_object, 100);
        assert_eq!(st.n_lru_nuked, 9_900);
        assert_eq!(st.bytes_used, 100 * w);
        assert_eq!((st.busy_keys, st.waiters), (0, 0));
        assert_eq!(s.map.values().map(Vec::len).sum::<usize>(), 100);
        assert!(s.deaths.len() <= 2 * s.nodes.len() + 1024);
    }

    #[test]
    fn sieve_evicts_unvisited_before_visited() {
        let w = charged(&key("/00"));
        let mut s: Store<u32> = Store::new(StoreLimits {
            capacity_bytes: 10 * w,
            waiters_max: 4,
        });
        for i in 0..10 {
            s.insert_unbusy(&key(&format!("/{i:02}")), normal(0.0, 1e9, 0.0), 0.0);
        }
        let visited = [0, 2, 4];
        for i in visited {
            assert!(is_hit(
                &lk(&mut s, &key(&format!("/{i:02}")), &req(), 1.0, None, 0).0
            ));
        }
        // Seven newcomers evict exactly the seven unvisited originals, oldest first.
        for j in 10..17 {
            s.insert_unbusy(&key(&format!("/{j:02}")), normal(0.0, 1e9, 0.0), 1.0);
            let gone = [1, 3, 5, 6, 7, 8, 9][j - 10];
            assert!(
                s.head(&key(&format!("/{gone:02}"))).is_none(),
                "{gone} should be gone"
            );
        }
        for i in visited {
            assert!(
                s.head(&key(&format!("/{i:02}"))).is_some(),
                "{i} visited, kept"
            );
        }
        assert_eq!(s.stats().n_lru_nuked, 7);
        // Their bits were cleared by the passing hand: with no new hits, the hand moves on to
        // the newcomers and then comes back to them.
        s.insert_unbusy(&key("/17"), normal(0.0, 1e9, 0.0), 1.0);
        assert!(s.head(&key("/10")).is_none());
        assert!(s.head(&key("/00")).is_some());
    }

    #[test]
    fn hand_removes_dead_objects_as_expired() {
        let w = charged(&key("/dead"));
        let mut s: Store<u32> = Store::new(StoreLimits {
            capacity_bytes: 2 * w,
            waiters_max: 4,
        });
        s.insert_unbusy(&key("/dead"), normal(0.0, 1.0, 0.0), 0.0);
        s.insert_unbusy(&key("/live"), normal(0.0, 1e9, 0.0), 0.0);
        s.insert_unbusy(&key("/new"), normal(5.0, 1e9, 0.0), 5.0);
        let st = s.stats();
        assert_eq!((st.n_expired, st.n_lru_nuked, st.n_object), (1, 0, 2));
    }

    #[test]
    fn oversized_object_is_not_stored_but_releases_waiters() {
        let w = normal(0.0, 1e9, 0.0).weight();
        let mut s: Store<u32> = Store::new(StoreLimits {
            capacity_bytes: w - 1,
            waiters_max: 4,
        });
        let k = key("/big");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 2).0,
            Lookup::Wait
        ));
        assert_eq!(s.insert(&k, normal(0.0, 10.0, 0.0), 0.0), vec![2]);
        let st = s.stats();
        assert_eq!((st.n_object, st.bytes_used, st.busy_keys), (0, 0, 0));
        assert!(s.map.is_empty());
    }

    #[test]
    fn insert_unbusy_leaves_other_fetch_busy() {
        let mut s = store();
        let k = key("/u");
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        assert!(matches!(
            lk(&mut s, &k, &req(), 0.0, None, 2).0,
            Lookup::Wait
        ));
        assert_eq!(s.insert_unbusy(&k, normal(0.0, 10.0, 0.0), 0.0), vec![2]);
        assert!(s.is_busy(&k));
        assert!(is_hit(&lk(&mut s, &k, &req(), 1.0, None, 2).0));
        assert!(s.insert(&k, normal(1.0, 10.0, 0.0), 1.0).is_empty());
        assert!(!s.is_busy(&k));
        assert_eq!(s.stats().n_object, 1);
    }

    #[test]
    fn hash_collisions_never_mix_keys() {
        let a = CacheKey {
            hash: 42,
            bytes: Bytes::from_static(b"/a\0host\0"),
        };
        let b = CacheKey {
            hash: 42,
            bytes: Bytes::from_static(b"/b\0host\0"),
        };
        let mut s = store();
        assert!(matches!(
            lk(&mut s, &a, &req(), 0.0, None, 1).0,
            Lookup::Miss
        ));
        // b is a different key: not busy because a is, and no hit on a's object.
        assert!(matches!(
            lk(&mut s, &b, &req(), 0.0, None, 2).0,
            Lookup::Miss
        ));
        s.insert(&a, tagged(0.0, 10.0, 100), 0.0);
        assert!(s.is_busy(&b));
        s.insert(&b, tagged(0.0, 10.0, 200), 0.0);
        for (k, xid) in [(&a, 100), (&b, 200)] {
            match lk(&mut s, k, &req(), 1.0, None, 0).0 {
                Lookup::Hit(o) => assert_eq!(o.xid, xid),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.map.len(), 1);
        assert_eq!(s.purge(&a), 1);
        assert!(matches!(
            lk(&mut s, &a, &req(), 1.0, None, 0).0,
            Lookup::Miss
        ));
        assert!(is_hit(&lk(&mut s, &b, &req(), 1.0, None, 0).0));
    }

    #[test]
    fn newest_expired_object_is_the_grace_candidate() {
        let mut s = store();
        let k = key("/n");
        // A key-wide object and an older Accept-Encoding variant, both expired.
        let gz = ae("gzip");
        s.insert_unbusy(&k, varied(0.0, 10.0, &gz), 0.0);
        s.insert_unbusy(&k, tagged(5.0, 10.0, 9), 5.0);
        match lk(&mut s, &k, &gz, 16.0, None, 1).0 {
            Lookup::Grace {
                stale,
                bgfetch: true,
            } => assert_eq!(stale.xid, 9),
            other => panic!("{other:?}"),
        }
    }

    /// A ban filter for tests: the newest ban is `newest`; objects whose xid is in `banned`
    /// match; every check is counted.
    struct XidBans {
        newest: u64,
        banned: Vec<u64>,
        checks: usize,
    }

    impl BanFilter for XidBans {
        fn newest(&self) -> u64 {
            self.newest
        }
        fn check(&mut self, obj: &Object, checked: u64) -> Option<u64> {
            assert!(checked < self.newest);
            self.checks += 1;
            (!self.banned.contains(&obj.xid)).then_some(self.newest)
        }
    }

    fn ban_lk(s: &mut Store<u32>, k: &CacheKey, now: f64, bans: &mut XidBans) -> super::Lookup {
        s.lookup_filtered(k, &req(), now, None, bans)
    }

    // Goal: an object is tested at lookup only against bans newer than its checkpoint; a
    // banned one is removed and the lookup misses; a clean one moves to the newest ban and is
    // not tested again; objects stored after a ban are not tested against it.
    #[test]
    fn bans_at_lookup() {
        let mut s = store();
        let (a, b) = (key("/a"), key("/b"));
        s.insert_unbusy(&a, tagged(0.0, 100.0, 1), 0.0);
        s.insert_unbusy(&b, tagged(0.0, 100.0, 2), 0.0);
        assert_eq!(s.ban_refs(), vec![(0, 2)]);
        let mut bans = XidBans {
            newest: 1,
            banned: vec![1],
            checks: 0,
        };
        assert!(matches!(
            ban_lk(&mut s, &a, 1.0, &mut bans),
            super::Lookup::Miss
        ));
        assert_eq!(
            (bans.checks, s.stats().n_banned, s.stats().n_object),
            (1, 1, 1)
        );
        let hit = |l: super::Lookup| matches!(l, super::Lookup::Hit(_));
        assert!(hit(ban_lk(&mut s, &b, 1.0, &mut bans)));
        assert!(hit(ban_lk(&mut s, &b, 1.0, &mut bans)));
        assert_eq!(bans.checks, 2, "a clean object is tested once");
        assert_eq!(s.ban_refs(), vec![(1, 1)]);
        assert!(s.ban_refs_dirty());
        s.ban_refs_reported();
        assert!(!s.ban_refs_dirty());
        // Stored after ban 1 is known: checkpoint 1, not tested against it.
        s.set_ban_newest(1);
        s.insert(&a, tagged(1.0, 100.0, 1), 1.0);
        assert!(hit(ban_lk(&mut s, &a, 2.0, &mut bans)));
        assert_eq!(bans.checks, 2);
        assert_eq!(s.ban_refs(), vec![(1, 2)]);
        assert_eq!(s.oldest_ban_checkpoint(), Some(1));
        // Ban 2 bans xid 2: gone at its next lookup.
        bans.newest = 2;
        bans.banned = vec![2];
        assert!(matches!(
            ban_lk(&mut s, &b, 2.0, &mut bans),
            super::Lookup::Miss
        ));
        assert_eq!(s.stats().n_banned, 2);
        // A banned expired object is not a grace candidate either.
        let g = key("/g");
        s.set_ban_newest(2);
        s.insert_unbusy(&g, tagged(0.0, 1.0, 7), 0.0);
        bans.newest = 3;
        bans.banned = vec![7];
        assert!(matches!(
            ban_lk(&mut s, &g, 5.0, &mut bans),
            super::Lookup::Miss
        ));
    }

    // Goal: the sweep goes round the queue within its budget, removes banned objects, moves
    // the others' checkpoints, and does nothing once every object is up to date.
    #[test]
    fn ban_sweep() {
        let mut s = store();
        let keys: Vec<CacheKey> = (0..10).map(|i| key(&format!("/{i}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            s.insert_unbusy(k, tagged(0.0, 100.0, i as u64), 0.0);
        }
        let mut bans = XidBans {
            newest: 1,
            banned: vec![3, 7],
            checks: 0,
        };
        assert_eq!(s.sweep_bans(&mut bans, 4), 4);
        assert_eq!(s.stats().n_banned, 1);
        assert_eq!(s.sweep_bans(&mut bans, 4), 4);
        assert_eq!(s.sweep_bans(&mut bans, 4), 2);
        assert_eq!(s.stats().n_banned, 2);
        assert_eq!(s.stats().n_object, 8);
        assert_eq!(s.ban_refs(), vec![(1, 8)]);
        assert_eq!(s.sweep_bans(&mut bans, 100), 0);
        assert_eq!(bans.checks, 10);
        assert!(matches!(
            lk(&mut s, &keys[3], &req(), 1.0, None, 0).0,
            Lookup::Miss
        ));
    }
}
