//! Client-side HTTP/1.1: keep-alive, pipelining, HTTP/1.0, request bodies, Expect:
//! 100-continue, HEAD, malformed requests (status then close), idle timeout, slow clients.

#[macro_use]
mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

shard_tests!(
    keepalive_several_requests,
    pipelined_requests_in_order,
    http10_without_keepalive_closes,
    http10_with_keepalive_stays_open,
    post_body_content_length_forwarded,
    post_body_chunked_forwarded,
    expect_100_continue,
    head_request,
    malformed_requests_rejected,
    request_line_too_long_414,
    headers_over_req_size_431,
    too_many_headers_431,
    idle_connection_closed,
    slow_client_does_not_block_others,
);

fn url_origin() -> Origin {
    Origin::start(|req, _| Reply::ok(format!("url={}", req.url)).cc("max-age=60"))
}

// Goal: several requests (misses and hits) on one keep-alive connection.
// Method: 6 GETs on one connection; all 200 with the right bodies; the connection stays open.
fn keepalive_several_requests(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    for p in ["/k0", "/k1", "/k0", "/k2", "/k1", "/k3"] {
        let r = c.get(p, &[]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.body_str(), format!("url={p}"));
    }
    assert!(c.is_open(Duration::from_millis(200)), "keep-alive closed");
    assert_eq!(o.request_count(), 4);
    // `Connection: close` from the client ends the connection after the response.
    let r = c.get("/k0", &[("Connection", "close")]);
    assert_eq!(r.status, 200);
    c.wait_closed(Duration::from_secs(3))
        .expect("connection must be closed after a `Connection: close` request");
}

// Goal: pipelined requests are answered in order, even when the first is the slowest, and a
// pipelined POST's body is not mistaken for the next request.
// Method: 7 requests written in one write (the first one's fetch takes 300 ms, one URL
// repeated, a POST whose body looks like a request); read 7 responses and check each body
// matches its request.
fn pipelined_requests_in_order(cores: usize) {
    let o = Origin::start(|req, _| {
        let r = Reply::ok(format!("url={}", req.url)).cc("max-age=60");
        if req.url == "/p0" {
            r.delay_ms(300)
        } else {
            r
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    let paths = ["/p0", "/p1", "/p2", "/p1", "/post", "/p3", "/p4"];
    let mut raw = Vec::new();
    for p in paths {
        if p == "/post" {
            let body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
            raw.extend(build_request("POST", p, &[], Some(body)));
        } else {
            raw.extend(build_request("GET", p, &[], None));
        }
    }
    let mut c = Client::connect(s.addr());
    c.send(&raw);
    for p in paths {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            r.body_str(),
            format!("url={p}"),
            "pipelined responses out of order"
        );
    }
    assert!(c.is_open(Duration::from_millis(200)));
    assert_eq!(
        o.count_url("/smuggled"),
        0,
        "request body parsed as a request"
    );
    assert!(o
        .requests()
        .iter()
        .any(|r| r.url == "/post" && r.body.starts_with(b"GET /smuggled")));
}

// Goal: an HTTP/1.0 request without keep-alive gets a non-chunked response and the connection
// is closed after it.
// Method: origin answers chunked; client sends `GET /ten HTTP/1.0` (no Host, no Connection).
fn http10_without_keepalive_closes(cores: usize) {
    let body = pattern_body(5000, 2);
    let b2 = body.clone();
    let o = Origin::start(move |_, _| {
        Reply::ok(&b2[..100])
            .chunked()
            .then(Duration::from_millis(10), &b2[100..])
    });
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    c.send(b"GET /ten HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(!r.chunked, "chunked response to an HTTP/1.0 client");
    assert!(r.body == body, "body mismatch");
    c.wait_closed(Duration::from_secs(3))
        .expect("HTTP/1.0 without keep-alive must be closed after the response");
}

// Goal: HTTP/1.0 with `Connection: keep-alive` keeps the connection open.
// Method: two HTTP/1.0 keep-alive requests on one connection; both answered with a
// Content-Length (no chunking), connection still open afterwards.
fn http10_with_keepalive_stays_open(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    for p in ["/ka1", "/ka2"] {
        c.send(format!("GET {p} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.summary());
        assert!(!r.chunked && !r.eof_delimited, "{}", r.summary());
        assert!(
            r.header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "an HTTP/1.0 client only keeps the connection with `Connection: keep-alive`: {}",
            r.summary()
        );
        assert_eq!(r.body_str(), format!("url={p}"));
    }
    assert!(
        c.is_open(Duration::from_millis(300)),
        "HTTP/1.0 keep-alive connection closed"
    );
}

// Goal: a POST body with Content-Length (100 kB, binary pattern) reaches the origin intact.
fn post_body_content_length_forwarded(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(format!("got {}", req.body.len())));
    let s = Server::for_origin(&o, cores, &[]);
    let body = pattern_body(100_000, 4);
    let r = request(s.addr(), "POST", "/post", &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "got 100000");
    let reqs = o.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert!(reqs[0].body == body, "request body corrupted");
}

// Goal: a chunked POST body (3 chunks, sent in pieces) reaches the origin intact (re-framed
// or not).
fn post_body_chunked_forwarded(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(format!("got {}", req.body.len())));
    let s = Server::for_origin(&o, cores, &[]);
    let body = pattern_body(50_000, 6);
    let enc = encode_chunked(&[&body[..10], &body[10..30_000], &body[30_000..]]);
    let mut c = Client::connect(s.addr());
    let head = build_request(
        "POST",
        "/chunked",
        &[("Transfer-Encoding", "chunked")],
        None,
    );
    c.send(&head);
    c.send(&enc[..20_000]);
    thread::sleep(Duration::from_millis(50));
    c.send(&enc[20_000..]);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "got 50000");
    let reqs = o.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].body == body, "chunked request body corrupted");
}

