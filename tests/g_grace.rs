//! Grace (stale-while-revalidate) and background fetches, Varnish semantics: an expired object
//! within grace is delivered at once while exactly one background fetch refreshes it; a failed
//! background fetch keeps the stale object; past ttl+grace with the origin down → 503.

#[macro_use]
mod common;

use common::*;
use std::thread::sleep;
use std::time::Duration;

shard_tests!(
    stale_served_then_one_bgfetch,
    slow_bgfetch_does_not_block,
    origin_down_grace_then_503,
    failed_bgfetch_keeps_stale,
    stale_while_revalidate_sets_grace,
    concurrent_stale_requests_one_bgfetch,
);

const FAST: Duration = Duration::from_millis(500);

// Goal: after expiry (max-age=1, default grace 10 s) the object is served stale at once and
// exactly one background fetch happens; afterwards the new object is served.
// Method: miss (v0); sleep 1.5 s; GET → v0 fast; several more GETs while/after the bgfetch;
// wait for the origin's 2nd request; then GETs must return v1 with the origin still at 2.
fn stale_served_then_one_bgfetch(cores: usize) {
    let o = Origin::start(|_, i| Reply::ok(format!("v{i}")).cc("max-age=1"));
    let s = Server::for_origin(&o, cores, &[]);
    assert_eq!(get(s.addr(), "/g", &[]).body_str(), "v0");
    sleep(Duration::from_millis(1500));
    let (r, t) = timed_get(s.addr(), "/g", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        "v0",
        "expired object within grace must be served stale"
    );
    assert!(t < FAST, "stale delivery took {t:?}");
    assert!(
        o.wait_for_requests(2, Duration::from_secs(3)),
        "no background fetch"
    );
    // Let the bgfetch land, then the new object must be served and no further fetch happen.
    sleep(Duration::from_millis(300));
    for _ in 0..4 {
        let r = get(s.addr(), "/g", &[]);
        assert_eq!(
            r.body_str(),
            "v1",
            "refreshed object must replace the stale one"
        );
    }
    sleep(Duration::from_millis(100));
    assert_eq!(o.request_count(), 2, "exactly one background fetch");
}

