//! What the VCL interpreter asks the running server: backend health and director choices.
//!
//! Why here and not in `vcl`: the interpreter is pure; health lives on the board the poller
//! writes, and a director's choice depends on it. [`Running`] answers with a few atomic loads
//! per backend, so `std.healthy` in `vcl_recv` costs a shard nothing. Directors pick through
//! the pure functions of `crate::director`; what they need beyond the VCL's configuration is
//! kept here, per shard: round-robin and least-connections cursors and a random generator. The
//! count of fetches in flight per backend (least_connections, `.max_connections`) is shared by
//! all shards: an atomic on the VCL's backend (`server::conn_slot`).
//!
//! Failover: a fetch whose backend refused it (connect failed, busy, held down) resolves its
//! director again with that backend's slot in a *skip list*; skipped slots count as sick for
//! that resolution only, so every policy (round-robin, fallback order, hash weights, the shard
//! ring's next alternative) picks its own next candidate.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::director::{self, fallback, hash, least_connections, random, round_robin, shard};
use crate::health::Health;
use crate::vcl::exec::{BackendRef, Ctx, Env, Outcome, Site, Value, VclFailure};
use crate::vcl::loaded::{shard_call, strands_arg, DirectorRt, ShardBy, ShardCall};
use crate::vcl::program::{BackendId, Method, ObjId, ObjectKind};
use crate::vcl::symbols::Func;
use crate::vcl::LoadedVcl;

/// The VCL a request runs on, with the board its health questions read. A request keeps the
/// one it started with to its end, even when `vcl.use` switches meanwhile. One per shard (in an
/// `Rc`): the director state it holds is this shard's.
pub struct Running {
    pub vcl: Arc<LoadedVcl>,
    pub health: Arc<Health>,
    /// Per director (by object id): this shard's round-robin or least-connections cursor.
    cursors: Box<[Cell<u32>]>,
    /// State of this shard's generator for the random director and the shard director's
    /// rampup/warmup draws.
    rng: Cell<u64>,
}

impl Running {
    /// `seed` decorrelates the shards' random draws (any value).
    pub fn new(vcl: Arc<LoadedVcl>, health: Arc<Health>, seed: u64) -> Running {
        let cursors = (0..vcl.directors.len()).map(|_| Cell::new(0)).collect();
        Running {
            vcl,
            health,
            cursors,
            rng: Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }
}

/// A site for resolutions that have none (`.resolve()` without context).
const NO_SITE: Site<'static> = Site {
    sub: Method::BackendFetch,
    url: None,
    hash: None,
    now: 0.0,
};

impl Env for Running {
    fn healthy(&self, be: BackendRef, _now: f64) -> bool {
        self.is_healthy(be)
    }

    fn resolve_backend(&self, be: BackendRef) -> Option<BackendRef> {
        self.resolve(be, &NO_SITE, &[]).map(BackendRef::Backend)
    }

    fn resolve_at(&self, be: BackendRef, site: &Site<'_>) -> Option<BackendRef> {
        self.resolve(be, site, &[]).map(BackendRef::Backend)
    }

    fn object_call(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
        site: &Site<'_>,
    ) -> Result<Value<'static>, String> {
        let short = method.name.rsplit('.').next().unwrap_or(method.name);
        let name = self.vcl.program.objects.get(obj).map_or("", |o| &*o.name);
        match (kind, short) {
            (ObjectKind::Hash, "backend") => {
                let d = self.director(obj)?;
                let key = strands_arg(args, 0);
                Ok(Value::Backend(hash::pick(
                    &d.members,
                    &d.weights,
                    &[key],
                    |m| self.is_healthy(m),
                )))
            }
            (ObjectKind::Shard, "backend") => match shard_call(name, args, site.sub)? {
                ShardCall::Lazy => Ok(Value::Backend(Some(BackendRef::Director(obj)))),
                ShardCall::Now { by, params } => {
                    Ok(Value::Backend(self.shard_pick(obj, by, params, site, &[])))
                }
            },
            (ObjectKind::Shard, "key") => {
                Ok(Value::Int(i64::from(director::hash32(&[strands_arg(
                    args, 0,
                )]))))
            }
            (_, "backend") => Ok(Value::Backend(Some(BackendRef::Director(obj)))),
            (
                _,
                "add_backend" | "remove_backend" | "reconfigure" | "clear" | "set_warmup"
                | "set_rampup",
            ) => Err(format!(
                "{name}.{short}(): ringcache changes directors in vcl_init only"
            )),
            _ => Ok(Value::Void),
        }
    }
}

