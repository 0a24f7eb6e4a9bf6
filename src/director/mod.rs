//! Directors: which backend a request goes to, picked as Varnish's `vmod_directors` picks it.
//!
//! Why pure functions: a director's choice depends on its configuration (members, weights, the
//! shard ring), the health of its members, and a key or a random draw, and on nothing else. Each
//! kind here is a function of exactly those, given as values and closures: no sockets, no clock,
//! no health board. The runtime (`server::env::Running`) passes health from the board, its
//! per-shard cursors and a random source; the tests pass arrays and seeded generators, so every
//! Varnish sequence (round-robin order, sticky fallback, weighted random, the shard ring and its
//! alternatives) is checked without a server. A director's configuration is fixed at the end of
//! `vcl_init` and shared by every shard; the little mutable state a policy has (a round-robin
//! cursor) is owned by the caller, which keeps it per shard so no cache line moves between
//! cores on the request path.
//!
//! Members are generic (`M: Copy`): the runtime uses `vcl::exec::BackendRef`, where a member
//! may itself be a director (layering); the caller's health closure answers for such a member
//! ("any of its members is healthy") and the caller resolves a picked director again, with a
//! depth bound ([`MAX_DEPTH`]).

pub mod fallback;
pub mod hash;
pub mod least_connections;
pub mod random;
pub mod round_robin;
pub mod shard;

use sha2::{Digest, Sha256};

/// Directors nested in directors are resolved at most this deep (vcl_init cannot build a
/// cycle, but a bound costs nothing).
pub const MAX_DEPTH: usize = 8;

/// Varnish's `VRT_HashStrands32`: SHA-256 over the non-empty parts, concatenated, and the last
/// four bytes of the digest read little-endian. The hash director and the shard director (ring
/// points, `by=URL`, `.key()`) both use it.
pub fn hash32(parts: &[&[u8]]) -> u32 {
    let mut h = Sha256::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        h.update(p);
    }
    let d = h.finalize();
    u32::from_le_bytes([d[28], d[29], d[30], d[31]])
}

/// Varnish's request digest (`req.hash`): SHA-256 over the `hash_data()` inputs, each followed
/// by a NUL byte, which is exactly the layout of the cache key's bytes. `by=HASH` on the
/// backend side uses its first four bytes, big-endian.
pub fn digest_key(hash_input: &[u8]) -> u32 {
    let d = Sha256::digest(hash_input);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Varnish's `vdir_pick_be`: with `r` in [0, 1), the member whose share of the healthy
/// members' total weight covers `r`. Sick members and their weights are left out, so load moves
/// to the others; no healthy member or a total weight of zero gives `None`.
pub fn pick_weighted<M: Copy>(
    members: &[M],
    weights: &[f64],
    r: f64,
    healthy: impl Fn(M) -> bool,
) -> Option<M> {
    let mut up = Bits::new(members.len());
    let mut total = 0.0;
    for (i, m) in members.iter().enumerate() {
        if healthy(*m) {
            up.set(i);
            total += weight(weights, i);
        }
    }
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let w = r * total;
    let mut acc = 0.0;
    let mut last = None;
    for (i, m) in members.iter().enumerate() {
        if !up.get(i) {
            continue;
        }
        acc += weight(weights, i);
        if w < acc {
            return Some(*m);
        }
        if weight(weights, i) > 0.0 {
            last = Some(*m);
        }
    }
    // Only reachable through rounding (w < total always): the last member with weight.
    last
}

/// Member `i`'s weight (1 when the director keeps none).
fn weight(weights: &[f64], i: usize) -> f64 {
    weights.get(i).copied().unwrap_or(1.0)
}

/// A bit per member, on the stack for up to 512 members.
pub(crate) enum Bits {
    Inline([u64; 8]),
    Heap(Vec<u64>),
}

impl Bits {
    pub(crate) fn new(n: usize) -> Bits {
        if n <= 512 {
            Bits::Inline([0; 8])
        } else {
            Bits::Heap(vec![0; n.div_ceil(64)])
        }
    }

    fn words(&self) -> &[u64] {
        match self {
            Bits::Inline(w) => w,
            Bits::Heap(w) => w,
        }
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        self.words()
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(crate) fn set(&mut self, i: usize) {
        let words: &mut [u64] = match self {
            Bits::Inline(w) => w,
            Bits::Heap(w) => w,
        };
        if let Some(w) = words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash32_is_varnish_strands_hash() {
        // The shard ring of Varnish's directors_c00006.vtc: point 0 of backend "s3" is
        // SHA256("s3" "0")'s last four bytes read little-endian = 0x0238d0ef (see shard.rs).
        assert_eq!(hash32(&[b"s3", b"", b"0"]), hash32(&[b"s30"]));
        assert_eq!(hash32(&[]), hash32(&[b""]));
    }

    #[test]
    fn weighted_pick_covers_healthy_shares() {
        let m = [0usize, 1, 2];
        let w = [1.0, 2.0, 1.0];
        let all = |_: usize| true;
        assert_eq!(pick_weighted(&m, &w, 0.0, all), Some(0));
        assert_eq!(pick_weighted(&m, &w, 0.24, all), Some(0));
        assert_eq!(pick_weighted(&m, &w, 0.25, all), Some(1));
        assert_eq!(pick_weighted(&m, &w, 0.74, all), Some(1));
        assert_eq!(pick_weighted(&m, &w, 0.75, all), Some(2));
        assert_eq!(pick_weighted(&m, &w, 0.999_999, all), Some(2));
        // Member 1 sick: its share goes to the others.
        let not1 = |i: usize| i != 1;
        assert_eq!(pick_weighted(&m, &w, 0.49, not1), Some(0));
        assert_eq!(pick_weighted(&m, &w, 0.5, not1), Some(2));
        assert_eq!(pick_weighted(&m, &w, 0.5, |_| false), None);
        assert_eq!(pick_weighted(&m, &[0.0, 0.0, 0.0], 0.5, all), None);
        assert_eq!(pick_weighted::<usize>(&[], &[], 0.5, all), None);
    }

    #[test]
    fn bits_inline_and_heap() {
        for n in [1, 512, 513, 5000] {
            let mut b = Bits::new(n);
            b.set(n - 1);
            b.set(0);
            assert!(b.get(0) && b.get(n - 1));
            assert!(n < 3 || !b.get(1));
            assert!(!b.get(n + 1000));
        }
    }
}
