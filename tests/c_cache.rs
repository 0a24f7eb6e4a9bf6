//! Cache semantics (Varnish 7.1 builtin VCL behaviour): hits, TTL derivation, hit-for-miss,
//! builtin pass rules, Vary, conditional delivery, HEAD, keep/revalidation and request
//! coalescing. Every scenario runs with 1 and 2 shards.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

shard_tests!(
    hit_after_miss,
    ttl_expiry,
    default_ttl_applies,
    age_arithmetic,
    s_maxage_beats_max_age,
    hit_for_miss_set_cookie,
    pass_authorization,
    pass_cookie,
    post_passes,
    vary_accept_encoding_variants,
    vary_accept_language_variants,
    conditional_304,
    head_on_cached_object,
    coalescing_50_concurrent_misses,
    keep_revalidates_with_conditional_fetch,
    uncacheable_status_not_cached,
    request_cache_control_ignored,
    head_miss_fetches_with_get,
);

fn counting_origin(cc: &'static str) -> Origin {
    Origin::start(move |_, i| Reply::ok(format!("body{i}")).cc(cc))
}

// Goal: a cacheable object is fetched once and then served from cache.
// Method: origin answers max-age=60; one GET then several GETs on fresh connections (so with 2
// shards some land on the other shard). Origin must see exactly 1 request; the miss carries
// `X-Varnish: <xid>`, hits `X-Varnish: <xid> <objxid>` plus `Age` and `Via`.
fn hit_after_miss(cores: usize) {
    let o = counting_origin("max-age=60");
    let s = Server::for_origin(&o, cores, &[]);
    let r1 = get(s.addr(), "/hit", &[]);
    assert_eq!(r1.status, 200, "{}", r1.summary());
    assert_eq!(r1.body_str(), "body0");
    assert_eq!(r1.xids().len(), 1, "miss X-Varnish: {}", r1.summary());
    assert!(r1.age().is_some(), "miss without Age: {}", r1.summary());
    assert!(
        r1.header("Via").is_some_and(|v| v.contains(&via_token())),
        "Via missing: {}",
        r1.summary()
    );
    for _ in 0..6 {
        let r = get(s.addr(), "/hit", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "body0");
        let x = r.xids();
        assert_eq!(
            x.len(),
            2,
            "hit must have X-Varnish '<xid> <objxid>': {}",
            r.summary()
        );
        assert_ne!(x[0], x[1]);
        assert_ne!(x[0], r1.xids()[0], "new request must get a new xid");
        assert!(r.age().is_some(), "hit without Age: {}", r.summary());
        assert!(r.header("Via").is_some_and(|v| v.contains(&via_token())));
    }
    assert_eq!(o.request_count(), 1, "origin must see exactly one request");
}