// Goal: `Expect: 100-continue` gets `HTTP/1.1 100 Continue` before the client sends the body.
// Method: send only the head; expect a 100 within 3 s; then send the body and read the final
// 200; the origin got the body.
fn expect_100_continue(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(format!("got {}", req.body.len())));
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    c.timeout = Duration::from_secs(3);
    c.send(b"POST /e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let r = c
        .try_read_response(false)
        .expect("no interim response to Expect: 100-continue");
    assert_eq!(r.status, 100, "{}", r.summary());
    assert_eq!(r.version, "HTTP/1.1");
    c.timeout = IO_TIMEOUT;
    c.send(b"hello world");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "got 11");
    assert_eq!(o.requests()[0].body, b"hello world");
}

// Goal: HEAD (miss and hit) returns headers with Content-Length and no body; the connection
// stays usable.
// Method: HEAD, HEAD, GET on one connection for a 777-byte object.
fn head_request(cores: usize) {
    let body = pattern_body(777, 8);
    let b2 = body.clone();
    let o = Origin::start(move |_, _| Reply::ok(&b2).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    for _ in 0..2 {
        let r = c.request("HEAD", "/head", &[], None);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.header("Content-Length"), Some("777"), "{}", r.summary());
    }
    let r = c.get("/head", &[]);
    assert!(r.body == body, "{}", r.summary());
    assert!(c.buffered().is_empty());
}

/// Sends `raw`, reads one response and checks the connection is closed afterwards.
fn raw_case(addr: std::net::SocketAddr, raw: &[u8]) -> Result<u16, String> {
    let mut c = Client::connect(addr);
    c.timeout = Duration::from_secs(5);
    let _ = c.try_send(raw);
    let r = c
        .try_read_response(false)
        .map_err(|e| format!("no response: {e}"))?;
    c.wait_closed(Duration::from_secs(3))
        .map_err(|e| format!("got {} but connection not closed: {e}", r.status))?;
    Ok(r.status)
}