impl Running {
    /// The backend a request for `be` goes to: a plain backend if it is healthy; a director's
    /// pick by its policy, resolved again while it is a director (layering). `site` gives the
    /// shard director its key (at fetch time: `bereq.url` and, for a cache fetch, the hash
    /// inputs). `skip`: backend slots taken as sick for this resolution (failover). `None`:
    /// nothing healthy, and the fetch fails as Varnish's does (503).
    pub fn resolve(&self, be: BackendRef, site: &Site<'_>, skip: &[usize]) -> Option<BackendId> {
        self.resolve_from(be, site, skip, 0)
    }

    fn resolve_from(
        &self,
        be: BackendRef,
        site: &Site<'_>,
        skip: &[usize],
        depth: usize,
    ) -> Option<BackendId> {
        match be {
            BackendRef::Backend(id) => self.backend_healthy(id, skip).then_some(id),
            BackendRef::Director(obj) if depth < director::MAX_DEPTH => {
                let m = self.pick(obj, site, skip, depth)?;
                self.resolve_from(m, site, skip, depth + 1)
            }
            BackendRef::Director(_) => None,
        }
    }

    /// `std.healthy(be)`: a backend's board state, a director's "any member healthy".
    pub fn is_healthy(&self, be: BackendRef) -> bool {
        self.healthy_skipping(be, &[])
    }

    /// [`Self::is_healthy`] with the slots in `skip` taken as sick.
    fn healthy_skipping(&self, be: BackendRef, skip: &[usize]) -> bool {
        let board = &self.health.board;
        self.vcl
            .healthy_with(be, &|slot| board.healthy(slot) && !skip.contains(&slot))
    }

    fn backend_healthy(&self, id: BackendId, skip: &[usize]) -> bool {
        self.vcl
            .backends
            .get(id)
            .is_some_and(|b| self.health.board.healthy(b.slot) && !skip.contains(&b.slot))
    }

    fn director(&self, obj: ObjId) -> Result<&DirectorRt, String> {
        self.vcl
            .directors
            .get(obj)
            .ok_or_else(|| format!("unknown director #{obj}"))
    }

    /// Director `obj`'s member for this request (not resolved further), by its policy.
    fn pick(
        &self,
        obj: ObjId,
        site: &Site<'_>,
        skip: &[usize],
        depth: usize,
    ) -> Option<BackendRef> {
        let d = self.vcl.directors.get(obj)?;
        let healthy = |m: BackendRef| self.healthy_skipping(m, skip);
        let members = &d.members;
        match d.kind? {
            ObjectKind::RoundRobin => {
                let cell = self.cursors.get(obj)?;
                let mut c = cell.get();
                let m = round_robin::pick(members, &mut c, healthy);
                cell.set(c);
                m
            }
            ObjectKind::Fallback => {
                let before = d.current.load(Ordering::Relaxed);
                let mut cur = before;
                let m = fallback::pick(members, d.sticky, &mut cur, healthy);
                // A failover's pick is for one fetch: it does not move a sticky fallback.
                if d.sticky && cur != before && skip.is_empty() {
                    d.current.store(cur, Ordering::Relaxed);
                }
                m
            }
            ObjectKind::Random => random::pick(members, &d.weights, self.draw(), healthy),
            ObjectKind::LeastConnections => {
                let cell = self.cursors.get(obj)?;
                let mut c = cell.get();
                let m = least_connections::pick(members, &mut c, healthy, |m| {
                    self.in_use_of(m, depth + 1)
                });
                cell.set(c);
                m
            }
            // Resolved lazily: Varnish's defaults (by=HASH, alt=0, rampup, healthy=CHOSEN).
            ObjectKind::Shard => {
                self.shard_pick(obj, ShardBy::Hash, shard::Params::for_key(0), site, skip)
            }
            // Varnish's hash director has no resolve of its own: `.backend(key)` picks at once.
            ObjectKind::Hash | ObjectKind::ShardParam => None,
        }
    }

