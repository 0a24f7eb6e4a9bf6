//! A shard: one thread, one io_uring runtime, one part of the cache, one set of backend pools.
//!
//! Why the owner does all cache bookkeeping: a key belongs to shard `hash(key) % shards`, and
//! only that shard looks it up, inserts it, evicts it and keeps its busy flag and waiting list.
//! That makes request coalescing global with no locks: N concurrent misses for one URL, on any
//! shards, meet at the owner, exactly one of them is told `Miss` (and fetches), the others park.
//! A request on another shard asks the owner with a message and gets back an `Arc<Object>`
//! whose body is written to its own client without copying.
//!
//! The fetch itself runs on the shard that holds the client (through its own pool), so an
//! uncacheable response streams straight to that client; the fetcher reports the outcome to the
//! owner (`Insert` or `Unbusy`), which wakes the waiters. A `BusyGuard` makes sure every busy
//! flag handed out is cleared exactly once, whatever path the fetcher takes.
//!
//! Runtime parameters and bans come from the control plane as published snapshots. A shard
//! keeps its own copy of each with the generation it had ([`Tuning`] for the parameters, the
//! ban snapshot for the bans), checks the generation with one atomic load where it needs the
//! value, and re-reads only when it moved, so `param.set` and `ban` reach every shard for the
//! next request without a lock on the request path. The owner tests bans at lookup, with the
//! request's URL and headers (sent along with a cross-shard lookup).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};

use crate::backend::fetch::FetchLimits;
use crate::backend::Pool;
use crate::cache::ban::{BanSnapshot, BanSpec, ReqView, Verdict};
use crate::cache::store::{BanFilter, Lookup, Store, StoreLimits};
use crate::cache::ttl::TtlParams;
use crate::cache::{CacheKey, Object};
use crate::http::date::DateCache;
use crate::http::request::Limits;
use crate::http::response::RespLimits;
use crate::http::Headers;
use crate::params::Params;
use crate::stats::{ShardCounters, C};

use super::env::Running;
use super::Shared;

/// What the owner tells a requester about its lookup.
#[derive(Debug)]
pub enum Reply {
    /// A fresh object and its `obj.hits` (counting this one).
    Hit(Arc<Object>, u64),
    /// A stale object to deliver now; with `bgfetch` the requester must also refresh it.
    Grace {
        stale: Arc<Object>,
        bgfetch: bool,
        hits: u64,
    },
    /// The requester holds the key's busy flag and must fetch, then report. A kept object, if
    /// any, makes the fetch conditional (a 304 refreshes it).
    Miss(Option<Arc<Object>>),
    /// Uncacheable (hit-for-miss): fetch without coalescing.
    HitMiss,
    HitPass,
    /// The waiting list is full.
    Overloaded,
    /// The fetch this request waited on failed: deliver this error object.
    Failed(Arc<Object>),
}

impl Reply {
    fn grants_busy(&self) -> bool {
        matches!(self, Reply::Miss(_) | Reply::Grace { bgfetch: true, .. })
    }
}

/// A lookup waiting for an answer: sent to the owner, or parked there on a busy key.
pub struct Pending {
    pub key: CacheKey,
    /// The request's URL (for `req.url` bans).
    pub url: Bytes,
    /// The request's headers (for Vary and `req.http.*` bans).
    pub headers: Headers,
    pub req_grace: Option<f64>,
    pub reply: oneshot::Sender<Reply>,
}

/// One snapshot of the runtime parameters, with what a shard derives from them. Derefs to
/// [`Params`], so `shard.params().send_timeout` reads like a field.
pub struct Tuning {
    pub params: Params,
    pub req_limits: Limits,
    pub fetch_limits: FetchLimits,
    pub ttl_params: TtlParams,
    /// `client_conn_max` split over the shards.
    pub conn_limit: u64,
}

impl Tuning {
    fn new(p: &Params, shards: usize) -> Tuning {
        Tuning {
            req_limits: Limits {
                req_size: p.http_req_size as usize,
                hdr_len: p.http_req_hdr_len as usize,
                max_hdr: p.http_max_hdr as usize,
            },
            fetch_limits: FetchLimits {
                connect: super::io::secs(p.connect_timeout),
                first_byte: super::io::secs(p.first_byte_timeout),
                between_bytes: super::io::secs(p.between_bytes_timeout),
                resp: RespLimits {
                    resp_size: p.http_resp_size as usize,
                    hdr_len: p.http_resp_hdr_len as usize,
                    max_hdr: p.http_max_hdr as usize,
                },
            },
            ttl_params: TtlParams {
                default_ttl: p.default_ttl,
                default_grace: p.default_grace,
                default_keep: p.default_keep,
                clock_skew: p.clock_skew as f64,
            },
            conn_limit: p.client_conn_max.div_ceil(shards as u64).max(1),
            params: p.clone(),
        }
    }
}

