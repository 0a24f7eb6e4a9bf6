//! Self-tests of the test harness: the fake origin and the independent client are exercised
//! against each other (no ringcache involved), so a failing scenario test can be trusted to be
//! about the server, not the harness.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

// Goal: a plain GET round trip works and the origin records method, URL, version, headers.
// Method: origin with a fixed body; one GET with an extra header; inspect both sides.
#[test]
fn origin_records_and_client_parses() {
    let o = Origin::fixed("hello", &[("X-Test", "1")]);
    let r = get(o.addr(), "/a?b=c", &[("X-Req", "yes")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello");
    assert_eq!(r.header("x-test"), Some("1"));
    assert_eq!(r.header("Content-Length"), Some("5"));
    let reqs = o.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].url, "/a?b=c");
    assert_eq!(reqs[0].version, "HTTP/1.1");
    assert_eq!(reqs[0].header("X-REQ"), Some("yes"));
    assert_eq!(reqs[0].header("Host"), Some("localhost"));
    assert_eq!(o.conn_count(), 1);
}

// Goal: keep-alive and pipelining at the origin, and request/connection counters.
// Method: three requests written at once on one connection; then one more.
#[test]
fn keepalive_and_pipelining() {
    let o = Origin::start(|req, i| Reply::ok(format!("{}#{i}", req.url)));
    let mut c = Client::connect(o.addr());
    let mut raw = Vec::new();
    for p in ["/1", "/2", "/3"] {
        raw.extend(build_request("GET", p, &[], None));
    }
    c.send(&raw);
    for (i, p) in ["/1", "/2", "/3"].iter().enumerate() {
        assert_eq!(c.read_response().body_str(), format!("{p}#{i}"));
    }
    assert_eq!(c.get("/4", &[]).body_str(), "/4#3");
    assert_eq!(o.conn_count(), 1);
    assert_eq!(o.request_count(), 4);
    let reqs = o.requests();
    assert_eq!(reqs[3].seq_on_conn, 3);
    assert!(c.is_open(Duration::from_millis(100)));
}

// Goal: the client decodes chunked, read-until-close, HTTP/1.0 and HEAD responses.
// Method: origin picks the framing from the URL.
#[test]
fn response_framings() {
    let body = pattern_body(100_000, 3);
    let b2 = body.clone();
    let o = Origin::start(move |req, _| match req.url.as_str() {
        "/chunked" => Reply::ok(&b2[..50_000])
            .chunked()
            .then(Duration::ZERO, &b2[50_000..]),
        "/eof" => Reply::ok(&b2).eof_framed(),
        "/http10" => Reply::ok(&b2).http10(),
        _ => Reply::ok(&b2),
    });
    let r = get(o.addr(), "/chunked", &[]);
    assert!(r.chunked);
    assert_eq!(r.body, body);
    let mut c = Client::connect(o.addr());
    let r = c.get("/eof", &[]);
    assert!(r.eof_delimited);
    assert_eq!(r.body, body);
    assert!(c.wait_closed(Duration::from_secs(1)).is_ok());
    let mut c = Client::connect(o.addr());
    let r = c.get("/http10", &[]);
    assert_eq!(r.version, "HTTP/1.0");
    assert_eq!(r.body, body);
    assert!(c.wait_closed(Duration::from_secs(1)).is_ok());
    let mut c = Client::connect(o.addr());
    let r = c.request("HEAD", "/cl", &[], None);
    assert_eq!(r.header("Content-Length"), Some("100000"));
    assert!(r.body.is_empty());
    assert_eq!(c.get("/cl", &[]).body, body);
}

// Goal: request bodies (Content-Length and chunked) are recorded intact by the origin.
#[test]
fn origin_records_request_bodies() {
    let o = Origin::start(|req, _| Reply::ok(format!("{}", req.body.len())));
    let body = pattern_body(70_000, 9);
    let r = request(o.addr(), "POST", "/cl", &[], Some(&body));
    assert_eq!(r.body_str(), "70000");
    let chunked = encode_chunked(&[&body[..1000], &body[1000..]]);
    let r = request(
        o.addr(),
        "POST",
        "/te",
        &[("Transfer-Encoding", "chunked")],
        Some(&chunked),
    );
    assert_eq!(r.body_str(), "70000");
    let reqs = o.requests();
    assert_eq!(reqs[0].body, body);
    assert!(!reqs[0].chunked);
    assert_eq!(reqs[1].body, body);
    assert!(reqs[1].chunked);
}

