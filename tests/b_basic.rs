//! Backend fetch basics: forwarded headers, response framings from the origin, backend
//! failures and timeouts, and streaming of pass responses.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

shard_tests!(
    host_and_xff_forwarded,
    framing_content_length,
    framing_chunked,
    framing_read_until_close,
    framing_http10_backend,
    origin_down_fast_503,
    first_byte_timeout_503,
    between_bytes_timeout_aborts,
    pass_streams,
);

// Goal: the client's Host is forwarded unchanged and X-Forwarded-For gets the client address
// appended (or created).
// Method: two misses, one with an existing X-Forwarded-For; inspect the origin's view.
fn host_and_xff_forwarded(cores: usize) {
    let o = Origin::start(|_, _| Reply::ok("x").cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    get(
        s.addr(),
        "/xff1",
        &[("Host", "example.com"), ("X-Forwarded-For", "10.0.0.1")],
    );
    get(s.addr(), "/xff2", &[("Host", "www.example.org:8080")]);
    let reqs = o.requests();
    assert_eq!(reqs.len(), 2);
    let r1 = reqs.iter().find(|r| r.url == "/xff1").unwrap();
    let r2 = reqs.iter().find(|r| r.url == "/xff2").unwrap();
    assert_eq!(r1.header("Host"), Some("example.com"));
    assert_eq!(
        r1.header_all("X-Forwarded-For"),
        vec!["10.0.0.1, 127.0.0.1"]
    );
    assert_eq!(r2.header("Host"), Some("www.example.org:8080"));
    assert_eq!(r2.header_all("X-Forwarded-For"), vec!["127.0.0.1"]);
}

fn framing_case(cores: usize, make: fn(&[u8]) -> Reply) {
    let body = pattern_body(300_000, 7);
    let b2 = body.clone();
    let o = Origin::start(move |_, _| make(&b2).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    let r = get(s.addr(), "/f", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body.len(), body.len(), "body length on the miss");
    assert!(r.body == body, "body corrupted on the miss");
    let r = get(s.addr(), "/f", &[]);
    assert!(r.is_hit(), "{}", r.summary());
    assert!(r.body == body, "body corrupted in the cache");
    assert_eq!(o.request_count(), 1);
}

// Goal: a Content-Length framed origin response (300 kB) is delivered and cached intact.
// Method: miss then hit; compare bytes.
fn framing_content_length(cores: usize) {
    framing_case(cores, |b| Reply::ok(b));
}

// Goal: a chunked origin response (several chunks, sent with pauses) is delivered and cached
// intact.
fn framing_chunked(cores: usize) {
    framing_case(cores, |b| {
        Reply::ok(&b[..1000])
            .chunked()
            .then(Duration::from_millis(20), &b[1000..150_000])
            .then(Duration::from_millis(20), &b[150_000..])
    });
}

// Goal: an origin response without Content-Length/chunking, delimited by connection close, is
// delivered and cached intact.
fn framing_read_until_close(cores: usize) {
    framing_case(cores, |b| {
        Reply::ok(&b[..100_000])
            .eof_framed()
            .then(Duration::from_millis(20), &b[100_000..])
    });
}

// Goal: an HTTP/1.0 origin (status line HTTP/1.0, closes after the response) works, and the
// next fetch does not try to reuse its closed connection.
// Method: framing_case plus a second URL fetched after the first.
fn framing_http10_backend(cores: usize) {
    framing_case(cores, |b| Reply::ok(b).http10());
    let o = Origin::start(|req, _| Reply::ok(req.url.clone()).http10());
    let s = Server::for_origin(&o, cores, &[]);
    for i in 0..3 {
        let url = format!("/ten{i}");
        let r = get(s.addr(), &url, &[]);
        assert_eq!((r.status, r.body_str()), (200, url));
    }
    assert_eq!(o.request_count(), 3);
}

// Goal: with the origin down (connection refused), the client gets a 503 guru meditation
// quickly (well under connect_timeout).
// Method: backend = a released port; connect_timeout=3; GET must answer 503 "Backend fetch
// failed" in < 2 s.
fn origin_down_fast_503(cores: usize) {
    let backend = format!("127.0.0.1:{}", dead_port());
    let s = Server::for_backend(&backend, cores, &["-p", "connect_timeout=3"]);
    let (r, t) = timed_get(s.addr(), "/down", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(
        r.body_str().contains("Backend fetch failed"),
        "{}",
        r.summary()
    );
    assert!(
        r.header("Content-Type")
            .is_some_and(|v| v.starts_with("text/html")),
        "guru meditation is HTML: {}",
        r.summary()
    );
    assert_eq!(
        r.header("Retry-After"),
        Some("5"),
        "builtin vcl_backend_error sets Retry-After: {}",
        r.summary()
    );
    assert!(t < Duration::from_secs(2), "503 took {t:?}");
    // The server keeps working.
    assert_eq!(get(s.addr(), "/down2", &[]).status, 503);
}

// Goal: an origin that does not send the first byte within first_byte_timeout yields 503.
// Method: origin delays 4 s; -p first_byte_timeout=1; the 503 must come before the origin
// would have answered (< 3.5 s) and not before the timeout (>= 0.8 s).
fn first_byte_timeout_503(cores: usize) {
    let o = Origin::start(|_, _| Reply::ok("late").delay(Duration::from_secs(4)));
    let s = Server::for_origin(&o, cores, &["-p", "first_byte_timeout=1"]);
    let (r, t) = timed_get(s.addr(), "/fbt", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(
        r.body_str().contains("Backend fetch failed"),
        "{}",
        r.summary()
    );
    assert!(
        t >= Duration::from_millis(800) && t < Duration::from_millis(3500),
        "503 after {t:?}"
    );
}

// Goal: an origin that stalls mid-body longer than between_bytes_timeout aborts the fetch: the
// client does not get a complete 200 (either 503, or a truncated/closed delivery), and the
// broken object is not cached (next request goes to the origin and succeeds).
// Method: first reply sends headers (CL 20000) and 1000 bytes, then pauses 4 s;
// -p between_bytes_timeout=1.
fn between_bytes_timeout_aborts(cores: usize) {
    let full = pattern_body(20_000, 1);
    let f2 = full.clone();
    let o = Origin::start(move |_, i| {
        if i == 0 {
            Reply::ok(&f2[..1000])
                .cc("max-age=60")
                .then(Duration::from_secs(4), &f2[1000..])
        } else {
            Reply::ok(&f2).cc("max-age=60")
        }
    });
    let s = Server::for_origin(&o, cores, &["-p", "between_bytes_timeout=1"]);
    let mut c = Client::connect(s.addr());
    c.send(&build_request("GET", "/bbt", &[], None));
    let t0 = Instant::now();
    match c.try_read_response(false) {
        Ok(r) => assert!(
            r.status == 503 || r.body != full,
            "complete response despite a 4 s stall: {}",
            r.summary()
        ),
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::TimedOut,
            "client still waiting after {:?}: {e}",
            t0.elapsed()
        ),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(3500),
        "fetch not aborted in time: {:?}",
        t0.elapsed()
    );
    let r = get(s.addr(), "/bbt", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(r.body == full, "second fetch must be complete");
    assert_eq!(o.request_count(), 2, "aborted object must not be cached");
}

// Goal: pass responses stream: the client gets the headers and the first body bytes while the
// origin is still sending.
// Method: POST (pass); origin sends headers + first chunk, waits 1 s, sends the rest. Head and
// first body bytes must arrive < 700 ms after the request, the end >= 900 ms.
fn pass_streams(cores: usize) {
    let o = Origin::start(|_, _| {
        Reply::ok("first part|")
            .chunked()
            .then(Duration::from_secs(1), "second part")
    });
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    let t0 = Instant::now();
    c.send(&build_request("POST", "/stream", &[], Some(b"data")));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "first part|second part");
    let head = r.head_at - t0;
    let first = r.first_body_at.map(|t| t - t0);
    let end = r.done_at - t0;
    assert!(
        head < Duration::from_millis(700),
        "headers arrived only after {head:?} (end {end:?}): not streamed"
    );
    assert!(
        first.is_some_and(|f| f < Duration::from_millis(700)),
        "first body bytes arrived at {first:?} (end {end:?}): not streamed"
    );
    assert!(end >= Duration::from_millis(900), "end {end:?}");
}
