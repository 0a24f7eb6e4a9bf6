//! A cached object: an immutable response that any shard may deliver.
//!
//! Why this shape: the owner shard stores `Arc<Object>` and hands clones to other shards, so an
//! object is written once (at fetch) and never mutated; delivery writes the pre-serialised head and
//! the body `Bytes` straight to the socket with no copy. Per-delivery fields (Age, X-Varnish, Via)
//! are added by the deliverer, never stored. Times are seconds since the Unix epoch as `f64`, as in
//! Varnish, so TTL arithmetic matches VCL's real-valued durations.

use bytes::Bytes;

use crate::http::Headers;

/// What kind of entry this is in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjKind {
    /// A normal, deliverable response.
    Normal,
    /// "Hit-for-miss": the response was uncacheable; lookups miss without coalescing until it
    /// expires. Carries no body.
    HitForMiss,
    /// "Hit-for-pass" (`return (pass(DURATION))`): lookups pass until it expires. No body.
    HitForPass,
}

/// The request header values an object was fetched with, for each header its `Vary` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VarySpec {
    /// (lower-case header name, the request's value or None when the request had none).
    pub fields: Vec<(Bytes, Option<Bytes>)>,
}

impl VarySpec {
    /// Builds the spec from a response's `Vary` header(s) and the request that fetched it.
    /// Returns `None` when the response does not vary. `Vary: *` is not handled here: the builtin
    /// rules make such responses uncacheable before they are stored.
    pub fn from_response(resp: &Headers, req: &Headers) -> Option<VarySpec> {
        let mut fields: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        for v in resp.get_all("vary") {
            for name in v.split(|&b| b == b',') {
                let name = crate::http::headers::trim(name);
                if name.is_empty() || name == b"*" {
                    continue;
                }
                let lower = Bytes::from(name.to_ascii_lowercase());
                if fields.iter().any(|(n, _)| *n == lower) {
                    continue;
                }
                let value = std::str::from_utf8(&lower)
                    .ok()
                    .and_then(|n| req.get(n))
                    .map(|v| Bytes::copy_from_slice(crate::http::headers::trim(v)));
                fields.push((lower, value));
            }
        }
        if fields.is_empty() {
            None
        } else {
            Some(VarySpec { fields })
        }
    }

    /// True if `req` carries the same values for every varied header.
    pub fn matches(&self, req: &Headers) -> bool {
        self.fields.iter().all(|(name, want)| {
            let have = std::str::from_utf8(name)
                .ok()
                .and_then(|n| req.get(n))
                .map(|v| crate::http::headers::trim(v));
            match (want, have) {
                (None, None) => true,
                (Some(w), Some(h)) => w[..] == *h,
                _ => false,
            }
        })
    }

    /// Approximate heap bytes, for storage accounting.
    pub fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, |v| v.len()) + 48)
            .sum()
    }
}

/// An immutable cached response.
#[derive(Debug)]
pub struct Object {
    /// Id of the request (fetch) that created it: the second number of `X-Varnish` on hits.
    pub xid: u64,
    pub kind: ObjKind,
    pub status: u16,
    /// Reason phrase as received (or the standard one).
    pub reason: Bytes,
    /// Stored response headers: hop-by-hop fields, `Content-Length`, `Transfer-Encoding`, `Age`
    /// are already removed.
    pub headers: Headers,
    /// `HTTP/1.1 <status> <reason>\r\n` followed by every stored header as `Name: value\r\n`
    /// (no blank line). Built once at insertion.
    pub head: Bytes,
    pub body: Bytes,
    /// When the response was generated at the origin (fetch time minus the `Age` it carried).
    pub t_origin: f64,
    pub ttl: f64,
    pub grace: f64,
    pub keep: f64,
    pub vary: Option<VarySpec>,
}

impl Object {
    /// True while `now` is within the TTL.
    pub fn is_fresh(&self, now: f64) -> bool {
        now < self.t_origin + self.ttl
    }

    /// True while `now` is past the TTL but within `grace` more seconds.
    pub fn in_grace(&self, now: f64, grace: f64) -> bool {
        !self.is_fresh(now) && now < self.t_origin + self.ttl + grace
    }

    /// True once the object is past TTL, grace and keep: it can be removed.
    pub fn is_dead(&self, now: f64) -> bool {
        now >= self.t_origin + self.ttl + self.grace.max(0.0) + self.keep.max(0.0)
    }

    /// Seconds to show in the `Age` header at `now`.
    pub fn age(&self, now: f64) -> u64 {
        let a = now - self.t_origin;
        if a > 0.0 {
            a as u64
        } else {
            0
        }
    }

    /// Bytes charged against storage for this object: body, serialised head (which the header
    /// list shares), the header list's entries, Vary values, and a fixed per-object cost for the
    /// `Arc<Object>` itself and the store's bookkeeping (map entry, queue node, expiry entry,
    /// shared-buffer headers). The fixed cost is measured, not guessed: with it, a flood of
    /// 1 KiB objects keeps the process's resident memory close to `-s` (docs/benchmarks.md).
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 896;
        self.body.len()
            + self.head.len()
            + self.headers.len() * std::mem::size_of::<crate::http::Header>()
            + self.vary.as_ref().map_or(0, |v| v.weight())
            + OVERHEAD
    }

    /// Builds the serialised head and a header list whose names and values are slices of it,
    /// so a stored object keeps one copy of its header bytes, not two.
    pub fn build_head_and_headers(
        status: u16,
        reason: &[u8],
        headers: &Headers,
    ) -> (Bytes, Headers) {
        let head = Object::build_head(status, reason, headers);
        let mut at = head
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| p + 1);
        let mut out = Headers::with_capacity(headers.len());
        for h in headers {
            // Layout written by `Headers::write_to`: name ": " value "\r\n".
            let name = head.slice(at..at + h.name.len());
            at += h.name.len() + 2;
            let value = head.slice(at..at + h.value.len());
            at += h.value.len() + 2;
            out.append(name, value);
        }
        debug_assert_eq!(at, head.len());
        debug_assert_eq!(&out, headers);
        (head, out)
    }

    /// Builds the serialised head from status, reason and headers.
    pub fn build_head(status: u16, reason: &[u8], headers: &Headers) -> Bytes {
        let mut out = Vec::with_capacity(32 + headers.wire_len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa_u16(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason);
        out.extend_from_slice(b"\r\n");
        headers.write_to(&mut out);
        Bytes::from(out)
    }
}