impl std::ops::Deref for Tuning {
    type Target = Params;
    fn deref(&self) -> &Params {
        &self.params
    }
}

/// The ban test of one lookup: the shard's ban snapshot and the request.
struct LookupBans<'a> {
    snap: &'a BanSnapshot,
    req: ReqView<'a>,
    counters: &'a ShardCounters,
}

impl BanFilter for LookupBans<'_> {
    fn newest(&self) -> u64 {
        self.snap.newest
    }
    fn check(&mut self, obj: &Object, checked: u64) -> Option<u64> {
        let mut tests = 0;
        let v = self.snap.check(obj, checked, self.req, &mut tests);
        self.counters.inc(C::bans_tested);
        self.counters.add(C::bans_tests_tested, tests);
        match v {
            Verdict::Banned => {
                self.counters.inc(C::bans_obj_killed);
                None
            }
            Verdict::Clean(c) => Some(c),
        }
    }
}

/// The background sweep's ban test (no request: `obj.*` bans only).
struct SweepBans<'a> {
    snap: &'a BanSnapshot,
    counters: &'a ShardCounters,
}

impl BanFilter for SweepBans<'_> {
    fn newest(&self) -> u64 {
        self.snap.newest
    }
    fn check(&mut self, obj: &Object, checked: u64) -> Option<u64> {
        let mut tests = 0;
        let v = self.snap.check_without_request(obj, checked, &mut tests);
        if tests > 0 {
            self.counters.inc(C::bans_lurker_tested);
            self.counters.add(C::bans_lurker_tests_tested, tests);
        }
        match v {
            Verdict::Banned => {
                self.counters.inc(C::bans_lurker_obj_killed);
                None
            }
            Verdict::Clean(c) => Some(c),
        }
    }
}

/// Objects the ban sweep tests per upkeep tick (4000 a second per shard).
const BAN_SWEEP_BUDGET: usize = 1000;

/// Messages between shards.
pub enum ShardMsg {
    Lookup(Pending),
    /// A fetch finished with an object (`busy`: the fetcher held the key's busy flag).
    Insert {
        key: CacheKey,
        obj: Arc<Object>,
        busy: bool,
    },
    /// A busy fetch failed or was abandoned. Waiters get `error` if given, else they retry.
    Unbusy {
        key: CacheKey,
        error: Option<Arc<Object>>,
    },
    /// `return (purge)`: remove every variant of `key`; the reply is how many were removed.
    Purge {
        key: CacheKey,
        reply: oneshot::Sender<usize>,
    },
    /// A connection of a backend at `.max_connections` was released somewhere: this shard's
    /// fetches waiting for one try again (`conn_slot`).
    ConnFreed,
    /// From the lifecycle thread: the drain has begun; close idle keep-alive connections.
    Drain,
}

/// Shard-local state. Lives in an `Rc` on its own thread.
pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    store: RefCell<Store<Pending>>,
    pub pool: RefCell<Pool>,
    xid: Cell<u64>,
    pub conns: Cell<u64>,
    date: RefCell<DateCache>,
    /// The parameters as this shard last saw them, with their generation.
    tuning: RefCell<(u64, Rc<Tuning>)>,
    /// The ban list as this shard last saw it, with its generation.
    bans: RefCell<(u64, Arc<BanSnapshot>)>,
    /// The newest ban this shard last reported to the control plane.
    bans_reported: Cell<Option<u64>>,
    /// Largest body stored in the cache; larger responses are streamed, not stored.
    pub object_max: usize,
    /// The active VCL as this shard last saw it, with the generation it had then.
    running: RefCell<(u64, Rc<Running>)>,
    /// This shard's fetches waiting for a connection under `.max_connections`, woken (all of
    /// them: each re-checks its own backend) by [`ShardMsg::ConnFreed`].
    pub conn_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Idle keep-alive connections waiting for their next request, woken at drain.
    idle: RefCell<slab::Slab<Waker>>,
}

