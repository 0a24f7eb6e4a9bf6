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

use super::env::Running;
use super::shard::Shard;

/// The `VBE.fail_*` counter of a failed connect's errno (Varnish's `VBE_Connect_Error`).
pub fn connect_failure(errno: Option<i32>) -> Vbe {
    match errno {
        Some(libc::EACCES) | Some(libc::EPERM) => Vbe::fail_eacces,
        Some(libc::EADDRNOTAVAIL) => Vbe::fail_eaddrnotavail,
        Some(libc::ECONNREFUSED) => Vbe::fail_econnrefused,
        Some(libc::ENETUNREACH) => Vbe::fail_enetunreach,
        Some(libc::ETIMEDOUT) => Vbe::fail_etimedout,
        _ => Vbe::fail_other,
    }
}

impl Shard {
    /// This shard's counters of backend slot `slot` (`VBE.<vcl>.<backend>.*`); for hooks such
    /// as `shard.vbe(slot).inc(Vbe::busy)`.
    #[inline]
    pub fn vbe(&self, slot: usize) -> &VbeSlot {
        self.shared.stats.vbe_shard(self.id).slot(slot)
    }

    /// A fetch to backend `id` of `run` is not attempted because it is sick (`VBE.unhealthy`;
    /// `MAIN.backend_unhealthy` is counted where the choice is made). A director with no
    /// healthy member counts nothing (Varnish: "no backend").
    pub fn count_unhealthy(&self, run: &Running, id: usize) {
        if let Some(be) = run.vcl.backends.get(id) {
            self.vbe(be.slot).inc(Vbe::unhealthy);
        }
    }

    /// A backend request to slot `slot` ended as `r`: unless no connection could be had, it
    /// went out (`MAIN.backend_req`, `VBE.req`) with its bytes (`(wire, body)`: in all, and
    /// of them the body).
    pub fn count_bereq<T>(
        &self,
        slot: usize,
        r: &Result<T, FetchError>,
        (wire_len, body_len): (usize, usize),
    ) {
        if matches!(r, Err(FetchError::Connect(_) | FetchError::ConnectTimeout)) {
            return;
        }
        self.counters().inc(C::backend_req);
        let v = self.vbe(slot);
        v.inc(Vbe::req);
        v.add(
            Vbe::bereq_hdrbytes,
            wire_len.saturating_sub(body_len) as u64,
        );
        v.add(Vbe::bereq_bodybytes, body_len as u64);
    }

    /// A fetch to slot `slot` failed before a response: a connection that could not be opened
    /// is `VBE.fail` and one of its `fail_*` reasons (`MAIN.backend_fail` is counted where the
    /// connect failed); a fetch refused at `.max_connections` is `VBE.busy`, one not tried
    /// during a holddown `VBE.helddown` (their `MAIN` counters are counted where they happen).
    pub fn count_fetch_error(&self, slot: usize, e: &FetchError) {
        let v = self.vbe(slot);
        let why = match e {
            FetchError::Busy => return v.inc(Vbe::busy),
            FetchError::HeldDown => return v.inc(Vbe::helddown),
            FetchError::ConnectTimeout => Vbe::fail_etimedout,
            FetchError::Connect(io) => connect_failure(io.raw_os_error()),
            _ => return,
        };
        v.inc(Vbe::fail);
        v.inc(why);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_map_to_varnish_fail_counters() {
        assert_eq!(
            connect_failure(Some(libc::ECONNREFUSED)),
            Vbe::fail_econnrefused
        );
        assert_eq!(connect_failure(Some(libc::EPERM)), Vbe::fail_eacces);
        assert_eq!(connect_failure(Some(libc::ETIMEDOUT)), Vbe::fail_etimedout);
        assert_eq!(
            connect_failure(Some(libc::ENETUNREACH)),
            Vbe::fail_enetunreach
        );
        assert_eq!(
            connect_failure(Some(libc::EADDRNOTAVAIL)),
            Vbe::fail_eaddrnotavail
        );
        assert_eq!(connect_failure(Some(libc::EIO)), Vbe::fail_other);
        assert_eq!(connect_failure(None), Vbe::fail_other);
    }
}