// Goal: during a slow background fetch (origin takes 3 s) every request gets the stale object
// without waiting, and no second fetch is started; then the new object is served.
// Method: after expiry, one GET triggers the bgfetch, then 5 concurrent GETs and 3 sequential
// ones, each must answer v0 in < 500 ms; after the bgfetch completes, GET → v1.
fn slow_bgfetch_does_not_block(cores: usize) {
    let o = Origin::start(|_, i| {
        let r = Reply::ok(format!("v{i}")).cc("max-age=1");
        if i == 0 {
            r
        } else {
            // Long enough that the nine requests below all fall inside the background
            // fetch even on a loaded 2-core machine.
            r.delay(Duration::from_secs(3))
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    let addr = s.addr();
    assert_eq!(get(addr, "/slow", &[]).body_str(), "v0");
    sleep(Duration::from_millis(1500));
    let (r, t) = timed_get(addr, "/slow", &[]);
    assert_eq!(r.body_str(), "v0");
    assert!(t < FAST, "stale delivery waited for the bgfetch: {t:?}");
    let rs = parallel(5, |_| timed_get(addr, "/slow", &[]));
    for (r, t) in &rs {
        assert_eq!(r.body_str(), "v0", "stale object during bgfetch");
        assert!(*t < FAST, "request during bgfetch waited {t:?}");
    }
    for _ in 0..3 {
        let (r, t) = timed_get(addr, "/slow", &[]);
        assert_eq!(r.body_str(), "v0");
        assert!(t < FAST, "request during bgfetch waited {t:?}");
    }
    assert_eq!(o.request_count(), 2, "one background fetch only");
    assert!(
        wait_until(Duration::from_secs(6), || get(addr, "/slow", &[])
            .body_str()
            == "v1"),
        "the background fetch's object must replace the stale one"
    );
    assert_eq!(get(addr, "/slow", &[]).body_str(), "v1");
    assert_eq!(o.request_count(), 2);
}

// Goal: with the origin down, the stale object is served for the whole grace period; after
// ttl+grace the request fails with 503 (guru meditation).
// Method: max-age=1, default_grace=2 (ttl+grace = 3 s). Cache v0, shut the origin down
// (connections refused). GETs at ~1.5 s and ~2.5 s → 200 v0; at ~4 s → 503 "Backend fetch
// failed".
fn origin_down_grace_then_503(cores: usize) {
    let mut o = Origin::start(|_, i| Reply::ok(format!("v{i}")).cc("max-age=1"));
    let s = Server::for_origin(&o, cores, &["-p", "default_grace=2"]);
    let t0 = std::time::Instant::now();
    assert_eq!(get(s.addr(), "/down", &[]).body_str(), "v0");
    o.shutdown();
    for at in [1500u64, 2500] {
        let now = t0.elapsed();
        let target = Duration::from_millis(at);
        if target > now {
            sleep(target - now);
        }
        let r = get(s.addr(), "/down", &[]);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "v0"),
            "stale object must be served during grace (t={:?})",
            t0.elapsed()
        );
    }
    let now = t0.elapsed();
    if now < Duration::from_millis(4000) {
        sleep(Duration::from_millis(4000) - now);
    }
    let r = get(s.addr(), "/down", &[]);
    assert_eq!(
        r.status,
        503,
        "past grace with origin down: {}",
        r.summary()
    );
    assert!(
        r.body_str().contains("Backend fetch failed"),
        "guru meditation body expected: {}",
        r.summary()
    );
}

// Goal: a background fetch that fails (origin closes the connection without answering) keeps
// the stale object.
// Method: first request cached (max-age=1); later requests → close without answer. After
// expiry: GET → v0 (triggers the failing bgfetch); wait until the origin saw it; GETs → still
// 200 v0.
fn failed_bgfetch_keeps_stale(cores: usize) {
    let o = Origin::start(|_, i| {
        if i == 0 {
            Reply::ok("v0").cc("max-age=1")
        } else {
            Reply::close_without_answer()
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    assert_eq!(get(s.addr(), "/f", &[]).body_str(), "v0");
    sleep(Duration::from_millis(1500));
    let r = get(s.addr(), "/f", &[]);
    assert_eq!((r.status, r.body_str().as_str()), (200, "v0"));
    assert!(
        o.wait_for_requests(2, Duration::from_secs(3)),
        "no background fetch attempted"
    );
    sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let r = get(s.addr(), "/f", &[]);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "v0"),
            "failed bgfetch must keep the stale object: {}",
            r.summary()
        );
    }
}

// Goal: Cache-Control stale-while-revalidate=N sets the object's grace.
// Method: default_grace=0. /swr has max-age=1, stale-while-revalidate=5; /plain only
// max-age=1. After 1.5 s: /swr is served stale (v0, fast) with a bgfetch; /plain is a
// synchronous miss returning the new body.
fn stale_while_revalidate_sets_grace(cores: usize) {
    let o = Origin::start(|req, i| {
        let cc = if req.url == "/swr" {
            "max-age=1, stale-while-revalidate=5"
        } else {
            "max-age=1"
        };
        Reply::ok(format!("{}-v{i}", &req.url[1..])).cc(cc)
    });
    let s = Server::for_origin(&o, cores, &["-p", "default_grace=0"]);
    let swr0 = get(s.addr(), "/swr", &[]).body_str();
    let plain0 = get(s.addr(), "/plain", &[]).body_str();
    sleep(Duration::from_millis(1500));
    let (r, t) = timed_get(s.addr(), "/swr", &[]);
    assert_eq!(
        r.body_str(),
        swr0,
        "stale-while-revalidate=5 must give grace"
    );
    assert!(t < FAST, "{t:?}");
    assert!(
        wait_until(Duration::from_secs(3), || o.count_url("/swr") == 2),
        "no background fetch for /swr"
    );
    let r = get(s.addr(), "/plain", &[]);
    assert_ne!(
        r.body_str(),
        plain0,
        "no grace (default_grace=0): synchronous refetch"
    );
    assert_eq!(o.count_url("/plain"), 2);
}

// Goal: many concurrent requests arriving right after expiry (spread over the shards) all get
// the stale object at once and trigger exactly one background fetch between them.
// Method: max-age=1; the refresh takes 700 ms at the origin; after 1.5 s, 20 concurrent GETs
// on fresh connections: all 200 v0 in < 500 ms, origin sees exactly 2 requests in total, and
// after the refresh the new body is served.
fn concurrent_stale_requests_one_bgfetch(cores: usize) {
    let o = Origin::start(|_, i| {
        let r = Reply::ok(format!("v{i}")).cc("max-age=1");
        if i == 0 {
            r
        } else {
            r.delay_ms(700)
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    let addr = s.addr();
    assert_eq!(get(addr, "/cs", &[]).body_str(), "v0");
    sleep(Duration::from_millis(1500));
    let rs = parallel(20, |_| timed_get(addr, "/cs", &[]));
    for (r, t) in &rs {
        assert_eq!((r.status, r.body_str().as_str()), (200, "v0"));
        assert!(*t < FAST, "stale delivery waited {t:?}");
    }
    sleep(Duration::from_millis(1000));
    assert_eq!(get(addr, "/cs", &[]).body_str(), "v1");
    assert_eq!(o.request_count(), 2, "exactly one background fetch");
}