impl Shard {
    pub fn new(id: usize, shared: Arc<Shared>) -> Shard {
        let params_gen = shared.params.generation();
        let tuning = Rc::new(Tuning::new(&shared.params.current(), shared.shards));
        let bans_gen = shared.bans.generation();
        let bans = shared.bans.snapshot();
        let p = &tuning.params;
        let capacity = (shared.storage_bytes / shared.shards as u64) as usize;
        let mut store = Store::new(StoreLimits {
            capacity_bytes: capacity,
            waiters_max: p.waitinglist_max as usize,
        });
        store.set_ban_newest(bans.newest);
        Shard {
            id,
            store: RefCell::new(store),
            pool: RefCell::new(Pool::new(
                p.backend_idle_max as usize,
                super::io::secs(p.backend_idle_timeout),
            )),
            xid: Cell::new(0),
            conns: Cell::new(0),
            date: RefCell::new(DateCache::new()),
            tuning: RefCell::new((params_gen, tuning)),
            bans: RefCell::new((bans_gen, bans)),
            bans_reported: Cell::new(None),
            object_max: (capacity / 2).max(1),
            running: RefCell::new((
                shared.active.generation(),
                Rc::new(Running::new(
                    shared.active.current(),
                    shared.health.clone(),
                    id as u64,
                )),
            )),
            conn_waiters: RefCell::new(Vec::new()),
            idle: RefCell::new(slab::Slab::new()),
            shared,
        }
    }

    /// A client connection was accepted.
    pub fn conn_opened(&self) {
        let n = self.conns.get() + 1;
        self.conns.set(n);
        self.shared.pulse.set_open(self.id, n);
    }

    /// A client connection ended.
    pub fn conn_closed(&self) {
        let n = self.conns.get().saturating_sub(1);
        self.conns.set(n);
        self.shared.pulse.set_open(self.id, n);
    }

    /// Has the drain begun? Responses then say `Connection: close`.
    #[inline]
    pub fn draining(&self) -> bool {
        self.shared.pulse.draining()
    }

