//! Serving with a VCL file (`-f FILE.vcl`), black box, to Varnish Cache 7.1's behaviour:
//! routing and header normalisation, synth pages, std.healthy guards, grace in vcl_hit,
//! PURGE behind an ACL, restarts, hit-for-pass, pipe, retries, VCL failures and obj.hits.
//!
//! Every expectation below that is not obvious from the VCL was checked against a real
//! varnishd 7.1.1 (`varnishd -a 127.0.0.1:PORT -f x.vcl` with small Python origins).

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

shard_tests!(
    routing_and_normalisation,
    synth_pages,
    healthy_guard,
    grace_in_vcl_hit,
    grace_by_req_grace,
    purge_with_acl,
    purge_denied_by_acl,
    restart_to_other_backend,
    restart_loop_ends_in_503,
    hit_for_pass,
    pipe_websocket,
    backend_retry_and_rewrite,
    vcl_failure,
    x_cache_from_obj_hits,
    seed_grace_legacy_fetch,
    log_and_error_events,
    loadtest_routing_vcl,
    abandon_and_backend_error,
);

/// An origin answering 200 with `"<name> <url>"` and echoing nothing else.
fn named_origin(name: &'static str) -> Origin {
    Origin::start(move |r, _| Reply::ok(format!("{name} {}", r.url)))
}

/// The lower-cased value of header `name` of the origin request, or "".
fn oh(r: &OriginRequest, name: &str) -> String {
    r.header(name).unwrap_or("").to_string()
}

/// A probe that starts sick (`.initial` below `.threshold`, as Varnish defines it) and stays
/// sick once probes run: the origins used with it answer `/probe` with 500.
const SICK_PROBE: &str = r#"probe failing {
    .url = "/probe";
    .initial = 0;
    .threshold = 3;
    .window = 5;
    .interval = 1s;
    .timeout = 1s;
}"#;

/// An origin answering `/probe` with 500 and everything else with 200 `"v<n>"` (n counts the
/// non-probe requests), with `Cache-Control` `cc` if given.
fn versioned_origin_failing_probe() -> Origin {
    let n = Arc::new(AtomicUsize::new(0));
    Origin::start(move |r, _| {
        if r.url == "/probe" {
            Reply::new(500).body("probe says no")
        } else {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Reply::ok(format!("v{i}"))
        }
    })
}

// ------------------------------------------------------------------------------------------
// 1. Routing and normalisation
// ------------------------------------------------------------------------------------------

