//! Counting hooks of the fetch path: what a fetch adds to `MAIN.*` and `VBE.*`, one call per
//! event, so the state machines (`fetch_fsm`, `deliver`) each carry a single line per hook.
//!
//! Why here: the rules (which `fetch_*` a response is, what makes a backend count as
//! unhealthy, which bytes count where) are Varnish's and are kept in one place; every hook
//! writes only this shard's counters (`MAIN` and the backend slot's `VBE` block).

use bytes::Bytes;

use crate::backend::fetch::{FetchError, Fetched};
use crate::stats::vbe::VbeSlot;
use crate::stats::{Vbe, C};
use crate::vcl::exec::BackendRef;

use super::env::Running;
use super::shard::Shard;

impl Shard {
    /// This shard's counters of backend slot `slot` (`VBE.<vcl>.<backend>.*`); for hooks such
    /// as `shard.vbe(slot).inc(Vbe::busy)`.
    #[inline]
    pub fn vbe(&self, slot: usize) -> &VbeSlot {
        self.shared.stats.vbe_shard(self.id).slot(slot)
    }

    /// `bereq.backend` gave no backend to fetch from. A plain backend that is sick counts as
    /// Varnish's `vbe_dir_getfd` counts it (`MAIN.backend_unhealthy`, `VBE.unhealthy`); a
    /// director with no healthy member counts nothing (Varnish: "no backend").
    pub fn count_unresolved(&self, run: &Running, backend: Option<BackendRef>) {
        let Some(BackendRef::Backend(id)) = backend else {
            return;
        };
        let Some(be) = run.vcl.backends.get(id) else {
            return;
        };
        if !run.health.board.healthy(be.slot) {
            self.counters().inc(C::backend_unhealthy);
            self.vbe(be.slot).inc(Vbe::unhealthy);
        }
    }

    /// A backend request goes out to slot `slot`: `VBE.req` and its bytes (`wire_len` in all,
    /// `body_len` of them the body).
    pub fn count_bereq(&self, slot: usize, wire_len: usize, body_len: usize) {
        let v = self.vbe(slot);
        v.inc(Vbe::req);
        v.add(
            Vbe::bereq_hdrbytes,
            wire_len.saturating_sub(body_len) as u64,
        );
        v.add(Vbe::bereq_bodybytes, body_len as u64);
    }

    /// A fetch to slot `slot` failed before a response: a connection that could not be opened
    /// is `VBE.fail` (`MAIN.backend_fail` is counted where the connect failed).
    pub fn count_fetch_error(&self, slot: usize, e: &FetchError) {
        if matches!(e, FetchError::Connect(_) | FetchError::ConnectTimeout) {
            self.vbe(slot).inc(Vbe::fail);
        }
    }

    /// A response head arrived from slot `slot`: its `fetch_*` counter (as Varnish counts it
    /// when the head is in, whatever happens to the body) and `VBE.beresp_hdrbytes`.
    pub fn count_beresp_head(&self, slot: usize, f: &Fetched, head_request: bool) {
        let kind = crate::stats::fetch_kind(head_request, f.head.status, f.body.framing());
        self.counters().inc(kind);
        self.vbe(slot)
            .add(Vbe::beresp_hdrbytes, f.head.head_len as u64);
    }

    /// `n` body bytes arrived from slot `slot` (`VBE.beresp_bodybytes`).
    pub fn count_beresp_body(&self, slot: usize, n: u64) {
        self.vbe(slot).add(Vbe::beresp_bodybytes, n);
    }

    /// [`Shard::count_beresp_body`] for a body read whole; hands the body back.
    pub fn counted_body(&self, slot: usize, body: Bytes) -> Bytes {
        self.count_beresp_body(slot, body.len() as u64);
        body
    }
}