    /// Completes when the drain begins (at once if it has): what an idle keep-alive
    /// connection waits on beside its read.
    pub fn drain_started(&self) -> DrainStarted<'_> {
        DrainStarted {
            shard: self,
            key: None,
        }
    }

    /// Wakes every idle connection; each removes its own entry when it sees the drain.
    fn wake_idle(&self) {
        for (_, w) in self.idle.borrow().iter() {
            w.wake_by_ref();
        }
    }

    /// The VCL a new request runs on: the active one. One relaxed load per request; the
    /// control plane's lock is taken only on the first request after a `vcl.use`.
    pub fn running(&self) -> Rc<Running> {
        let gen = self.shared.active.generation();
        let mut cur = self.running.borrow_mut();
        if cur.0 != gen {
            *cur = (
                gen,
                Rc::new(Running::new(
                    self.shared.active.current(),
                    self.shared.health.clone(),
                    self.id as u64,
                )),
            );
        }
        cur.1.clone()
    }

    /// The runtime parameters for what starts now: one atomic load, and a copy of the new
    /// snapshot only after a `param.set`.
    pub fn params(&self) -> Rc<Tuning> {
        let gen = self.shared.params.generation();
        let mut cur = self.tuning.borrow_mut();
        if cur.0 != gen {
            let t = Rc::new(Tuning::new(
                &self.shared.params.current(),
                self.shared.shards,
            ));
            self.apply_limits(&t);
            *cur = (gen, t);
        }
        cur.1.clone()
    }

    /// The backend timeouts and limits for a fetch that starts now.
    pub fn fetch_limits(&self) -> FetchLimits {
        self.params().fetch_limits
    }

    /// The TTL parameters for an object made now.
    pub fn ttl_params(&self) -> TtlParams {
        self.params().ttl_params
    }

    /// Hands the store and the pool their limits from `t` (best effort when they are in use:
    /// the upkeep tick applies them again).
    fn apply_limits(&self, t: &Tuning) {
        if let Ok(mut store) = self.store.try_borrow_mut() {
            store.set_waiters_max(t.waitinglist_max as usize);
        }
        if let Ok(mut pool) = self.pool.try_borrow_mut() {
            pool.set_limits(
                t.backend_idle_max as usize,
                super::io::secs(t.backend_idle_timeout),
            );
        }
    }

    /// Brings this shard's ban snapshot up to date (one atomic load when nothing changed).
    fn refresh_bans(&self) {
        let gen = self.shared.bans.generation();
        let mut cur = self.bans.borrow_mut();
        if cur.0 != gen {
            let snap = self.shared.bans.snapshot();
            self.store.borrow_mut().set_ban_newest(snap.newest);
            *cur = (gen, snap);
        }
    }

    /// Looks `key` up in this shard's store, testing candidates against the bans with the
    /// request's URL and headers.
    fn store_lookup(
        &self,
        key: &CacheKey,
        url: &[u8],
        headers: &Headers,
        now: f64,
        req_grace: Option<f64>,
    ) -> Lookup {
        self.refresh_bans();
        let bans = self.bans.borrow();
        let mut filter = LookupBans {
            snap: &bans.1,
            req: ReqView { url, headers },
            counters: self.counters(),
        };
        self.store
            .borrow_mut()
            .lookup_filtered(key, headers, now, req_grace, &mut filter)
    }

    /// Applies the bans a VCL method asked for (`ban()`, `std.ban()`); a bad one is logged
    /// as varnishd logs it and otherwise ignored.
    pub fn apply_vcl_bans(&self, bans: &mut Vec<Bytes>, xid: u64) {
        if bans.is_empty() {
            return;
        }
        for b in bans.drain(..) {
            match BanSpec::parse_vcl(&String::from_utf8_lossy(&b)) {
                Ok(spec) => {
                    self.shared.bans.add(spec);
                }
                Err(e) => crate::logs::emit("VCL_Error", format!("VCL_Error {xid} ban(): {e}")),
            }
        }
    }

    #[inline]
    pub fn counters(&self) -> &ShardCounters {
        self.shared.stats.shard(self.id)
    }

    /// A request id unique across shards (Varnish's vxid, shown in `X-Varnish`).
    pub fn next_xid(&self) -> u64 {
        let seq = self.xid.get() + 1;
        self.xid.set(seq);
        seq * self.shared.shards as u64 + self.id as u64
    }

    /// The current `Date` header value.
    pub fn date(&self, unix: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.date.borrow_mut().get(unix));
    }

    // ---------------------------------------------------------------------------------------
    // Requester side.

    /// Looks `key` up at its owner (here or on another shard), waiting if it is busy.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        url: &Bytes,
        headers: &Headers,
        req_grace: Option<f64>,
    ) -> Reply {
        let owner = key.owner(self.shared.shards);
        if owner == self.id {
            let now = unix_now();
            let l = self.store_lookup(key, url, headers, now, req_grace);
            let rx = match l {
                Lookup::Busy => {
                    let (tx, rx) = oneshot::channel();
                    let pending = Pending {
                        key: key.clone(),
                        url: url.clone(),
                        headers: headers.clone(),
                        req_grace,
                        reply: tx,
                    };
                    if let Err(p) = self.store.borrow_mut().park(key, pending) {
                        drop(p);
                        self.counters().inc(C::busy_killed);
                        return Reply::Overloaded;
                    }
                    self.counters().inc(C::busy_sleep);
                    rx
                }
                other => return self.to_reply(other, key, headers, now),
            };
            // Woken by the owner (counted there, as each parked lookup leaves the list).
            return rx.await.unwrap_or(Reply::Overloaded);
        }
        self.counters().inc(C::shard_hop);
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Lookup(Pending {
            key: key.clone(),
            url: url.clone(),
            headers: headers.clone(),
            req_grace,
            reply: tx,
        });
        if self.shared.inboxes[owner].unbounded_send(msg).is_err() {
            return Reply::Overloaded;
        }
        rx.await.unwrap_or(Reply::Overloaded)
    }

    /// Reports a finished fetch to the key's owner.
    pub fn report_insert(&self, key: CacheKey, obj: Arc<Object>, busy: bool) {
        let owner = key.owner(self.shared.shards);
        if owner == self.id {
            self.owner_insert(&key, obj, busy);
        } else {
            let _ = self.shared.inboxes[owner].unbounded_send(ShardMsg::Insert { key, obj, busy });
        }
    }

    /// Reports a failed or abandoned busy fetch to the key's owner.
    pub fn report_unbusy(&self, key: CacheKey, error: Option<Arc<Object>>) {
        let owner = key.owner(self.shared.shards);
        if owner == self.id {
            self.owner_unbusy(&key, error);
        } else {
            let _ = self.shared.inboxes[owner].unbounded_send(ShardMsg::Unbusy { key, error });
        }
    }

    /// Removes every variant of `key` at its owner; returns how many objects went.
    pub async fn purge(&self, key: &CacheKey) -> usize {
        let owner = key.owner(self.shared.shards);
        if owner == self.id {
            return self.owner_purge(key);
        }
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Purge {
            key: key.clone(),
            reply: tx,
        };
        if self.shared.inboxes[owner].unbounded_send(msg).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    // ---------------------------------------------------------------------------------------
    // Owner side.

    fn owner_purge(&self, key: &CacheKey) -> usize {
        let n = self.store.borrow_mut().purge(key);
        self.update_gauges();
        n
    }

    /// Handles one message from another shard.
    pub fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Lookup(p) => {
                self.counters().inc(C::shard_hop_answered);
                // The common case answers at once; the work list (and its allocation) is only
                // needed when a dropped requester hands back a busy flag.
                let mut more = VecDeque::new();
                self.answer(p, unix_now(), &mut more);
                if !more.is_empty() {
                    self.rush(more);
                }
            }
            ShardMsg::Insert { key, obj, busy } => self.owner_insert(&key, obj, busy),
            ShardMsg::Unbusy { key, error } => self.owner_unbusy(&key, error),
            ShardMsg::Purge { key, reply } => {
                let _ = reply.send(self.owner_purge(&key));
            }
            ShardMsg::ConnFreed => {
                for w in self.conn_waiters.take() {
                    let _ = w.send(());
                }
            }
            ShardMsg::Drain => self.wake_idle(),
        }
    }

    fn owner_insert(&self, key: &CacheKey, obj: Arc<Object>, busy: bool) {
        // Stored objects start at the newest ban (as Varnish's HSH_Unbusy).
        self.refresh_bans();
        let now = unix_now();
        let waiters = if busy {
            self.store.borrow_mut().insert(key, obj, now)
        } else {
            self.store.borrow_mut().insert_unbusy(key, obj, now)
        };
        self.update_gauges();
        self.counters().add(C::busy_wakeup, waiters.len() as u64);
        self.rush(waiters.into());
    }

    fn owner_unbusy(&self, key: &CacheKey, error: Option<Arc<Object>>) {
        let waiters = self.store.borrow_mut().unbusy(key);
        self.counters().add(C::busy_wakeup, waiters.len() as u64);
        match error {
            Some(err) => {
                for w in waiters {
                    let _ = w.reply.send(Reply::Failed(err.clone()));
                }
            }
            None => self.rush(waiters.into()),
        }
    }

    /// Answers lookups (new ones, or parked ones after their key became un-busy), in order.
    /// An answer that grants the busy flag to a requester that has gone away is taken back, so
    /// the flag never leaks and the next waiter gets its turn.
    fn rush(&self, mut work: VecDeque<Pending>) {
        let now = unix_now();
        while let Some(p) = work.pop_front() {
            self.answer(p, now, &mut work);
        }
    }

    /// Answers one lookup; waiters freed by taking back an unclaimed busy flag go on `more`.
    fn answer(&self, p: Pending, now: f64, more: &mut VecDeque<Pending>) {
        let l = self.store_lookup(&p.key, &p.url, &p.headers, now, p.req_grace);
        let reply = match l {
            Lookup::Busy => {
                let key = p.key.clone();
                match self.store.borrow_mut().park(&key, p) {
                    Ok(()) => self.counters().inc(C::busy_sleep),
                    Err(p) => {
                        self.counters().inc(C::busy_killed);
                        let _ = p.reply.send(Reply::Overloaded);
                    }
                }
                return;
            }
            other => self.to_reply(other, &p.key, &p.headers, now),
        };
        let grants = reply.grants_busy();
        if p.reply.send(reply).is_err() && grants {
            let waiters = self.store.borrow_mut().unbusy(&p.key);
            self.counters().add(C::busy_wakeup, waiters.len() as u64);
            more.extend(waiters);
        }
    }

    fn to_reply(&self, l: Lookup, key: &CacheKey, headers: &Headers, now: f64) -> Reply {
        match l {
            Lookup::Hit(o) => Reply::Hit(o, self.store.borrow().last_hits()),
            Lookup::Grace { stale, bgfetch } => Reply::Grace {
                stale,
                bgfetch,
                hits: self.store.borrow().last_hits(),
            },
            Lookup::Miss => Reply::Miss(self.store.borrow().keep_candidate(key, headers, now)),
            Lookup::HitMiss => Reply::HitMiss,
            Lookup::HitPass(_) => Reply::HitPass,
            Lookup::Busy => Reply::Overloaded,
        }
    }

    /// Periodic upkeep: expiry, the ban sweep, idle backend connections, gauges, and what the
    /// control plane needs to retire bans.
    pub fn tick(&self) {
        let now = unix_now();
        // Parameters changed by param.set reach the store and the pool even on an idle shard.
        self.apply_limits(&self.params());
        self.store.borrow_mut().expire(now, 1000);
        self.sweep_bans();
        self.pool.borrow_mut().sweep(Instant::now());
        self.update_gauges();
        self.counters().set(C::sess_open, self.conns.get());
    }

    /// Tests some objects against the `obj.*` bans (Varnish's ban lurker), then tells the
    /// control plane where this shard's objects stand (never blocking: a busy slot is tried
    /// again at the next tick).
    fn sweep_bans(&self) {
        self.refresh_bans();
        let bans = self.bans.borrow();
        let mut filter = SweepBans {
            snap: &bans.1,
            counters: self.counters(),
        };
        let mut store = self.store.borrow_mut();
        store.sweep_bans(&mut filter, BAN_SWEEP_BUDGET);
        let newest = bans.1.newest;
        let changed = store.ban_refs_dirty() || self.bans_reported.get() != Some(newest);
        if changed && self.shared.bans.report(self.id, store.ban_refs(), newest) {
            store.ban_refs_reported();
            self.bans_reported.set(Some(newest));
        }
    }

    fn update_gauges(&self) {
        let s = self.store.borrow().stats();
        let c = self.counters();
        c.set(C::n_object, s.n_object as u64);
        c.set(C::storage_bytes, s.bytes_used as u64);
        c.set(C::n_expired, s.n_expired);
        c.set(C::n_lru_nuked, s.n_lru_nuked);
    }

    /// The largest number of client connections this shard keeps open (`client_conn_max`).
    pub fn conn_limit(&self) -> u64 {
        self.params().conn_limit
    }
}