// Goal: an object with max-age=1 expires; the next request after ~1.5 s is a new fetch.
// Method: default_grace=0 so the expired object is not served stale; miss, hit, sleep 1.5 s,
// request again and expect the new body and a second origin request.
fn ttl_expiry(cores: usize) {
    let o = counting_origin("max-age=1");
    let s = Server::for_origin(&o, cores, &["-p", "default_grace=0"]);
    assert_eq!(get(s.addr(), "/ttl", &[]).body_str(), "body0");
    let r = get(s.addr(), "/ttl", &[]);
    assert_eq!(r.body_str(), "body0");
    assert!(r.is_hit(), "{}", r.summary());
    assert_eq!(o.request_count(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    let r = get(s.addr(), "/ttl", &[]);
    assert_eq!(r.body_str(), "body1", "expired object must be refetched");
    assert_eq!(o.request_count(), 2);
}

// Goal: a response without Cache-Control/Expires gets default_ttl.
// Method: -p default_ttl=1, default_grace=0; hit right away, refetch after 1.5 s.
fn default_ttl_applies(cores: usize) {
    let o = Origin::start(|_, i| Reply::ok(format!("body{i}")));
    let s = Server::for_origin(&o, cores, &["-p", "default_ttl=1", "-p", "default_grace=0"]);
    assert_eq!(get(s.addr(), "/d", &[]).body_str(), "body0");
    let r = get(s.addr(), "/d", &[]);
    assert!(r.is_hit(), "{}", r.summary());
    assert_eq!(o.request_count(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(s.addr(), "/d", &[]).body_str(), "body1");
    assert_eq!(o.request_count(), 2);
}

// Goal: the origin's Age counts against max-age (t_origin = now - Age) and is reflected in the
// delivered Age.
// Method: origin sends `Age: 5` and `max-age=7` (2 s of freshness left; shorter than the
// brief's max-age=10 to keep the suite fast). Delivered Age must be >= 5 on miss and hit; the
// object must be refetched after 2.5 s (and not before).
fn age_arithmetic(cores: usize) {
    let o = Origin::start(|_, i| {
        Reply::ok(format!("body{i}"))
            .cc("max-age=7")
            .header("Age", "5")
    });
    let s = Server::for_origin(&o, cores, &["-p", "default_grace=0"]);
    let r1 = get(s.addr(), "/age", &[]);
    let a1 = r1.age().expect("Age on miss");
    assert!((5..7).contains(&a1), "miss Age {a1} must be in 5..7");
    let r2 = get(s.addr(), "/age", &[]);
    assert!(r2.is_hit(), "{}", r2.summary());
    let a2 = r2.age().expect("Age on hit");
    assert!((5..7).contains(&a2), "hit Age {a2} must be in 5..7");
    assert_eq!(o.request_count(), 1);
    std::thread::sleep(Duration::from_millis(2500));
    let r3 = get(s.addr(), "/age", &[]);
    assert_eq!(
        r3.body_str(),
        "body1",
        "max-age 7 minus Age 5 = 2 s of TTL; must be refetched after 2.5 s"
    );
    assert_eq!(o.request_count(), 2);
}

// Goal: s-maxage takes precedence over max-age in both directions.
// Method: /s has max-age=1, s-maxage=10 (must still be a hit after 1.5 s); /m has max-age=10,
// s-maxage=1 (must be refetched after 1.5 s). default_grace=0.
fn s_maxage_beats_max_age(cores: usize) {
    let o = Origin::start(|req, i| {
        let cc = if req.url == "/s" {
            "max-age=1, s-maxage=10"
        } else {
            "max-age=10, s-maxage=1"
        };
        Reply::ok(format!("body{i}")).cc(cc)
    });
    let s = Server::for_origin(&o, cores, &["-p", "default_grace=0"]);
    get(s.addr(), "/s", &[]);
    get(s.addr(), "/m", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let rs = get(s.addr(), "/s", &[]);
    assert!(
        rs.is_hit(),
        "s-maxage=10 must keep /s cached: {}",
        rs.summary()
    );
    assert_eq!(o.count_url("/s"), 1);
    let rm = get(s.addr(), "/m", &[]);
    assert!(!rm.is_hit(), "s-maxage=1 must expire /m: {}", rm.summary());
    assert_eq!(o.count_url("/m"), 2);
}

// Goal: a response with Set-Cookie becomes hit-for-miss: every request goes to the origin, and
// concurrent requests for the key are NOT coalesced.
// Method: 3 sequential GETs (3 origin requests, none a hit, Set-Cookie delivered); then 8
// concurrent GETs with a 500 ms origin delay: origin must see all 8, handled concurrently
// (wall time < 2.5 s, while serialising them would take >= 4 s).
fn hit_for_miss_set_cookie(cores: usize) {
    let o = Origin::start(|_, i| {
        let r = Reply::ok(format!("body{i}"))
            .cc("max-age=60")
            .header("Set-Cookie", "session=abc");
        if i >= 3 {
            r.delay_ms(500)
        } else {
            r
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    for i in 0..3 {
        let r = get(s.addr(), "/hfm", &[]);
        assert_eq!(r.body_str(), format!("body{i}"));
        assert!(
            !r.is_hit(),
            "hit-for-miss must not be a hit: {}",
            r.summary()
        );
        assert_eq!(r.header("Set-Cookie"), Some("session=abc"));
    }
    assert_eq!(o.request_count(), 3);
    let addr = s.addr();
    let (rs, t) = timed(|| parallel(8, |_| get(addr, "/hfm", &[])));
    for r in &rs {
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        o.request_count(),
        11,
        "each concurrent request on a hit-for-miss key must go to the origin"
    );
    assert!(
        t < Duration::from_millis(2500),
        "hit-for-miss requests were serialised (took {t:?}, max in flight at origin {})",
        o.max_in_flight()
    );
}

fn pass_by_header(cores: usize, name: &str, value: &str) {
    let o = counting_origin("max-age=60");
    let s = Server::for_origin(&o, cores, &[]);
    for i in 0..2 {
        let r = get(s.addr(), "/priv", &[(name, value)]);
        assert_eq!(r.body_str(), format!("body{i}"), "{name} request must pass");
        assert!(!r.is_hit(), "{}", r.summary());
    }
    assert_eq!(o.request_count(), 2);
    for req in o.requests() {
        assert_eq!(req.header(name), Some(value), "{name} must be forwarded");
    }
    // A pass does not insert the object: the first plain request is a miss, the next a hit.
    assert_eq!(get(s.addr(), "/priv", &[]).body_str(), "body2");
    let r = get(s.addr(), "/priv", &[]);
    assert_eq!(r.body_str(), "body2");
    assert!(r.is_hit(), "{}", r.summary());
    assert_eq!(o.request_count(), 3);
}

// Goal: requests with Authorization pass (builtin vcl_recv), each reaching the origin.
// Method: two GETs with Authorization → 2 origin requests carrying the header; the pass did
// not insert: a plain GET is then a miss and the next one a hit.
fn pass_authorization(cores: usize) {
    pass_by_header(cores, "Authorization", "Basic dXNlcjpwYXNz");
}

// Goal/method: as pass_authorization, with a Cookie request header.
fn pass_cookie(cores: usize) {
    pass_by_header(cores, "Cookie", "a=b");
}

// Goal: POST passes: never served from cache, never inserted.
// Method: GET /p caches it; two POSTs to /p reach the origin with their bodies; GET /p is still
// a hit on the GET object. POST /q then GET /q: the GET goes to the origin.
fn post_passes(cores: usize) {
    let o = counting_origin("max-age=60");
    let s = Server::for_origin(&o, cores, &[]);
    assert_eq!(get(s.addr(), "/p", &[]).body_str(), "body0");
    for i in 1..=2 {
        let body = format!("payload{i}");
        let r = request(s.addr(), "POST", "/p", &[], Some(body.as_bytes()));
        assert_eq!(r.body_str(), format!("body{i}"), "POST must pass");
    }
    let reqs = o.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].body, b"payload1");
    assert_eq!(reqs[2].body, b"payload2");
    let r = get(s.addr(), "/p", &[]);
    assert_eq!(r.body_str(), "body0");
    assert!(r.is_hit());
    request(s.addr(), "POST", "/q", &[], Some(b"x"));
    assert_eq!(get(s.addr(), "/q", &[]).body_str(), "body4");
    assert_eq!(o.count_url("/q"), 2);
    assert_eq!(o.requests()[4].method, "GET");
}

fn vary_case(cores: usize, header: &'static str, a: &str, b: &str) {
    let o = Origin::start(move |req, i| {
        let v = req.header(header).unwrap_or("").to_string();
        Reply::ok(format!("variant[{v}]#{i}"))
            .cc("max-age=60")
            .header("Vary", header)
    });
    let s = Server::for_origin(&o, cores, &[]);
    let ha = [(header, a)];
    let hb = [(header, b)];
    let a1 = get(s.addr(), "/v", &ha);
    let b1 = get(s.addr(), "/v", &hb);
    assert_eq!(
        o.request_count(),
        2,
        "the {header}: {b} request must not hit the {a} variant"
    );
    assert_ne!(a1.body, b1.body);
    for _ in 0..2 {
        let r = get(s.addr(), "/v", &ha);
        assert!(r.is_hit(), "{}", r.summary());
        assert_eq!(r.body, a1.body, "{a} request must get the {a} variant");
        let r = get(s.addr(), "/v", &hb);
        assert!(r.is_hit(), "{}", r.summary());
        assert_eq!(r.body, b1.body, "{b} request must get the {b} variant");
    }
    assert_eq!(o.request_count(), 2);
}

// Goal: Vary: Accept-Encoding keeps one variant per request Accept-Encoding (as the brief
// specifies). NB: real Varnish 7.1 with http_gzip_support=on normalises Accept-Encoding and
// fetches with `Accept-Encoding: gzip`, so there gzip and br share one variant.
// Method: origin echoes the header it saw plus a counter into the body. gzip and br requests
// must produce two origin fetches with different bodies; repeating each gives a hit with its
// own variant's body.
fn vary_accept_encoding_variants(cores: usize) {
    vary_case(cores, "Accept-Encoding", "gzip", "br");
}

// Goal: Vary on a header without special handling (Accept-Language) keeps one variant per
// value. Method: as vary_accept_encoding_variants with "en" and "fr".
fn vary_accept_language_variants(cores: usize) {
    vary_case(cores, "Accept-Language", "en", "fr");
}

// Goal: conditional requests on a cached object: 304 when If-None-Match matches the ETag or
// If-Modified-Since >= Last-Modified, 200 otherwise; all served from cache.
// Method: one keep-alive connection (a 304 must not carry a body that would desync it).
fn conditional_304(cores: usize) {
    let lm = http_date(1_600_000_000);
    let lm2 = lm.clone();
    let o = Origin::start(move |_, _| {
        Reply::ok("conditional body")
            .cc("max-age=60")
            .header("ETag", "\"v1\"")
            .header("Last-Modified", &lm2)
    });
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    assert_eq!(c.get("/c", &[]).status, 200);
    let r = c.get("/c", &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 304, "matching INM: {}", r.summary());
    assert!(r.body.is_empty());
    assert_eq!(r.header("ETag"), Some("\"v1\""));
    let r = c.get("/c", &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200, "non-matching INM: {}", r.summary());
    assert_eq!(r.body_str(), "conditional body");
    let r = c.get("/c", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304, "IMS == Last-Modified: {}", r.summary());
    assert!(r.body.is_empty());
    let r = c.get("/c", &[("If-Modified-Since", &http_date(1_500_000_000))]);
    assert_eq!(r.status, 200, "IMS before Last-Modified: {}", r.summary());
    assert_eq!(r.body_str(), "conditional body");
    assert_eq!(
        o.request_count(),
        1,
        "all conditional answers come from cache"
    );
}

// Goal: HEAD on a cached object returns the headers with Content-Length and no body.
// Method: GET caches a 1234-byte object; on a new connection HEAD then GET: the GET must parse
// cleanly right after the HEAD (no stray body bytes) and nothing may be left over.
fn head_on_cached_object(cores: usize) {
    let body = pattern_body(1234, 5);
    let b2 = body.clone();
    let o = Origin::start(move |_, _| Reply::ok(&b2).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    assert_eq!(get(s.addr(), "/h", &[]).body, body);
    let mut c = Client::connect(s.addr());
    let h = c.request("HEAD", "/h", &[], None);
    assert_eq!(h.status, 200, "{}", h.summary());
    assert_eq!(h.header("Content-Length"), Some("1234"), "{}", h.summary());
    assert!(h.is_hit(), "{}", h.summary());
    let g = c.get("/h", &[]);
    assert_eq!(g.status, 200, "{}", g.summary());
    assert_eq!(g.body, body);
    assert!(c.buffered().is_empty(), "stray bytes after HEAD + GET");
    assert!(c.is_open(Duration::from_millis(200)));
    assert_eq!(o.request_count(), 1);
}

// Goal: request coalescing: 50 concurrent misses for one URL on a slow origin (500 ms) cause
// exactly one origin request, and all 50 clients get the same body.
// Method: 50 threads released together, each on its own connection (spread over the shards).
fn coalescing_50_concurrent_misses(cores: usize) {
    let o = Origin::start(|_, i| {
        Reply::ok(format!("coalesced{i}"))
            .cc("max-age=60")
            .delay_ms(500)
    });
    let s = Server::for_origin(&o, cores, &[]);
    let addr = s.addr();
    let rs = parallel(50, |_| get(addr, "/co", &[]));
    for r in &rs {
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.body_str(), "coalesced0");
    }
    assert_eq!(
        o.request_count(),
        1,
        "50 concurrent misses must be coalesced into one fetch"
    );
}

// Goal: default_keep keeps an expired object as a revalidation candidate: the refetch is
// conditional (If-None-Match from the ETag) and a 304 from the origin refreshes the stored
// object, which is delivered as 200 with the old body.
// Method: default_grace=0, default_keep=10, max-age=1, ETag "e1"; after 1.5 s the origin must
// see If-None-Match "e1" and answers 304 (max-age=60); client gets 200 "original"; the next
// request is a hit.
fn keep_revalidates_with_conditional_fetch(cores: usize) {
    let o = Origin::start(|req, i| {
        if i > 0 && req.header("If-None-Match") == Some("\"e1\"") {
            Reply::new(304).cc("max-age=60").header("ETag", "\"e1\"")
        } else {
            Reply::ok(if i == 0 { "original" } else { "refetched" })
                .cc("max-age=1")
                .header("ETag", "\"e1\"")
        }
    });
    let s = Server::for_origin(
        &o,
        cores,
        &["-p", "default_grace=0", "-p", "default_keep=10"],
    );
    assert_eq!(get(s.addr(), "/k", &[]).body_str(), "original");
    std::thread::sleep(Duration::from_millis(1500));
    let r = get(s.addr(), "/k", &[]);
    assert_eq!(o.request_count(), 2);
    let reqs = o.requests();
    assert_eq!(
        reqs[1].header("If-None-Match"),
        Some("\"e1\""),
        "refetch of a kept object must be conditional; origin saw {:?}",
        reqs[1].headers
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "original", "304 must refresh the kept object");
    let r = get(s.addr(), "/k", &[]);
    assert!(r.is_hit(), "{}", r.summary());
    assert_eq!(r.body_str(), "original");
    assert_eq!(o.request_count(), 2);
}

// Goal: status codes outside Varnish's cacheable list (here 500, 503) are not cached even with
// max-age, while cacheable ones (404) are cached with default_ttl.
// Method: /e500 and /e503 requested twice → 2 origin requests each; /nf (404, no CC) twice →
// 1 origin request.
fn uncacheable_status_not_cached(cores: usize) {
    let o = Origin::start(|req, _| match req.url.as_str() {
        "/e500" => Reply::new(500).body("err").cc("max-age=60"),
        "/e503" => Reply::new(503).body("err").cc("max-age=60"),
        _ => Reply::new(404).body("nf"),
    });
    let s = Server::for_origin(&o, cores, &[]);
    for _ in 0..2 {
        assert_eq!(get(s.addr(), "/e500", &[]).status, 500);
        assert_eq!(get(s.addr(), "/e503", &[]).status, 503);
        assert_eq!(get(s.addr(), "/nf", &[]).status, 404);
    }
    assert_eq!(o.count_url("/e500"), 2, "500 must not be cached");
    assert_eq!(o.count_url("/e503"), 2, "503 must not be cached");
    assert_eq!(o.count_url("/nf"), 1, "404 is cacheable (default_ttl)");
}

// Goal: request Cache-Control (no-cache, max-age=0) and Pragma are ignored by default.
// Method: cache an object, then request it with those headers: still hits, origin sees 1.
fn request_cache_control_ignored(cores: usize) {
    let o = counting_origin("max-age=60");
    let s = Server::for_origin(&o, cores, &[]);
    get(s.addr(), "/rcc", &[]);
    for h in [
        ("Cache-Control", "no-cache"),
        ("Cache-Control", "max-age=0"),
        ("Pragma", "no-cache"),
    ] {
        let r = get(s.addr(), "/rcc", &[h]);
        assert!(r.is_hit(), "{h:?}: {}", r.summary());
    }
    assert_eq!(o.request_count(), 1);
}

// Goal: a HEAD miss is fetched from the origin with GET (Varnish), so the object is cached
// and a following GET is a hit with the full body.
// Method: HEAD /hm (no body, Content-Length 321); origin must have seen GET; GET /hm → hit.
fn head_miss_fetches_with_get(cores: usize) {
    let body = pattern_body(321, 3);
    let b2 = body.clone();
    let o = Origin::start(move |_, _| Reply::ok(&b2).cc("max-age=60"));
    let s = Server::for_origin(&o, cores, &[]);
    let mut c = Client::connect(s.addr());
    let h = c.request("HEAD", "/hm", &[], None);
    assert_eq!(h.status, 200, "{}", h.summary());
    assert_eq!(h.header("Content-Length"), Some("321"), "{}", h.summary());
    assert_eq!(
        o.requests()[0].method,
        "GET",
        "HEAD miss must be fetched with GET"
    );
    let g = c.get("/hm", &[]);
    assert!(g.is_hit(), "{}", g.summary());
    assert!(g.body == body);
    assert_eq!(o.request_count(), 1);
}