// Goal: streamed replies arrive in pieces: head and first part early, the rest after the pause.
#[test]
fn streamed_reply_timing() {
    let o = Origin::start(|_, _| {
        Reply::ok("first")
            .chunked()
            .then(Duration::from_millis(600), "second")
    });
    let mut c = Client::connect(o.addr());
    let r = c.get("/", &[]);
    assert_eq!(r.body_str(), "firstsecond");
    let head = r.head_at - r.started_at;
    let first = r.first_body_at.unwrap() - r.started_at;
    let total = r.done_at - r.started_at;
    assert!(head < Duration::from_millis(400), "{head:?}");
    assert!(first < Duration::from_millis(400), "{first:?}");
    assert!(total >= Duration::from_millis(550), "{total:?}");
}

// Goal: the failure modes of the origin behave as the scenario tests expect.
// Method: close-without-answer → client sees EOF; hang → client times out; raw bytes pass
// through; close_after closes the idle connection; delay delays.
#[test]
fn origin_failure_modes() {
    let o = Origin::start(|req, _| match req.url.as_str() {
        "/close" => Reply::close_without_answer(),
        "/hang" => Reply::hang(),
        "/raw" => Reply::raw("HTTP/1.1 204 No Content\r\nX-Raw: 1\r\n\r\n"),
        "/later" => Reply::ok("x").close_after(Duration::from_millis(200)),
        _ => Reply::ok("slow").delay_ms(300),
    });
    let mut c = Client::connect(o.addr());
    c.send(&build_request("GET", "/close", &[], None));
    assert!(c.try_read_response(false).is_err());

    let mut c = Client::connect(o.addr());
    c.timeout = Duration::from_millis(300);
    c.send(&build_request("GET", "/hang", &[], None));
    let e = c.try_read_response(false).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);

    let r = get(o.addr(), "/raw", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Raw"), Some("1"));

    let mut c = Client::connect(o.addr());
    assert_eq!(c.get("/later", &[]).body_str(), "x");
    let closed = c.wait_closed(Duration::from_secs(2)).expect("closed");
    assert!(closed >= Duration::from_millis(100), "{closed:?}");

    let (r, t) = timed_get(o.addr(), "/slow", &[]);
    assert_eq!(r.body_str(), "slow");
    assert!(t >= Duration::from_millis(280), "{t:?}");
}

// Goal: a shut-down origin refuses connections; the peer-close and in-flight counters work.
#[test]
fn origin_shutdown_refuses_and_counters() {
    let mut o = Origin::start(|_, _| Reply::ok("x").delay_ms(200));
    let addr = o.addr();
    let rs = parallel(4, |_| get(addr, "/", &[]).status);
    assert_eq!(rs, vec![200; 4]);
    assert!(
        o.max_in_flight() >= 2,
        "max in flight {}",
        o.max_in_flight()
    );
    {
        let mut c = Client::connect(addr);
        c.get("/", &[]);
    }
    assert!(wait_until(Duration::from_secs(2), || o.peer_closed_count() >= 1));
    o.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", dead_port())).is_err());
}

// Goal: helpers produce correct values.
#[test]
fn helpers() {
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(
        decode_chunked(b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nrest").unwrap(),
        Some((b"abc".to_vec(), 23))
    );
    assert_eq!(decode_chunked(b"3\r\nab").unwrap(), None);
    assert!(decode_chunked(b"zz\r\n").is_err());
    assert_eq!(pattern_body(10, 1), pattern_body(10, 1));
    assert_ne!(pattern_body(10, 1), pattern_body(10, 2));
}

// The shard macro itself: a scenario called once per shard count.
fn shard_macro_smoke(cores: usize) {
    assert!(cores == 1 || cores == 2);
}
shard_tests!(shard_macro_smoke);
