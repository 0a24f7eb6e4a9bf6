//! Micro-benchmark of the CPU work on a cache hit, without sockets: parse the request head,
//! build the key, look it up in a shard's store, build the response head.
//!
//! Why: the load test measures the whole server against Varnish; this isolates the per-request
//! code path so a regression in parsing or lookup shows up as ns/op, independent of the
//! machine's network stack. `cargo bench --bench hit_path` runs it; under `cargo test` it runs
//! a few iterations only, as a smoke test.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use ringcache::cache::store::{Lookup, Store, StoreLimits};
use ringcache::cache::{CacheKey, Object};
use ringcache::http::request::{parse_request, Limits};
use ringcache::http::{write, Headers};

const REQUEST: &[u8] = b"GET /static/app.js HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n";

fn object() -> Arc<Object> {
    common::object(&[
        ("Content-Type", "application/javascript"),
        ("Cache-Control", "max-age=3600"),
        ("Date", "Sat, 21 Nov 2026 10:00:00 GMT"),
        ("Via", "1.1 ringcache (ringcache/0.1)"),
    ])
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations: u64 = if full { 2_000_000 } else { 1_000 };
    let limits = Limits::default();
    let mut store: Store<()> = Store::new(StoreLimits {
        capacity_bytes: 64 << 20,
        waiters_max: 16,
    });
    let key = CacheKey::from_parts(&[b"/static/app.js", b"www.example.com"]);
    let now = 1_500.0;
    assert!(matches!(
        store.lookup(&key, &Headers::new(), now, None),
        Lookup::Miss
    ));
    store.insert(&key, object(), now);

    let mut buf = BytesMut::with_capacity(4096);
    let mut head = Vec::with_capacity(512);
    let mut hits = 0u64;
    let start = Instant::now();
    for i in 0..iterations {
        buf.extend_from_slice(REQUEST);
        let req = match parse_request(&mut buf, &limits) {
            Ok(Some(r)) => r,
            other => panic!("request did not parse: {:?}", other.err()),
        };
        let host = req.headers.get("host").cloned().unwrap_or_default();
        let k = CacheKey::from_parts(&[&req.url, &host]);
        if let Lookup::Hit(obj) = store.lookup(&k, &req.headers, now, None) {
            head.clear();
            head.extend_from_slice(&obj.head);
            head.extend_from_slice(b"X-Varnish: ");
            write::write_u64(&mut head, i);
            head.push(b' ');
            write::write_u64(&mut head, obj.xid);
            head.extend_from_slice(b"\r\nAge: ");
            write::write_u64(&mut head, obj.age(now));
            head.extend_from_slice(b"\r\nContent-Length: 1024\r\n\r\n");
            hits += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(hits, iterations, "every lookup must hit");
    if full {
        println!(
            "hit_path: {} iterations, {:.1} ns/op (parse + key + lookup + response head)",
            iterations,
            elapsed.as_nanos() as f64 / iterations as f64
        );
    }
}
