//! Backend connection pool: reuse of idle connections, transparent single retry when a reused
//! connection turns out to be closed, and backend_idle_timeout.
//!
//! Pools are per shard, so with 2 shards up to 2 origin connections are legitimate; the
//! assertions are `<= cores` where that matters (exact for 1 shard).

#[macro_use]
mod common;

use common::*;
use std::thread::sleep;
use std::time::Duration;

shard_tests!(
    sequential_misses_reuse_connection,
    origin_closes_idle_pooled_connection,
    reused_connection_closed_without_answer_is_retried,
    backend_idle_timeout_closes_pooled_connection,
);

// Goal: sequential misses reuse the pooled origin connection.
// Method: 2 misses on fresh client connections → with 1 shard the origin counts 1 connection
// and 2 requests; then 8 more misses: still at most one origin connection per shard. A 20 ms
// pause between requests lets the fetch hand its connection back to the pool after the client
// got the response (real Varnish 7.1 races here too and opens a second connection without it).
fn sequential_misses_reuse_connection(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(req.url.clone()).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    let pause = || sleep(Duration::from_millis(20));
    assert_eq!(get(s.addr(), "/a", &[]).body_str(), "/a");
    pause();
    assert_eq!(get(s.addr(), "/b", &[]).body_str(), "/b");
    assert_eq!(o.request_count(), 2);
    if cores == 1 {
        assert_eq!(
            o.conn_count(),
            1,
            "second miss must reuse the first connection"
        );
    }
    for i in 0..8 {
        pause();
        let url = format!("/n{i}");
        assert_eq!(get(s.addr(), &url, &[]).body_str(), url);
    }
    assert_eq!(o.request_count(), 10);
    assert!(
        o.conn_count() <= cores,
        "{} origin connections for 10 sequential misses with {cores} shard(s)",
        o.conn_count()
    );
}

// Goal: the origin closes an idle keep-alive connection (after answering without
// `Connection: close`); the next request is served transparently (retried on a fresh
// connection if the stale one was picked) and the client sees 200.
// Method: every reply closes its connection 200 ms after responding. Requests 600 ms apart on
// one client connection (same shard): each must succeed, each on a new origin connection.
fn origin_closes_idle_pooled_connection(cores: usize) {
    let o = Origin::start(|req, _| {
        Reply::ok(req.url.clone())
            .cc("max-age=60")
            .close_after(Duration::from_millis(200))
    });
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    for i in 0..3 {
        let url = format!("/c{i}");
        let r = c.get(&url, &[]);
        assert_eq!(r.status, 200, "request {i}: {}", r.summary());
        assert_eq!(r.body_str(), url);
        sleep(Duration::from_millis(600));
    }
    assert_eq!(o.request_count(), 3);
    let served: usize = o.conns().iter().filter(|c| c.requests > 0).count();
    assert_eq!(served, 3, "each request needs a fresh origin connection");
}

// Goal: a reused pooled connection that the origin closes after reading the request (no
// answer) is retried once on a fresh connection; the client sees 200 (Varnish's automatic
// retry on a recycled connection).
// Method: the origin answers the first request on each connection and closes without answer
// on any later one. Two misses on one client connection.
fn reused_connection_closed_without_answer_is_retried(cores: usize) {
    let o = Origin::start(|req, _| {
        if req.seq_on_conn == 0 {
            Reply::ok(req.url.clone()).cc("max-age=60")
        } else {
            Reply::close_without_answer()
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    for i in 0..3 {
        let url = format!("/r{i}");
        let r = c.get(&url, &[]);
        assert_eq!(r.status, 200, "request {i}: {}", r.summary());
        assert_eq!(r.body_str(), url);
    }
    // Each URL answered exactly once; any extra request is an abandoned attempt on a reused
    // connection followed by one retry.
    for i in 0..3 {
        let n = o.count_url(&format!("/r{i}"));
        assert!((1..=2).contains(&n), "/r{i} sent {n} times");
    }
    if cores == 1 {
        // One shard, one pool: /r1 and /r2 were first sent on the reused connection (dropped
        // unanswered), then retried on a fresh one.
        let counts: Vec<usize> = (0..3).map(|i| o.count_url(&format!("/r{i}"))).collect();
        assert_eq!(
            counts,
            vec![1, 2, 2],
            "expected reuse of the pooled connection then one retry per request"
        );
    }
}

// Goal: backend_idle_timeout=1 closes pooled connections idle for more than 1 s; a request
// after 2 s idle uses a new connection.
// Method: miss, sleep 2 s, miss (same client connection): origin sees 2 connections and saw
// the first one closed by ringcache before the second request.
fn backend_idle_timeout_closes_pooled_connection(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(req.url.clone()).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &["-p", "backend_idle_timeout=1"]);
    let mut c = Client::connect(s.addr());
    assert_eq!(c.get("/i1", &[]).status, 200);
    sleep(Duration::from_millis(2000));
    let conns = o.conns();
    assert!(
        conns[0].closed_by_peer,
        "ringcache must close the pooled connection after backend_idle_timeout (1 s)"
    );
    assert_eq!(c.get("/i2", &[]).status, 200);
    assert_eq!(o.conn_count(), 2);
    assert_eq!(o.requests()[1].conn, 1);
}