// Goal: vcl_recv routes by Host and by URL between two backends, after lower-casing the Host
// (std.tolower) and stripping the query string (regsub); both normalisations are what the
// origin sees and what the cache key (builtin vcl_hash: url + host) is built from.
// Method: two fake origins; requests with mixed-case hosts and varying query strings; origin
// counts must show one fetch per normalised (host, path).
fn routing_and_normalisation(cores: usize) {
    let o1 = named_origin("o1");
    let o2 = named_origin("o2");
    let vcl = format!(
        r#"vcl 4.1;
import std;
{}
{}
sub vcl_recv {{
    set req.http.host = std.tolower(req.http.host);
    set req.url = regsub(req.url, "\?.*$", "");
    if (req.http.host ~ "^api\.") {{
        set req.backend_hint = b2;
    }} elsif (req.url ~ "^/static/") {{
        set req.backend_hint = b2;
    }} else {{
        set req.backend_hint = b1;
    }}
}}
"#,
        vcl_backend("b1", o1.addr()),
        vcl_backend("b2", o2.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();

    // Host routing + normalisation.
    let r = get(addr, "/v1/users?x=1", &[("Host", "API.Example.COM")]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o2 /v1/users");
    let reqs = o2.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].url, "/v1/users", "query string must be stripped");
    assert_eq!(
        oh(&reqs[0], "Host"),
        "api.example.com",
        "host must be lower-cased"
    );
    // Same normalised key: a hit, no second fetch.
    let r = get(addr, "/v1/users?y=2", &[("Host", "api.EXAMPLE.com")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "o2 /v1/users");
    assert_eq!(
        o2.count_url("/v1/users"),
        1,
        "normalised request must be a hit"
    );

    // URL routing.
    let r = get(addr, "/static/a.css?v=3", &[("Host", "www.example.com")]);
    assert_eq!(r.body_str(), "o2 /static/a.css");
    assert_eq!(o2.count_url("/static/a.css"), 1);
    assert_eq!(o1.count_url("/static/a.css"), 0);

    // Default backend.
    let r = get(addr, "/page?utm=1", &[("Host", "WWW.example.com")]);
    assert_eq!(r.body_str(), "o1 /page");
    let r = get(addr, "/page", &[("Host", "www.example.com")]);
    assert_eq!(r.body_str(), "o1 /page");
    assert_eq!(o1.count_url("/page"), 1, "second /page must be a hit");
    assert_eq!(
        oh(&o1.requests()[0], "Host"),
        "www.example.com",
        "host must be lower-cased"
    );
    // The host is part of the key: another host is another object.
    let r = get(addr, "/page", &[("Host", "other.example.com")]);
    assert_eq!(r.body_str(), "o1 /page");
    assert_eq!(o1.count_url("/page"), 2, "another host must be a miss");
    assert_eq!(o1.request_count() + o2.request_count(), 4);
}

// ------------------------------------------------------------------------------------------
// 2. Synthetic responses
// ------------------------------------------------------------------------------------------

// Goal: return (synth(...)) from vcl_recv with a custom vcl_synth (headers + synthetic body),
// the 7xx redirect trick, and the builtin guru-meditation page when vcl_synth falls through;
// the client connection stays alive across synths.
// Method: one keep-alive connection through every case; the origin must see only /x.
// varnishd 7.1.1 answered: "418 Short" + body "I am a teapot: Short"; 750 → "301 Moved
// Permanently", Location as set, Content-Length 0; and for "404 Nothing here" the builtin page
// (text/html; charset=utf-8, Retry-After: 5, "<title>404 Nothing here</title>", "Guru
// Meditation"). Setting resp.status also resets resp.reason to the status' standard text.
fn synth_pages(cores: usize) {
    let o = named_origin("o");
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_recv {{
    if (req.url == "/teapot") {{ return (synth(418, "Short")); }}
    if (req.url == "/old") {{ return (synth(750, "/new")); }}
    if (req.url == "/old2") {{ return (synth(751, "/new2")); }}
    if (req.url == "/plain") {{ return (synth(404, "Nothing here")); }}
}}
sub vcl_synth {{
    if (resp.status == 418) {{
        set resp.http.X-Synth = "teapot";
        set resp.http.Content-Type = "text/plain; charset=utf-8";
        synthetic({{"I am a teapot: "}} + resp.reason);
        return (deliver);
    }}
    if (resp.status == 750) {{
        set resp.http.Location = "http://example.com" + resp.reason;
        set resp.status = 301;
        return (deliver);
    }}
    if (resp.status == 751) {{
        set resp.status = 302;
        set resp.http.Location = "http://example.com/" + resp.reason;
        return (deliver);
    }}
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());

    let r = c.get("/teapot", &[]);
    assert_eq!(r.status, 418, "{}", r.summary());
    assert_eq!(r.reason, "Short");
    assert_eq!(r.header("X-Synth"), Some("teapot"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body_str(), "I am a teapot: Short");

    // Keep-alive continues after a synth: a normal fetch on the same connection.
    let r = c.get("/x", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o /x");

    let r = c.get("/old", &[]);
    assert_eq!(r.status, 301, "{}", r.summary());
    assert_eq!(r.reason, "Moved Permanently");
    assert_eq!(r.header("Location"), Some("http://example.com/new"));
    assert!(
        r.body.is_empty(),
        "no synthetic body was set: {}",
        r.summary()
    );

    // `set resp.status` first: resp.reason is then the standard reason of the new status.
    let r = c.get("/old2", &[]);
    assert_eq!(r.status, 302, "{}", r.summary());
    assert_eq!(r.reason, "Found");
    assert_eq!(r.header("Location"), Some("http://example.com/Found"));

    // vcl_synth falls through to the builtin one: the guru meditation page.
    let r = c.get("/plain", &[]);
    assert_eq!(r.status, 404, "{}", r.summary());
    assert_eq!(r.reason, "Nothing here");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Retry-After"), Some("5"));
    let body = r.body_str();
    assert!(body.contains("<title>404 Nothing here</title>"), "{body}");
    assert!(body.contains("Error 404 Nothing here"), "{body}");
    assert!(body.contains("Guru Meditation"), "{body}");

    let r = c.get("/x", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(o.request_count(), 1, "synths must not reach the origin");
}

// ------------------------------------------------------------------------------------------
// 3. std.healthy
// ------------------------------------------------------------------------------------------

// Goal: `if (!std.healthy(req.backend_hint)) { return (synth(503, "Backend sick")); }`: a
// backend without a probe is healthy; one whose probe has `.initial` < `.threshold` starts
// sick (and stays sick: its probe URL answers 500). Without the guard, Varnish does not even
// connect to a sick backend: 503 "Backend fetch failed" (checked on varnishd 7.1.1).
// Method: two backends on the same origin, chosen by a request header.
fn healthy_guard(cores: usize) {
    let o = versioned_origin_failing_probe();
    let vcl = format!(
        r#"vcl 4.1;
import std;
{SICK_PROBE}
backend good {{ .host = "127.0.0.1"; .port = "{port}"; }}
backend sick {{ .host = "127.0.0.1"; .port = "{port}"; .probe = failing; }}
sub vcl_recv {{
    if (req.http.X-Use-Sick) {{
        set req.backend_hint = sick;
    }} else {{
        set req.backend_hint = good;
    }}
    if (req.url ~ "^/guard") {{
        if (!std.healthy(req.backend_hint)) {{
            return (synth(503, "Backend sick"));
        }}
    }}
}}
"#,
        port = o.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());

    let r = c.get("/guard/a", &[]);
    assert_eq!(
        r.status,
        200,
        "backend without probe is healthy: {}",
        r.summary()
    );
    assert_eq!(o.count_url("/guard/a"), 1);

    let r = c.get("/guard/b", &[("X-Use-Sick", "1")]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "Backend sick");
    assert!(r.body_str().contains("Backend sick"), "{}", r.summary());
    assert_eq!(o.count_url("/guard/b"), 0);

    // Keep-alive continues; the healthy one still works.
    let r = c.get("/guard/c", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());

    // No guard: Varnish refuses to fetch from a sick backend.
    let r = get(s.addr(), "/direct", &[("X-Use-Sick", "1")]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "Backend fetch failed");
    assert_eq!(
        o.count_url("/direct"),
        0,
        "a sick backend must not be connected to"
    );
}

// ------------------------------------------------------------------------------------------
// 4. Grace decided in vcl_hit (seed 002), and the Varnish 6+/7 idiom with req.grace
// ------------------------------------------------------------------------------------------

// Goal: the seed's grace vcl_hit: fresh → deliver; expired but in grace and the backend sick →
// deliver stale; otherwise go to the backend. Varnish 7.1 no longer accepts `return (fetch)`
// (nor `miss`) in vcl_hit ("Legal returns are: deliver fail pass restart synth"), so the
// "fetch" branch is written `return (pass)` here.
// Method: objects are filled through the healthy backend (ttl 1 s, grace 1 h); after expiry a
// request through the sick backend gets the stale copy (its background fetch cannot reach a
// sick backend: the origin sees nothing, the stale object stays), a request through the
// healthy one is passed to the origin (fresh body, not cached). varnishd 7.1.1 did exactly so.
fn grace_in_vcl_hit(cores: usize) {
    let o = versioned_origin_failing_probe();
    let vcl = format!(
        r#"vcl 4.1;
import std;
{SICK_PROBE}
backend good {{ .host = "127.0.0.1"; .port = "{port}"; }}
backend sick {{ .host = "127.0.0.1"; .port = "{port}"; .probe = failing; }}
sub vcl_recv {{
    if (req.http.X-Use-Sick) {{
        set req.backend_hint = sick;
    }} else {{
        set req.backend_hint = good;
    }}
}}
sub vcl_hit {{
    if (obj.ttl >= 0s) {{
        # A pure unadultered hit, deliver it
        return (deliver);
    }}
    if (!std.healthy(req.backend_hint) && (obj.ttl + obj.grace > 0s)) {{
        return (deliver);
    }} else {{
        return (pass);
    }}
}}
sub vcl_backend_response {{
    set beresp.ttl = 1s;
    set beresp.grace = 1h;
}}
"#,
        port = o.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();

    assert_eq!(get(addr, "/g", &[]).body_str(), "v0");
    // Fresh hit, through either backend.
    assert_eq!(get(addr, "/g", &[("X-Use-Sick", "1")]).body_str(), "v0");
    assert_eq!(o.count_url("/g"), 1);

    sleep(Duration::from_millis(1500));
    // Expired, sick backend: stale delivered.
    let r = get(addr, "/g", &[("X-Use-Sick", "1")]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(
        r.body_str(),
        "v0",
        "stale object must be delivered from grace"
    );
    sleep(Duration::from_millis(300));
    let r = get(addr, "/g", &[("X-Use-Sick", "1")]);
    assert_eq!(
        r.body_str(),
        "v0",
        "the stale object must survive the failed background fetch"
    );
    assert_eq!(
        o.count_url("/g"),
        1,
        "no request may reach the origin through the sick backend"
    );

    // Expired, healthy backend: pass to the origin, each time (pass does not cache).
    let r = get(addr, "/g", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "v1");
    let r = get(addr, "/g", &[]);
    assert_eq!(r.body_str(), "v2");
    assert_eq!(o.count_url("/g"), 3);
    // And the stale object is still there for the sick path.
    assert_eq!(get(addr, "/g", &[("X-Use-Sick", "1")]).body_str(), "v0");
}

// Goal: the Varnish 7 grace idiom: `if (std.healthy(req.backend_hint)) { set req.grace = 0s; }`
// with beresp.grace = 1h: healthy → an expired object is a miss (synchronous fetch, new object
// cached); sick → stale delivered.
// Method: as above; on varnishd 7.1.1: sick → v0, healthy → v1 (miss), then v1 is a hit.
fn grace_by_req_grace(cores: usize) {
    let o = versioned_origin_failing_probe();
    let vcl = format!(
        r#"vcl 4.1;
import std;
{SICK_PROBE}
backend good {{ .host = "127.0.0.1"; .port = "{port}"; }}
backend sick {{ .host = "127.0.0.1"; .port = "{port}"; .probe = failing; }}
sub vcl_recv {{
    if (req.http.X-Use-Sick) {{
        set req.backend_hint = sick;
    }} else {{
        set req.backend_hint = good;
    }}
    if (std.healthy(req.backend_hint)) {{
        set req.grace = 0s;
    }}
}}
sub vcl_backend_response {{
    set beresp.ttl = 1s;
    set beresp.grace = 1h;
}}
"#,
        port = o.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();

    assert_eq!(get(addr, "/rg", &[]).body_str(), "v0");
    sleep(Duration::from_millis(1500));
    let r = get(addr, "/rg", &[("X-Use-Sick", "1")]);
    assert_eq!(
        r.body_str(),
        "v0",
        "sick: stale from grace: {}",
        r.summary()
    );
    assert_eq!(o.count_url("/rg"), 1);

    let r = get(addr, "/rg", &[]);
    assert_eq!(
        r.body_str(),
        "v1",
        "healthy: req.grace 0s → miss: {}",
        r.summary()
    );
    let r = get(addr, "/rg", &[]);
    assert_eq!(r.body_str(), "v1", "the new object must be cached");
    assert_eq!(o.count_url("/rg"), 2);
}

// ------------------------------------------------------------------------------------------
// 5. PURGE behind an ACL
// ------------------------------------------------------------------------------------------

fn purge_vcl(origin: SocketAddr, acl_entry: &str) -> String {
    format!(
        r#"vcl 4.1;
{}
acl purgers {{
    {acl_entry};
}}
sub vcl_recv {{
    if (req.method == "PURGE") {{
        if (!client.ip ~ purgers) {{
            return (synth(405, "Not allowed"));
        }}
        return (purge);
    }}
}}
"#,
        vcl_backend("b1", origin)
    )
}

/// An origin answering `"<Accept-Language> <url> <n>"` with `Vary: Accept-Language`.
fn vary_origin() -> Origin {
    Origin::start(|r, i| {
        let lang = r.header("Accept-Language").unwrap_or("-").to_string();
        Reply::ok(format!("{lang} {} {i}", r.url)).header("Vary", "Accept-Language")
    })
}

// Goal: PURGE from an allowed client → builtin vcl_purge: "200 Purged" (guru page body); all
// Vary variants of the object are gone, so the next GETs are misses; PURGE never reaches the
// origin. Checked on varnishd 7.1.1.
fn purge_with_acl(cores: usize) {
    let o = vary_origin();
    let s = Server::with_vcl(&purge_vcl(o.addr(), r#""127.0.0.1""#), cores, &[]);
    let mut c = Client::connect(s.addr());
    let en = [("Accept-Language", "en")];
    let fr = [("Accept-Language", "fr")];

    let r_en = c.get("/p", &en);
    let r_fr = c.get("/p", &fr);
    assert_eq!(r_en.status, 200, "{}", r_en.summary());
    assert_ne!(r_en.body_str(), r_fr.body_str());
    assert_eq!(
        c.get("/p", &en).body_str(),
        r_en.body_str(),
        "en variant cached"
    );
    assert_eq!(
        c.get("/p", &fr).body_str(),
        r_fr.body_str(),
        "fr variant cached"
    );
    assert_eq!(o.count_url("/p"), 2);

    let r = c.request("PURGE", "/p", &[], None);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.reason, "Purged");
    assert!(r.body_str().contains("200 Purged"), "{}", r.summary());
    assert!(
        o.requests().iter().all(|q| q.method != "PURGE"),
        "PURGE must not reach the origin"
    );

    // Both variants are gone.
    let r = c.get("/p", &en);
    assert_eq!(r.status, 200);
    assert_ne!(
        r.body_str(),
        r_en.body_str(),
        "en variant must have been purged"
    );
    let r = c.get("/p", &fr);
    assert_ne!(
        r.body_str(),
        r_fr.body_str(),
        "fr variant must have been purged"
    );
    assert_eq!(o.count_url("/p"), 4);
    // And cached again.
    c.get("/p", &en);
    assert_eq!(o.count_url("/p"), 4);
}

// Goal: a PURGE from a client outside the ACL gets `synth(405, "Not allowed")` and the object
// stays cached (varnishd 7.1.1: "405 Not allowed", guru page, origin untouched).
fn purge_denied_by_acl(cores: usize) {
    let o = vary_origin();
    let s = Server::with_vcl(&purge_vcl(o.addr(), r#""10.0.0.0"/8"#), cores, &[]);
    let mut c = Client::connect(s.addr());
    let first = c.get("/d", &[]);
    assert_eq!(first.status, 200);
    let r = c.request("PURGE", "/d", &[], None);
    assert_eq!(r.status, 405, "{}", r.summary());
    assert_eq!(r.reason, "Not allowed");
    assert!(r.body_str().contains("405 Not allowed"), "{}", r.summary());
    let r = c.get("/d", &[]);
    assert_eq!(
        r.body_str(),
        first.body_str(),
        "object must still be cached"
    );
    assert_eq!(o.request_count(), 1);
}

// ------------------------------------------------------------------------------------------
// 6. Restarts
// ------------------------------------------------------------------------------------------

fn restart_vcl(o1: SocketAddr, o2: SocketAddr) -> String {
    format!(
        r#"vcl 4.1;
{}
{}
sub vcl_recv {{
    if (req.url ~ "^/rloop") {{
        return (restart);
    }}
    if (req.url ~ "^/loop") {{
        return (pass);
    }}
    if (req.restarts > 0) {{
        set req.backend_hint = b2;
        if (req.url !~ "^/trap") {{
            set req.hash_always_miss = true;
        }}
    }} else {{
        set req.backend_hint = b1;
    }}
}}
sub vcl_deliver {{
    set resp.http.X-Restarts = req.restarts;
    if (req.url ~ "^/loop") {{
        return (restart);
    }}
    if (resp.status == 404 && req.restarts == 0) {{
        return (restart);
    }}
}}
sub vcl_synth {{
    set resp.http.X-Restarts = req.restarts;
}}
"#,
        vcl_backend("b1", o1),
        vcl_backend("b2", o2)
    )
}

// Goal: vcl_deliver restarts on a 404 and vcl_recv picks b2 on the restart: the client gets
// b2's answer. Varnish detail (checked on 7.1.1): o1's 404 is cached (404 is cacheable, default
// ttl) before the restart, so the restarted lookup *hits it* unless the VCL forces a miss —
// hence `req.hash_always_miss` on restarts, and /trap (without it) gets o1's 404 again.
fn restart_to_other_backend(cores: usize) {
    let o1 = Origin::start(|r, _| Reply::new(404).body(format!("o1 404 {}", r.url)));
    let o2 = named_origin("o2");
    let s = Server::with_vcl(&restart_vcl(o1.addr(), o2.addr()), cores, &[]);
    let mut c = Client::connect(s.addr());

    let r = c.get("/page", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o2 /page");
    assert_eq!(r.header("X-Restarts"), Some("1"));
    assert_eq!(o1.count_url("/page"), 1);
    assert_eq!(o2.count_url("/page"), 1);
    // b2's answer replaced the 404 in the cache: a plain hit, no restart.
    let r = c.get("/page", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o2 /page");
    assert_eq!(r.header("X-Restarts"), Some("0"));
    assert_eq!(o1.count_url("/page") + o2.count_url("/page"), 2);

    // Without hash_always_miss the restarted request hits the 404 just cached.
    let r = c.get("/trap", &[]);
    assert_eq!(r.status, 404, "{}", r.summary());
    assert_eq!(r.body_str(), "o1 404 /trap");
    assert_eq!(r.header("X-Restarts"), Some("1"));
    assert_eq!(o1.count_url("/trap"), 1);
    assert_eq!(o2.count_url("/trap"), 0);
}

// Goal: an endless restart loop ends after max_restarts (default 4) in vcl_synth with 503 and
// the default reason ("Service Unavailable"; Varnish logs "Too many restarts" but does not put
// it in the response), req.restarts being 5 there; the connection stays usable.
// Method: a loop from vcl_deliver (pass: the origin sees 5 fetches) and one from vcl_recv
// (the origin sees nothing). varnishd 7.1.1: both "503 Service Unavailable", X-Restarts: 5.
fn restart_loop_ends_in_503(cores: usize) {
    let o1 = named_origin("o1");
    let o2 = named_origin("o2");
    let s = Server::with_vcl(&restart_vcl(o1.addr(), o2.addr()), cores, &[]);
    let mut c = Client::connect(s.addr());

    let r = c.get("/loop", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "Service Unavailable");
    assert_eq!(r.header("X-Restarts"), Some("5"));
    assert!(
        r.body_str().contains("503 Service Unavailable"),
        "{}",
        r.summary()
    );
    assert_eq!(o1.count_url("/loop"), 5, "restarts 0..=4 each fetch once");

    let r = c.get("/rloop", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "Service Unavailable");
    assert_eq!(r.header("X-Restarts"), Some("5"));
    assert_eq!(o1.count_url("/rloop") + o2.count_url("/rloop"), 0);

    let r = c.get("/fine", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o1 /fine");
}

// ------------------------------------------------------------------------------------------
// 7. Hit-for-pass
// ------------------------------------------------------------------------------------------

// Goal: `return (pass(10s))` in vcl_backend_response makes a hit-for-pass object: every later
// request for that URL (sequential or concurrent) goes to the origin and is never served from
// cache, while other URLs are cached normally.
fn hit_for_pass(cores: usize) {
    let o = Origin::start(|r, i| Reply::ok(format!("{} {i}", r.url)));
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_backend_response {{
    if (bereq.url ~ "^/hfp") {{
        return (pass(10s));
    }}
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();

    let mut bodies = Vec::new();
    for _ in 0..3 {
        let r = get(addr, "/hfp", &[]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert!(
            !r.is_hit(),
            "hit-for-pass must not be a hit: {}",
            r.summary()
        );
        bodies.push(r.body_str());
    }
    assert_eq!(o.count_url("/hfp"), 3);
    bodies.dedup();
    assert_eq!(bodies.len(), 3, "each answer must be fresh: {bodies:?}");

    let rs = parallel(4, |_| get(addr, "/hfp", &[]));
    assert!(rs.iter().all(|r| r.status == 200));
    assert_eq!(
        o.count_url("/hfp"),
        7,
        "concurrent requests must not be coalesced"
    );

    for _ in 0..3 {
        let r = get(addr, "/cached", &[]);
        assert_eq!(r.status, 200);
    }
    assert_eq!(o.count_url("/cached"), 1, "other URLs are cached normally");
}

// ------------------------------------------------------------------------------------------
// 8. Pipe
// ------------------------------------------------------------------------------------------

/// A raw origin: reads one request head per connection, records it, answers
/// `101 Switching Protocols`, then echoes every chunk it reads prefixed with "echo:".
struct PipeOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PipeOrigin {
    fn start() -> PipeOrigin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, st2) = (heads.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut conns = 0;
            while !st2.load(Ordering::SeqCst) && Instant::now() < deadline && conns < 50 {
                match l.accept() {
                    Ok((s, _)) => {
                        conns += 1;
                        let (h3, st3) = (h2.clone(), st2.clone());
                        thread::spawn(move || pipe_conn(s, h3, st3));
                    }
                    Err(_) => sleep(Duration::from_millis(10)),
                }
            }
        });
        PipeOrigin {
            addr,
            heads,
            stop,
            thread: Some(thread),
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for PipeOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipe_conn(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline || buf.len() > 65536 {
            return;
        }
        match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    };
    heads
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf[..end]).into_owned());
    let rest = buf[end + 4..].to_vec();
    if s.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .is_err()
    {
        return;
    }
    if !rest.is_empty() {
        let mut m = b"echo:".to_vec();
        m.extend_from_slice(&rest);
        let _ = s.write_all(&m);
    }
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => {
                let mut m = b"echo:".to_vec();
                m.extend_from_slice(&tmp[..n]);
                if s.write_all(&m).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Reads from `s` until `buf` contains `want` (bounded by 10 s); returns everything read.
fn read_until_contains(s: &mut TcpStream, buf: &mut Vec<u8>, want: &[u8]) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tmp = [0u8; 4096];
    loop {
        if buf.windows(want.len()).any(|w| w == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(buf)
            ));
        }
        match s.read(&mut tmp) {
            Ok(0) => {
                return Err(format!(
                    "closed while waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                return Err(format!(
                    "read error {e}; got {:?}",
                    String::from_utf8_lossy(buf)
                ))
            }
        }
    }
}

/// Opens a piped websocket-style session on `path`; checks the 101 and two echo round trips.
fn pipe_session(addr: SocketAddr, path: &str) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    read_until_contains(&mut s, &mut buf, b"\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "expected the origin's 101: {text:?}"
    );
    buf.clear();
    s.write_all(b"hello pipe").unwrap();
    read_until_contains(&mut s, &mut buf, b"echo:hello pipe").unwrap();
    buf.clear();
    s.write_all(b"second message").unwrap();
    read_until_contains(&mut s, &mut buf, b"echo:second message").unwrap();
    drop(s);
}

fn head_header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

// Goal: `return (pipe)` for websocket upgrades: after the origin's 101 both directions flow
// byte for byte. Varnish 7.1 (checked on 7.1.1) strips hop-by-hop headers from a piped request
// and forces `Connection: close`, dropping `Upgrade` too, unless vcl_pipe copies them back
// (the documented websocket recipe): /ws copies them, /raw does not.
fn pipe_websocket(cores: usize) {
    let po = PipeOrigin::start();
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_recv {{
    if (req.http.upgrade ~ "(?i)websocket") {{
        return (pipe);
    }}
}}
sub vcl_pipe {{
    if (req.http.upgrade && req.url !~ "^/raw") {{
        set bereq.http.upgrade = req.http.upgrade;
        set bereq.http.connection = req.http.connection;
    }}
}}
"#,
        vcl_backend("b1", po.addr)
    );
    let s = Server::with_vcl(&vcl, cores, &[]);

    pipe_session(s.addr(), "/ws");
    pipe_session(s.addr(), "/raw");
    assert!(wait_until(Duration::from_secs(5), || po.heads().len() >= 2));
    let heads = po.heads();
    let ws = heads
        .iter()
        .find(|h| h.starts_with("GET /ws "))
        .unwrap_or_else(|| panic!("{heads:?}"));
    assert_eq!(
        head_header(ws, "Upgrade").as_deref(),
        Some("websocket"),
        "{ws}"
    );
    assert_eq!(
        head_header(ws, "Connection").as_deref(),
        Some("Upgrade"),
        "{ws}"
    );
    let raw = heads
        .iter()
        .find(|h| h.starts_with("GET /raw "))
        .unwrap_or_else(|| panic!("{heads:?}"));
    assert_eq!(
        head_header(raw, "Connection").as_deref(),
        Some("close"),
        "{raw}"
    );
    assert_eq!(head_header(raw, "Upgrade"), None, "{raw}");

    // The server is still fine for other sessions.
    pipe_session(s.addr(), "/ws2");
}

// ------------------------------------------------------------------------------------------
// 9. Retries and backend-side changes
// ------------------------------------------------------------------------------------------

// Goal: `if (beresp.status == 503 && bereq.retries < 2) { return (retry); }`: an origin that
// keeps failing sees 3 requests and the client gets the last 503; one that recovers on the
// second try sees 2 and the client gets the 200. vcl_backend_fetch rewrites bereq.url and adds
// a bereq header (seen by the origin); vcl_backend_response sets/unsets beresp headers (seen by
// the client; varnishd 7.1.1 delivered no Server header once unset).
fn backend_retry_and_rewrite(cores: usize) {
    let flaky = Arc::new(AtomicUsize::new(0));
    let o = Origin::start(move |r, _| {
        let base = Reply::ok(format!("ok {}", r.url)).header("Server", "fake-origin");
        match r.url.as_str() {
            "/always" => Reply::new(503).body("down").header("Server", "fake-origin"),
            "/flaky" => {
                if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::new(503).body("down")
                } else {
                    base
                }
            }
            _ => base,
        }
    });
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_backend_fetch {{
    if (bereq.url ~ "^/rewrite/") {{
        set bereq.url = regsub(bereq.url, "^/rewrite/", "/backend/");
        set bereq.http.X-From-Fetch = "yes";
    }}
}}
sub vcl_backend_response {{
    if (beresp.status == 503 && bereq.retries < 2) {{
        return (retry);
    }}
    set beresp.http.X-Retries = bereq.retries;
    set beresp.http.X-Backend-Url = bereq.url;
    unset beresp.http.Server;
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());

    let r = c.get("/always", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.body_str(), "down");
    assert_eq!(r.header("X-Retries"), Some("2"));
    assert_eq!(o.count_url("/always"), 3, "first try + 2 retries");

    let r = c.get("/flaky", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "ok /flaky");
    assert_eq!(r.header("X-Retries"), Some("1"));
    assert_eq!(o.count_url("/flaky"), 2);

    let r = c.get("/rewrite/a", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "ok /backend/a");
    assert_eq!(r.header("X-Backend-Url"), Some("/backend/a"));
    assert_eq!(r.header("X-Retries"), Some("0"));
    assert_eq!(
        r.header("Server"),
        None,
        "unset beresp.http.Server: {}",
        r.summary()
    );
    let reqs = o.requests();
    let q = reqs
        .iter()
        .find(|q| q.url == "/backend/a")
        .unwrap_or_else(|| panic!("origin never saw /backend/a: {reqs:?}"));
    assert_eq!(q.header("X-From-Fetch"), Some("yes"));
    assert_eq!(o.count_url("/rewrite/a"), 0);
    // The cache key is still the client's URL.
    let r = c.get("/rewrite/a", &[]);
    assert_eq!(r.body_str(), "ok /backend/a");
    assert_eq!(o.count_url("/backend/a"), 1, "second request must be a hit");
}

// ------------------------------------------------------------------------------------------
// 10. VCL failures
// ------------------------------------------------------------------------------------------

// Goal: `return (fail)` in vcl_recv → "503 VCL failed" (builtin synth page) and, as Varnish 7.1
// does, `Connection: close` and the connection closed; the server keeps serving. A
// `return (fail)` in vcl_backend_response → "503 Service Unavailable" and the client connection
// stays open (both checked on varnishd 7.1.1).
fn vcl_failure(cores: usize) {
    let o = named_origin("o");
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_recv {{
    if (req.url ~ "^/fail") {{
        return (fail);
    }}
}}
sub vcl_backend_response {{
    if (bereq.url ~ "^/bfail") {{
        return (fail);
    }}
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);

    let mut c = Client::connect(s.addr());
    let r = c.get("/fail", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "VCL failed");
    assert!(r.body_str().contains("503 VCL failed"), "{}", r.summary());
    assert_eq!(r.header("Connection"), Some("close"), "{}", r.summary());
    c.wait_closed(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connection not closed after a VCL failure: {e}"));
    assert_eq!(o.count_url("/fail"), 0);

    let mut c = Client::connect(s.addr());
    let r = c.get("/ok", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_str(), "o /ok");

    let r = c.get("/bfail", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(r.reason, "Service Unavailable");
    assert_eq!(o.count_url("/bfail"), 1);
    // Same connection still usable.
    let r = c.get("/ok", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(o.count_url("/ok"), 1, "/ok is cached");
}

// ------------------------------------------------------------------------------------------
// 11. obj.hits in vcl_deliver
// ------------------------------------------------------------------------------------------

// Goal: the usual X-Cache pattern: `obj.hits` is 0 on a miss and counts hits afterwards.
fn x_cache_from_obj_hits(cores: usize) {
    let o = named_origin("o");
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_deliver {{
    if (obj.hits > 0) {{
        set resp.http.X-Cache = "HIT";
    }} else {{
        set resp.http.X-Cache = "MISS";
    }}
    set resp.http.X-Hits = obj.hits;
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();
    let r = get(addr, "/x", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("X-Cache"), Some("MISS"));
    assert_eq!(r.header("X-Hits"), Some("0"));
    let r = get(addr, "/x", &[]);
    assert_eq!(r.header("X-Cache"), Some("HIT"), "{}", r.summary());
    assert_eq!(r.header("X-Hits"), Some("1"));
    let r = get(addr, "/x", &[]);
    assert_eq!(r.header("X-Cache"), Some("HIT"));
    assert_eq!(r.header("X-Hits"), Some("2"));
    let r = get(addr, "/y", &[]);
    assert_eq!(r.header("X-Cache"), Some("MISS"));
    assert_eq!(o.request_count(), 2);
}

// Goal: the seed's Varnish 4.0 grace vcl_hit loads unchanged (its `return (fetch)` warned about
// and meaning miss) and runs: with a healthy backend an expired object is fetched again at once
// instead of being delivered stale, which is what the builtin VCL would do.
// Method: the seed file verbatim but for the backend port; max-age=1 with 10 s of grace; after
// 1.5 s the next request must get the new body synchronously.
fn seed_grace_legacy_fetch(cores: usize) {
    let o = Origin::start(|_, i| Reply::ok(format!("v{i}")).cc("max-age=1"));
    let seed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vcl_corpus/good/seed002_g_grace_hit.vcl"),
    )
    .expect("seed file");
    let vcl = seed.replace(
        ".port = \"8080\";",
        &format!(".port = \"{}\";", o.addr().port()),
    );
    assert_ne!(vcl, seed, "the seed's backend line changed");
    let s = Server::with_vcl(&vcl, cores, &["-p", "default_grace=10"]);
    assert!(
        s.stderr_text()
            .contains("return (fetch) in vcl_hit is Varnish 4.0 syntax"),
        "deprecation warning expected:\n{}",
        s.stderr_text()
    );
    assert_eq!(get(s.addr(), "/g", &[]).body_str(), "v0");
    assert!(get(s.addr(), "/g", &[]).is_hit());
    sleep(Duration::from_millis(1500));
    // Healthy backend, expired object: the seed says fetch (miss), not deliver.
    assert_eq!(get(s.addr(), "/g", &[]).body_str(), "v1");
    assert_eq!(o.request_count(), 2);
    let r = get(s.addr(), "/g", &[]);
    assert_eq!(r.body_str(), "v1");
    assert!(r.is_hit(), "{}", r.summary());
}

// Goal: std.log lines and VCL failures are structured events on stderr that name the request.
fn log_and_error_events(cores: usize) {
    let o = named_origin("o");
    let vcl = format!(
        r#"vcl 4.1;
import std;
{}
sub vcl_recv {{
    std.log("recv url=" + req.url);
    if (req.url == "/boom") {{
        return (fail("exploded on purpose"));
    }}
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let r = get(s.addr(), "/fine", &[]);
    assert_eq!(r.status, 200);
    let xid = r
        .header("X-Varnish")
        .and_then(|v| v.split_whitespace().next())
        .expect("X-Varnish")
        .to_string();
    assert!(
        s.wait_for_log(&format!("VCL_Log {xid} recv url=/fine"), IO_TIMEOUT),
        "{}",
        s.stderr_text()
    );
    let r = get(s.addr(), "/boom", &[]);
    assert_eq!((r.status, r.reason.as_str()), (503, "VCL failed"));
    assert!(
        s.wait_for_log("vcl_recv: return (fail): exploded on purpose", IO_TIMEOUT),
        "{}",
        s.stderr_text()
    );
    assert!(s.stderr_text().lines().any(|l| l.starts_with("VCL_Error ")));
}

// Goal: the load test's routing VCL (loadtest/routing.vcl) serves hits and normalises as it
// says, so the benchmark measures what it claims.
fn loadtest_routing_vcl(cores: usize) {
    let o = Origin::start(|req, _| {
        Reply::ok(format!("{} {}", req.url, req.header("host").unwrap_or("-"))).cc("max-age=60")
    });
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/routing.vcl"),
    )
    .expect("routing.vcl");
    let vcl = text.replace("@PORT@", &o.addr().port().to_string());
    let s = Server::with_vcl(&vcl, cores, &[]);
    let host = format!("WWW.Example.COM:{}", s.addr().port());
    let r = get(s.addr(), "/obj?utm_source=x&id=1", &[("Host", &host)]);
    assert_eq!(r.body_str(), "/obj?id=1 www.example.com");
    let r = get(
        s.addr(),
        "/obj?id=1&gclid=abc",
        &[("Host", "www.example.com")],
    );
    assert!(r.is_hit(), "{}", r.summary());
    assert_eq!(o.request_count(), 1);
}

// Goal: every VCL of the compile corpus (the seeds', the users-guide examples, ringcache's own)
// also boots a server: vcl_init runs, backends are prepared. Non-loopback backend hosts are
// rewritten to 127.0.0.1 so nothing (a future probe) could ever leave the machine.
#[test]
fn corpus_boots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus/good");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "vcl"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "{}", files.len());
    let mut booted = 0;
    let mut checked = 0;
    for f in &files {
        // The corpus holds a few files varnishd accepts that ringcache refuses on purpose
        // (tests/v_check.rs lists them); whatever `-C` accepts must also boot.
        let compiles = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(["-C", "-f"])
            .arg(f)
            .output()
            .expect("run -C")
            .status
            .success();
        if !compiles {
            continue;
        }
        checked += 1;
        let text = std::fs::read(f).expect("read");
        let text = String::from_utf8_lossy(&text).into_owned();
        let s = if text.contains("192.168.") {
            let mut t = text.clone();
            for a in 0..=255 {
                for b in [0, 1, 2] {
                    t = t.replace(
                        &format!(".host = \"192.168.{b}.{a}\""),
                        ".host = \"127.0.0.1\"",
                    );
                }
            }
            assert!(!t.contains(".host = \"192.168."), "{}", f.display());
            Server::try_start_vcl_text(&t, 1)
        } else {
            let args = vcl_args(f.to_str().expect("utf-8 path"), 1, &[]);
            let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            Server::try_start(&refs)
        };
        match s {
            Ok(_) => booted += 1,
            Err(e) => panic!("{} did not boot: {e}", f.display()),
        }
    }
    assert_eq!(booted, checked);
    assert!(checked >= 30, "only {checked} corpus files compile");
}

// Goal: the backend side's other endings: `return (abandon)` gives the client a 503 and never
// reaches the origin; `return (error(418, "Teapot"))` goes to vcl_backend_error, whose built-in
// page carries that status and reason; the origin sees neither request.
fn abandon_and_backend_error(cores: usize) {
    let o = named_origin("o");
    let vcl = format!(
        r#"vcl 4.1;
{}
sub vcl_backend_fetch {{
    if (bereq.url == "/abandon") {{
        return (abandon);
    }}
    if (bereq.url == "/error") {{
        return (error(418, "Teapot"));
    }}
}}
"#,
        vcl_backend("b1", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let r = get(s.addr(), "/abandon", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    let r = get(s.addr(), "/error", &[]);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (418, "Teapot"),
        "{}",
        r.summary()
    );
    assert!(r.body_str().contains("418 Teapot"), "{}", r.body_str());
    assert_eq!(o.request_count(), 0);
    assert_eq!(get(s.addr(), "/fine", &[]).status, 200);
    assert_eq!(o.request_count(), 1);
}
