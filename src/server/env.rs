//! What the VCL interpreter asks the running server: backend health and director choices.
//!
//! Why here and not in `vcl`: the interpreter is pure; health lives on the board the poller
//! writes, and a director's choice depends on it. [`Running`] answers with a few atomic loads
//! per backend, so `std.healthy` in `vcl_recv` costs a shard nothing.

use std::sync::Arc;

use crate::health::Health;
use crate::vcl::exec::{BackendRef, Ctx, Env, Outcome, VclFailure};
use crate::vcl::program::{BackendId, Method};
use crate::vcl::LoadedVcl;

/// The VCL a request runs on, with the board its health questions read. A request keeps the
/// one it started with to its end, even when `vcl.use` switches meanwhile.
pub struct Running {
    pub vcl: Arc<LoadedVcl>,
    pub health: Arc<Health>,
}

/// Bound on directors nested in directors (a cycle is impossible after vcl_init, but cheap to
/// fence).
const MAX_DIRECTOR_DEPTH: usize = 8;

impl Env for Running {
    fn healthy(&self, be: BackendRef, _now: f64) -> bool {
        self.resolve(be).is_some()
    }

    fn resolve_backend(&self, be: BackendRef) -> Option<BackendRef> {
        self.resolve(be).map(BackendRef::Backend)
    }
}

impl Running {
    /// The backend a request for `be` goes to: a plain backend if it is healthy, for a
    /// director its first healthy member (the directors issue adds the other policies).
    /// `None`: nothing healthy, and the fetch fails as Varnish's does ("unhealthy" → 503).
    pub fn resolve(&self, be: BackendRef) -> Option<BackendId> {
        self.resolve_at(be, 0)
    }

    fn resolve_at(&self, be: BackendRef, depth: usize) -> Option<BackendId> {
        match be {
            BackendRef::Backend(id) => self
                .health
                .board
                .healthy(self.vcl.backends.get(id)?.slot)
                .then_some(id),
            BackendRef::Director(obj) if depth < MAX_DIRECTOR_DEPTH => self
                .vcl
                .directors
                .get(obj)?
                .members
                .iter()
                .find_map(|m| self.resolve_at(*m, depth + 1)),
            BackendRef::Director(_) => None,
        }
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
    if !ctx.log.is_empty() {
        for line in ctx.log.drain(..) {
            eprintln!("VCL_Log {xid} {line}");
        }
    }
    if let Err(e) = &r {
        shard.counters().inc(crate::stats::C::vcl_fail);
        eprintln!("VCL_Error {xid} {e}");
    }
    r
}