fn itoa_u16(v: u16) -> String {
    v.to_string()
}

/// The cache key: Varnish's default `hash_data(req.url); hash_data(req.http.host or server.ip)`.
///
/// `bytes` holds the hashed strings separated by NUL so ("/a", "bc") and ("/ab", "c") differ;
/// `hash` is a keyed 64-bit digest of `bytes` that picks the owner shard and the map bucket. Two
/// keys are equal only if their bytes are equal, so a hash collision can never serve the wrong
/// object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    pub hash: u64,
    pub bytes: Bytes,
}

impl CacheKey {
    /// Builds a key from its parts with the process-wide hasher.
    pub fn from_parts(parts: &[&[u8]]) -> CacheKey {
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for p in parts {
            buf.extend_from_slice(p);
            buf.push(0);
        }
        let hash = key_hasher().hash_one(&buf[..]);
        CacheKey {
            hash,
            bytes: Bytes::from(buf),
        }
    }

    /// A key from parts already joined as [`CacheKey::from_parts`] lays them out (each part
    /// followed by a NUL byte); takes the buffer without copying.
    pub fn from_joined(buf: Vec<u8>) -> CacheKey {
        let hash = key_hasher().hash_one(&buf[..]);
        CacheKey {
            hash,
            bytes: Bytes::from(buf),
        }
    }

    /// The shard that owns this key.
    pub fn owner(&self, shards: usize) -> usize {
        debug_assert!(shards > 0);
        // The top bits pick the shard, the low bits the map bucket, so the two do not correlate.
        ((self.hash >> 32) as usize) % shards.max(1)
    }
}

/// One hasher for the whole process, so every shard computes the same owner for a key.
fn key_hasher() -> &'static ahash::RandomState {
    static HASHER: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(ahash::RandomState::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(t_origin: f64, ttl: f64, grace: f64, keep: f64) -> Object {
        let headers = Headers::new();
        Object {
            xid: 1,
            kind: ObjKind::Normal,
            status: 200,
            reason: Bytes::from_static(b"OK"),
            head: Object::build_head(200, b"OK", &headers),
            headers,
            body: Bytes::from_static(b"x"),
            t_origin,
            ttl,
            grace,
            keep,
            vary: None,
        }
    }

    #[test]
    fn freshness_grace_and_death() {
        let o = obj(100.0, 10.0, 5.0, 2.0);
        assert!(o.is_fresh(109.9));
        assert!(!o.is_fresh(110.0));
        assert!(o.in_grace(110.0, o.grace));
        assert!(!o.in_grace(115.0, o.grace));
        assert!(!o.is_dead(116.9));
        assert!(o.is_dead(117.0));
        assert_eq!(o.age(103.7), 3);
        assert_eq!(o.age(99.0), 0);
        assert_eq!(&o.head[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn head_and_headers_share_one_buffer() {
        let mut h = Headers::new();
        h.append("Content-Type", "text/plain");
        h.append("ETag", "\"e1\"");
        let (head, stored) = Object::build_head_and_headers(200, b"OK", &h);
        assert_eq!(
            &head[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"e1\"\r\n"
        );
        assert_eq!(stored, h);
        let range = head.as_ptr() as usize..head.as_ptr() as usize + head.len();
        for f in &stored {
            assert!(range.contains(&(f.name.as_ptr() as usize)));
            assert!(range.contains(&(f.value.as_ptr() as usize)));
        }
    }

    #[test]
    fn keys_separate_parts_and_pick_stable_owners() {
        let a = CacheKey::from_parts(&[b"/a", b"bc"]);
        let b = CacheKey::from_parts(&[b"/ab", b"c"]);
        assert_ne!(a, b);
        let a2 = CacheKey::from_parts(&[b"/a", b"bc"]);
        assert_eq!(a, a2);
        assert_eq!(a.owner(2), a2.owner(2));
        assert!(a.owner(3) < 3);
    }

    #[test]
    fn vary_spec_matches_request_values() {
        let mut resp = Headers::new();
        resp.append("Vary", "Accept-Encoding, X-Lang");
        let mut req = Headers::new();
        req.append("accept-encoding", "gzip");
        let spec = VarySpec::from_response(&resp, &req).expect("varies");
        assert_eq!(spec.fields.len(), 2);
        assert!(spec.matches(&req));
        let mut other = Headers::new();
        other.append("Accept-Encoding", "br");
        assert!(!spec.matches(&other));
        let mut with_lang = req.clone();
        with_lang.append("X-Lang", "fr");
        assert!(!spec.matches(&with_lang));
        assert!(VarySpec::from_response(&Headers::new(), &req).is_none());
    }
}
