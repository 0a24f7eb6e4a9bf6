//! Per-backend counters (`VBE.<vcl>.<backend>.*`), kept per shard and per backend slot.
//!
//! Why per slot and not per VCL backend: in ringcache a backend declared identically by several
//! loaded VCLs is one slot, with one health, one probe and (by address) one connection pool, so
//! its traffic is one thing too; every VCL that declares it shows the slot's numbers under its
//! own name, as it shows the slot's health. Slots are reused after a VCL discard retires one, so
//! the control plane records the totals of a slot when it retires ([`VbeStats::rebase`]) and
//! reads later values relative to them: a backend new in a slot starts at zero.
//!
//! Why blocks allocated on first use: there can be [`MAX_SLOTS`] slots, but a shard only ever
//! writes the few it fetches from. Each shard has one table of lazily allocated blocks of 64
//! slots; the shard is the only writer of its blocks (plain load and store, as `MAIN`), the
//! control plane reads them with relaxed loads. A slot past [`MAX_SLOTS`] writes into a sink
//! nobody reads, so a hook can never panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::health::MAX_SLOTS;

crate::stats::counters!(Vbe, VBE_TABLE {
    happy: Bitmap(Bitmap) [plane], "Happy health probes (the last 64 pokes, newest in bit 0)";
    bereq_hdrbytes: Counter(Bytes), "Request header bytes sent";
    bereq_bodybytes: Counter(Bytes), "Request body bytes sent";
    beresp_hdrbytes: Counter(Bytes), "Response header bytes received";
    beresp_bodybytes: Counter(Bytes), "Response body bytes received";
    conn: Gauge [plane], "Connections in use (fetches and pipes holding one)";
    req: Counter, "Backend requests sent";
    unhealthy: Counter, "Fetches not attempted: backend unhealthy";
    busy: Counter, "Fetches not attempted: max_connections reached";
    fail: Counter, "Connections failed (the sum of the fail_* counters)";
    fail_eacces: Counter, "Connections failed with EACCES or EPERM";
    fail_eaddrnotavail: Counter, "Connections failed with EADDRNOTAVAIL";
    fail_econnrefused: Counter, "Connections failed with ECONNREFUSED";
    fail_enetunreach: Counter, "Connections failed with ENETUNREACH";
    fail_etimedout: Counter, "Connections failed with ETIMEDOUT (or connect_timeout)";
    fail_other: Counter, "Connections failed for another reason";
    helddown: Counter, "Connection opens not attempted during a holddown";
});

/// Number of per-backend counters.
pub const NV: usize = VBE_TABLE.len();

const BLOCK: usize = 64;
const BLOCKS: usize = MAX_SLOTS / BLOCK;

/// One slot's counters on one shard.
pub struct VbeSlot {
    values: [AtomicU64; NV],
}

impl Default for VbeSlot {
    fn default() -> Self {
        VbeSlot {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl VbeSlot {
    /// Adds `n`. Only the owning shard may call this (single writer: load + store, no RMW).
    #[inline]
    pub fn add(&self, c: Vbe, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self, c: Vbe) {
        self.add(c, 1);
    }

    /// Sets a gauge. Only the owning shard may call this.
    #[inline]
    pub fn set(&self, c: Vbe, n: u64) {
        self.values[c as usize].store(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: Vbe) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }
}

type Block = [VbeSlot; BLOCK];

/// One shard's per-slot counters.
pub struct VbeShard {
    blocks: Box<[OnceLock<Box<Block>>]>,
    /// Where writes for a slot past [`MAX_SLOTS`] go.
    sink: VbeSlot,
}

impl Default for VbeShard {
    fn default() -> Self {
        VbeShard {
            blocks: (0..BLOCKS).map(|_| OnceLock::new()).collect(),
            sink: VbeSlot::default(),
        }
    }
}

impl VbeShard {
    /// Slot `slot`'s counters on this shard, allocated on first use. Only the owning shard
    /// calls this.
    #[inline]
    pub fn slot(&self, slot: usize) -> &VbeSlot {
        match self.blocks.get(slot / BLOCK) {
            Some(b) => &b.get_or_init(|| Box::new(std::array::from_fn(|_| VbeSlot::default())))
                [slot % BLOCK],
            None => &self.sink,
        }
    }

    /// Slot `slot`'s counters if this shard ever wrote any (readers: no allocation).
    pub fn peek(&self, slot: usize) -> Option<&VbeSlot> {
        Some(&self.blocks.get(slot / BLOCK)?.get()?[slot % BLOCK])
    }

    /// Every slot index in an allocated block (the slots this shard may have written), for
    /// refreshing gauges.
    pub fn allocated(&self) -> impl Iterator<Item = usize> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.get().is_some())
            .flat_map(|(i, _)| i * BLOCK..(i + 1) * BLOCK)
    }
}

/// Every shard's per-slot counters, and the base each slot's numbers count from.
pub struct VbeStats {
    shards: Box<[VbeShard]>,
    /// Per slot: the totals when it was last retired (counters only, not gauges).
    base: Mutex<HashMap<usize, [u64; NV]>>,
}

impl VbeStats {
    pub fn new(shards: usize) -> VbeStats {
        VbeStats {
            shards: (0..shards.max(1)).map(|_| VbeShard::default()).collect(),
            base: Mutex::new(HashMap::new()),
        }
    }

