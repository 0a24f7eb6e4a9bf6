//! What the micro-benchmarks share: the cached object a hit delivers.

use std::sync::Arc;

use bytes::Bytes;
use ringcache::cache::{ObjKind, Object};
use ringcache::http::Headers;

/// A fresh 200 with a 1 KiB body (t_origin 1000 s, ttl 3600 s) and these headers.
pub fn object(fields: &[(&'static str, &'static str)]) -> Arc<Object> {
    let mut headers = Headers::new();
    for (n, v) in fields {
        headers.append(*n, *v);
    }
    Arc::new(Object {
        xid: 7,
        kind: ObjKind::Normal,
        status: 200,
        reason: Bytes::from_static(b"OK"),
        head: Object::build_head(200, b"OK", &headers),
        headers,
        body: Bytes::from(vec![b'x'; 1024]),
        t_origin: 1_000.0,
        ttl: 3600.0,
        grace: 10.0,
        keep: 0.0,
        vary: None,
    })
}