fn check_cases(addr: std::net::SocketAddr, cases: &[(&str, &[u8], u16)]) {
    let mut failures = Vec::new();
    for (name, raw, want) in cases {
        match raw_case(addr, raw) {
            Ok(st) if st == *want => {}
            Ok(st) => failures.push(format!("{name}: status {st}, expected {want}")),
            Err(e) => failures.push(format!("{name}: expected {want}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "malformed request handling:\n  {}",
        failures.join("\n  ")
    );
    // The server still serves normal requests.
    assert_eq!(get(addr, "/after", &[]).status, 200);
}

// Goal: malformed requests get the right error status and then the connection is closed.
// Method: one raw request per case on its own connection; all cases are checked and reported
// together.
fn malformed_requests_rejected(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "Transfer-Encoding: gzip",
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        ("garbage", b"NOT-HTTP\r\n\r\n", 400),
        (
            "CL and TE",
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "differing duplicate CL",
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
        ),
        (
            "TE chunked, gzip",
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "bad chunk size",
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n  b\r\n\r\n",
            400,
        ),
        (
            "NUL in header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
            400,
        ),
        (
            "missing Host (HTTP/1.1)",
            b"GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
            400,
        ),
    ];
    check_cases(s.addr(), cases);
    let bad_urls: Vec<String> = o
        .requests()
        .iter()
        .filter(|r| r.url != "/after")
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(
        bad_urls.is_empty(),
        "malformed requests reached the origin: {bad_urls:?}"
    );
}

// Goal: a request line longer than http_req_hdr_len → 414, then close.
// Method: -p http_req_hdr_len=256; URL of 400 bytes.
fn request_line_too_long_414(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &["-p", "http_req_hdr_len=256"]);
    let raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(400));
    check_cases(s.addr(), &[("long request line", raw.as_bytes(), 414)]);
}

// Goal: a request head larger than http_req_size → 431, then close.
// Method: -p http_req_size=2k; 30 headers of ~110 bytes each (each under http_req_hdr_len).
fn headers_over_req_size_431(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &["-p", "http_req_size=2k"]);
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        raw.push_str(&format!("X-Pad-{i:02}: {}\r\n", "p".repeat(100)));
    }
    raw.push_str("\r\n");
    check_cases(
        s.addr(),
        &[("head over http_req_size", raw.as_bytes(), 431)],
    );
}

// Goal: more header fields than http_max_hdr → 431, then close.
// Method: -p http_max_hdr=32; 60 short headers.
fn too_many_headers_431(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &["-p", "http_max_hdr=32"]);
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    check_cases(
        s.addr(),
        &[("over http_max_hdr fields", raw.as_bytes(), 431)],
    );
}

// Goal: idle client connections are closed after timeout_idle.
// Method: -p timeout_idle=1; a connection that never sends and one idle after a request must
// both be closed by the server within 3 s.
fn idle_connection_closed(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &["-p", "timeout_idle=1"]);
    let mut silent = Client::connect(s.addr());
    let mut used = Client::connect(s.addr());
    assert_eq!(used.get("/idle", &[]).status, 200);
    let t = silent
        .wait_closed(Duration::from_secs(3))
        .expect("silent connection not closed after timeout_idle=1");
    assert!(t >= Duration::from_millis(500), "closed too early: {t:?}");
    used.wait_closed(Duration::from_secs(3))
        .expect("idle keep-alive connection not closed after timeout_idle=1");
}

// Goal: a slow client (one byte per 100 ms) does not block other clients on the same server
// (matters most with 1 shard).
// Method: the slow client dribbles its request over ~3 s while other clients do GETs on fresh
// connections; each must complete in < 1 s; finally the slow client gets its response.
fn slow_client_does_not_block_others(cores: usize) {
    let o = url_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let addr = s.addr();
    let slow = thread::spawn(move || {
        let mut c = Client::connect(addr);
        for b in b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" {
            c.send(&[*b]);
            thread::sleep(Duration::from_millis(100));
        }
        c.read_response()
    });
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(2500) && n < 20 {
        let (r, t) = timed_get(addr, &format!("/fast{n}"), &[]);
        assert_eq!(r.status, 200);
        assert!(
            t < Duration::from_secs(1),
            "request {n} took {t:?} while a slow client was connected"
        );
        n += 1;
        thread::sleep(Duration::from_millis(200));
    }
    let r = slow.join().expect("slow client thread");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "url=/slow");
}