    /// A shard director's pick with `params` (its key taken from `by` at `site`).
    fn shard_pick(
        &self,
        obj: ObjId,
        by: ShardBy,
        mut params: shard::Params,
        site: &Site<'_>,
        skip: &[usize],
    ) -> Option<BackendRef> {
        let sh = self.vcl.directors.get(obj)?.shard.as_deref()?;
        params.key = by.key(site);
        let changed = |m: BackendRef| self.changed(m);
        let mut draw = || self.draw();
        let mut dice = shard::Dice {
            now: site.now,
            changed: &changed,
            draw: &mut draw,
        };
        sh.pick(&params, |m| self.healthy_skipping(m, skip), &mut dice)
    }

    /// When `be`'s health last changed (a director: never), for the shard director's rampup.
    fn changed(&self, be: BackendRef) -> f64 {
        match be {
            BackendRef::Backend(id) => self
                .vcl
                .backends
                .get(id)
                .map_or(0.0, |b| self.health.board.changed(b.slot)),
            BackendRef::Director(_) => 0.0,
        }
    }

    /// Fetches in flight to `be` on all shards (a director: the sum over its members).
    fn in_use_of(&self, be: BackendRef, depth: usize) -> u32 {
        match be {
            BackendRef::Backend(id) => self
                .vcl
                .backends
                .get(id)
                .map_or(0, |b| b.in_use.load(Ordering::Relaxed)),
            BackendRef::Director(_) if depth >= director::MAX_DEPTH => 0,
            BackendRef::Director(obj) => self.vcl.directors.get(obj).map_or(0, |d| {
                d.members
                    .iter()
                    .map(|m| self.in_use_of(*m, depth + 1))
                    .fold(0u32, u32::saturating_add)
            }),
        }
    }

    /// The next draw in [0, 1) of this shard's generator.
    fn draw(&self) -> f64 {
        let mut s = self.rng.get();
        let r = random::next_unit(&mut s);
        self.rng.set(s);
        r
    }
}