    pub fn shard(&self, i: usize) -> &VbeShard {
        &self.shards[i.min(self.shards.len() - 1)]
    }

    fn raw(&self, slot: usize) -> [u64; NV] {
        let mut out = [0u64; NV];
        for s in self.shards.iter() {
            if let Some(v) = s.peek(slot) {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = o.wrapping_add(v.values[i].load(Ordering::Relaxed));
                }
            }
        }
        out
    }

    /// Slot `slot`'s counters summed over shards, relative to its last retirement (the plane
    /// rows, `happy`, read 0 here).
    pub fn total(&self, slot: usize) -> [u64; NV] {
        let mut out = self.raw(slot);
        let base = self.base.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = base.get(&slot) {
            for (i, def) in VBE_TABLE.iter().enumerate() {
                if def.kind == crate::stats::CounterKind::Counter {
                    out[i] = out[i].saturating_sub(b[i]);
                }
            }
        }
        out
    }

    /// Slot `slot` was retired: a backend that reuses it counts from zero (control plane).
    pub fn rebase(&self, slot: usize) {
        let now = self.raw(slot);
        self.base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_over_shards_and_allocate_lazily() {
        let v = VbeStats::new(2);
        assert!(v.shard(0).peek(5).is_none());
        assert_eq!(v.shard(0).allocated().count(), 0);
        v.shard(0).slot(5).inc(Vbe::req);
        v.shard(1).slot(5).add(Vbe::req, 2);
        v.shard(1).slot(700).inc(Vbe::fail);
        assert_eq!(v.total(5)[Vbe::req as usize], 3);
        assert_eq!(v.total(700)[Vbe::fail as usize], 1);
        assert_eq!(v.total(6), [0; NV]);
        assert_eq!(
            v.shard(0).allocated().collect::<Vec<_>>(),
            (0..64).collect::<Vec<_>>()
        );
        assert_eq!(v.shard(1).allocated().count(), 128);
        // Out of range: a sink, never a panic, never read.
        v.shard(0).slot(MAX_SLOTS + 3).inc(Vbe::req);
        assert!(v.shard(0).peek(MAX_SLOTS + 3).is_none());
    }

    #[test]
    fn a_retired_slot_counts_again_from_zero() {
        let v = VbeStats::new(1);
        let s = v.shard(0).slot(3);
        s.add(Vbe::req, 10);
        s.add(Vbe::bereq_hdrbytes, 500);
        v.rebase(3);
        assert_eq!(v.total(3)[Vbe::req as usize], 0);
        assert_eq!(v.total(3)[Vbe::bereq_hdrbytes as usize], 0);
        s.inc(Vbe::req);
        assert_eq!(v.total(3)[Vbe::req as usize], 1);
    }

    #[test]
    fn table_matches_varnish_vbe() {
        let names: Vec<&str> = VBE_TABLE.iter().map(|d| d.field).collect();
        for want in [
            "happy",
            "bereq_hdrbytes",
            "bereq_bodybytes",
            "beresp_hdrbytes",
            "beresp_bodybytes",
            "conn",
            "req",
            "unhealthy",
            "busy",
            "fail",
            "fail_econnrefused",
            "fail_etimedout",
            "fail_other",
            "helddown",
        ] {
            assert!(names.contains(&want), "{want}");
        }
        assert_eq!(
            VBE_TABLE[Vbe::happy as usize].kind,
            crate::stats::CounterKind::Bitmap
        );
        assert_eq!(
            VBE_TABLE[Vbe::conn as usize].kind,
            crate::stats::CounterKind::Gauge
        );
    }
}