/// See [`Shard::drain_started`]. Its waker is registered with the shard while it waits and
/// removed when it is dropped, so waiting costs one slab slot and nothing piles up.
pub struct DrainStarted<'s> {
    shard: &'s Shard,
    key: Option<usize>,
}

impl std::future::Future for DrainStarted<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shard.draining() {
            if let Some(k) = self.key.take() {
                self.shard.idle.borrow_mut().try_remove(k);
            }
            return Poll::Ready(());
        }
        let mut idle = self.shard.idle.borrow_mut();
        match self.key {
            Some(k) if idle.contains(k) => idle[k].clone_from(cx.waker()),
            _ => {
                let k = idle.insert(cx.waker().clone());
                drop(idle);
                self.key = Some(k);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainStarted<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.shard.idle.borrow_mut().try_remove(k);
        }
    }
}

/// Holds a key's busy flag for the fetcher; clears it on drop unless the fetch reported.
pub struct BusyGuard {
    shard: Rc<Shard>,
    key: Option<CacheKey>,
}

impl BusyGuard {
    pub fn new(shard: Rc<Shard>, key: CacheKey) -> BusyGuard {
        BusyGuard {
            shard,
            key: Some(key),
        }
    }

    /// The fetch produced an object (or a hit-for-miss marker).
    pub fn complete(mut self, obj: Arc<Object>) {
        if let Some(key) = self.key.take() {
            self.shard.report_insert(key, obj, true);
        }
    }

    /// The fetch failed; waiters get `error` (Varnish 7.1 hands them the error object).
    pub fn fail(mut self, error: Option<Arc<Object>>) {
        if let Some(key) = self.key.take() {
            self.shard.report_unbusy(key, error);
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.shard.report_unbusy(key, None);
        }
    }
}

/// Wall-clock seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the shard's inbox: messages from other shards, handled in arrival order.
pub async fn inbox_loop(shard: Rc<Shard>, mut rx: mpsc::UnboundedReceiver<ShardMsg>) {
    use futures_core::Stream;
    use std::pin::Pin;
    loop {
        let msg = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await;
        match msg {
            Some(m) => shard.handle(m),
            None => break,
        }
    }
}