/// Runs VCL method `m` on `ctx`: `std.log` lines go to stderr as `VCL_Log <xid> <text>`, a
/// failure is counted (`vcl_fail`) and logged as `VCL_Error <xid> <sub>: <message>`.
pub fn call_vcl(
    shard: &super::shard::Shard,
    run: &Running,
    ctx: &mut Ctx<'_>,
    m: Method,
    xid: u64,
) -> Result<Outcome, VclFailure> {
    let r = crate::vcl::exec::run(&run.vcl.program, m, ctx);
    shard.apply_vcl_bans(ctx.bans.get_mut(), xid);
    if !ctx.log.is_empty() {
        for line in ctx.log.drain(..) {
            crate::logs::emit("VCL_Log", format!("VCL_Log {xid} {line}"));
        }
    }
    if let Err(e) = &r {
        shard.counters().inc(crate::stats::C::vcl_fail);
        crate::logs::emit("VCL_Error", format!("VCL_Error {xid} {e}"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Arc<LoadedVcl> {
        Arc::new(LoadedVcl::from_text("t.vcl", text).expect("loads").0)
    }

    fn running(vcl: Arc<LoadedVcl>) -> Running {
        Running::new(vcl, Arc::new(Health::new()), 1)
    }

    fn site(url: &'static str) -> Site<'static> {
        Site {
            sub: Method::BackendFetch,
            url: Some(url.as_bytes()),
            hash: None,
            now: 1000.0,
        }
    }

    const BACKENDS: &str = "vcl 4.1;\nimport directors;\n\
        backend a { .host = \"127.0.0.1\"; .port = \"1001\"; }\n\
        backend b { .host = \"127.0.0.1\"; .port = \"1002\"; }\n\
        backend c { .host = \"127.0.0.1\"; .port = \"1003\"; }\n";

    fn names(run: &Running, obj: ObjId, n: usize) -> String {
        (0..n)
            .map(
                |_| match run.resolve(BackendRef::Director(obj), &site("/x"), &[]) {
                    Some(id) => run.vcl.backends[id].name.to_string(),
                    None => "-".into(),
                },
            )
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn round_robin_per_shard_and_health_from_the_board() {
        let v = load(&format!(
            "{BACKENDS}sub vcl_init {{ new rr = directors.round_robin(); rr.add_backend(a); \
             rr.add_backend(b); rr.add_backend(c); }}\n\
             sub vcl_recv {{ set req.backend_hint = rr.backend(); }}\n"
        ));
        let r1 = running(v.clone());
        assert_eq!(names(&r1, 0, 4), "a b c a");
        let r2 = Running::new(v.clone(), r1.health.clone(), 2);
        assert_eq!(names(&r2, 0, 2), "a b", "another shard has its own cursor");
        r1.health.board.set_probe(v.backends[1].slot, false);
        assert_eq!(names(&r1, 0, 3), "c a c");
        assert!(r1.is_healthy(BackendRef::Director(0)));
        for b in &v.backends {
            r1.health.board.set_probe(b.slot, false);
        }
        assert_eq!(names(&r1, 0, 2), "- -");
        assert!(!r1.is_healthy(BackendRef::Director(0)));
    }

    #[test]
    fn layered_fallback_of_round_robins() {
        let v = load(&format!(
            "{BACKENDS}backend d {{ .host = \"127.0.0.1\"; .port = \"1004\"; }}\n\
             sub vcl_init {{\n\
               new dc1 = directors.round_robin(); dc1.add_backend(a); dc1.add_backend(b);\n\
               new dc2 = directors.round_robin(); dc2.add_backend(c); dc2.add_backend(d);\n\
               new dcprio = directors.fallback(); dcprio.add_backend(dc1); dcprio.add_backend(dc2);\n\
             }}\n\
             sub vcl_recv {{ set req.backend_hint = dcprio.backend(); }}\n"
        ));
        let r = running(v.clone());
        assert_eq!(names(&r, 2, 4), "a b a b");
        r.health.board.set_probe(v.backends[0].slot, false);
        assert_eq!(names(&r, 2, 2), "b b");
        r.health.board.set_probe(v.backends[1].slot, false);
        assert_eq!(names(&r, 2, 3), "c d c");
        r.health.board.set_probe(v.backends[0].slot, true);
        assert_eq!(names(&r, 2, 2), "a a", "non-sticky: back to dc1");
    }

    #[test]
    fn sticky_fallback_is_shared_by_shards() {
        let v = load(&format!(
            "{BACKENDS}sub vcl_init {{ new fb = directors.fallback(sticky = true); \
             fb.add_backend(a); fb.add_backend(b); fb.add_backend(c); }}\n\
             sub vcl_recv {{ set req.backend_hint = fb.backend(); }}\n"
        ));
        let r1 = running(v.clone());
        let r2 = Running::new(v.clone(), r1.health.clone(), 2);
        r1.health.board.set_probe(v.backends[0].slot, false);
        assert_eq!(names(&r1, 0, 1), "b");
        r1.health.board.set_probe(v.backends[0].slot, true);
        assert_eq!(names(&r2, 0, 1), "b", "the other shard sticks to b too");
    }

    #[test]
    fn least_connections_follows_in_use_counts() {
        let v = load(&format!(
            "{BACKENDS}sub vcl_init {{ new lc = directors.least_connections(); \
             lc.add_backend(a); lc.add_backend(b); lc.add_backend(c); }}\n\
             sub vcl_recv {{ set req.backend_hint = lc.backend(); }}\n"
        ));
        let r = running(v.clone());
        let busy = |i: usize, n: u32| v.backends[i].in_use.store(n, Ordering::Relaxed);
        busy(0, 1);
        busy(1, 2);
        assert_eq!(names(&r, 0, 2), "c c");
        busy(2, 2);
        assert_eq!(names(&r, 0, 1), "a");
        busy(0, 0);
        busy(1, 1);
        busy(2, 1);
        assert_eq!(names(&r, 0, 1), "a");
    }

    #[test]
    fn failover_skips_slots_in_every_policy() {
        let v = load(&format!(
            "{BACKENDS}sub vcl_init {{\n\
               new rr = directors.round_robin(); rr.add_backend(a); rr.add_backend(b); rr.add_backend(c);\n\
               new fb = directors.fallback(sticky = true); fb.add_backend(a); fb.add_backend(b); fb.add_backend(c);\n\
               new sh = directors.shard(); sh.add_backend(a); sh.add_backend(b); sh.add_backend(c); sh.reconfigure();\n\
             }}\n\
             sub vcl_recv {{ set req.backend_hint = rr.backend(); }}\n"
        ));
        let r = running(v.clone());
        let slot = |i: usize| v.backends[i].slot;
        let s = site("/k");
        // fallback: a skipped first member gives the second, without moving the sticky cursor.
        let fb = BackendRef::Director(1);
        assert_eq!(r.resolve(fb, &s, &[slot(0)]), Some(1));
        assert_eq!(r.resolve(fb, &s, &[slot(0), slot(1)]), Some(2));
        assert_eq!(r.resolve(fb, &s, &[]), Some(0), "sticky member unchanged");
        assert_eq!(r.resolve(fb, &s, &[slot(0), slot(1), slot(2)]), None);
        // round-robin: never the skipped one.
        let rr = BackendRef::Director(0);
        for _ in 0..6 {
            assert_ne!(r.resolve(rr, &s, &[slot(1)]), Some(1));
        }
        // shard: the ring's next alternative, stable for the key.
        let sh = BackendRef::Director(2);
        let first = r.resolve(sh, &s, &[]).expect("a backend");
        let next = r.resolve(sh, &s, &[slot(first)]).expect("another");
        assert_ne!(first, next);
        assert_eq!(r.resolve(sh, &s, &[slot(first)]), Some(next));
        // A plain backend has no candidate but itself.
        assert_eq!(r.resolve(BackendRef::Backend(0), &s, &[slot(0)]), None);
    }

    #[test]
    fn shard_lazy_and_now() {
        let v = load(&format!(
            "{BACKENDS}sub vcl_init {{ new sh = directors.shard(); sh.add_backend(a); \
             sh.add_backend(b); sh.add_backend(c); sh.reconfigure(); }}\n\
             sub vcl_recv {{ set req.backend_hint = sh.backend(by=URL); }}\n"
        ));
        assert!(v.has_shard);
        assert_eq!(v.directors[0].members.len(), 3);
        let r = running(v.clone());
        // Lazy resolution hashes the URL (no hash inputs): stable per URL.
        let lazy = |url: &'static str| r.resolve(BackendRef::Director(0), &site(url), &[]);
        for i in 0..20 {
            let url: &'static str = Box::leak(format!("/u{i}").into_boxed_str());
            assert_eq!(lazy(url), lazy(url));
        }
        // With hash inputs on the backend side, by=HASH uses the digest.
        let key = b"/u1\0example.com\0";
        let s = Site {
            hash: Some(key),
            ..site("/u1")
        };
        let want = director::digest_key(key);
        let sh = v.directors[0].shard.as_deref().expect("shard");
        let direct = sh.pick(
            &shard::Params::for_key(want),
            |_| true,
            &mut shard::Dice {
                now: 0.0,
                changed: &|_| 0.0,
                draw: &mut || 0.5,
            },
        );
        assert_eq!(
            r.resolve(BackendRef::Director(0), &s, &[])
                .map(BackendRef::Backend),
            direct
        );
    }
}
