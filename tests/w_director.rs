//! Directors, black box: a ringcache child process with a VCL that builds directors in
//! `vcl_init`, fake origins that answer with their name, and health changed through the admin
//! CLI (`backend.set_health`), to Varnish 7.1's `vmod_directors` behaviour: round-robin order
//! skipping sick members, fallback priority and stickiness (directors_b00004), hash stickiness
//! and Varnish's own hash assignments (directors_b00003), the shard director's keys
//! (directors_c00003) and its consistency, seed 004's layered `dcprio` fallback of round-robins
//! and `.resolve()`, `least_connections` (ringcache extension), and the 503 when no member is
//! healthy.
//!
//! Every scenario runs with one shard and with two. Round-robin cursors are per shard, so with
//! two shards the order is checked per share (each origin within two requests of an equal
//! share) rather than request by request; least_connections counts are shared by all shards.

#[macro_use]
mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;

shard_tests!(
    round_robin_spreads_and_skips_sick,
    fallback_priority_and_recovery,
    sticky_fallback_sequence_of_b00004,
    hash_sticks_by_url,
    shard_keys_and_consistency,
    layered_dcprio_of_seed_004,
    all_sick_gives_503,
    least_connections_avoids_busy_backend,
    director_changes_outside_init_fail,
);

/// An origin answering 200 with its name as the body.
fn named(name: &'static str) -> Origin {
    Origin::start(move |_, _| Reply::ok(name))
}

/// Origins named `names`, and their backend declarations.
fn origins(names: &[&'static str]) -> (Vec<Origin>, String) {
    let os: Vec<Origin> = names.iter().map(|n| named(n)).collect();
    let decl = names
        .iter()
        .zip(&os)
        .map(|(n, o)| vcl_backend(n, o.addr()))
        .collect::<Vec<_>>()
        .join("\n");
    (os, decl)
}

/// The body of a pass GET of `path`, or `"<status>"` when it is not a 200.
fn who(s: &Server, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get(s.addr(), path, headers);
    if r.status == 200 {
        r.body_str()
    } else {
        format!("<{}>", r.status)
    }
}

/// How many of `n` requests each origin answered.
fn tally(s: &Server, n: usize, prefix: &str) -> HashMap<String, usize> {
    let mut t = HashMap::new();
    for i in 0..n {
        *t.entry(who(s, &format!("/{prefix}{i}"), &[])).or_insert(0) += 1;
    }
    t
}

fn set_health(adm: &mut AdminConn, backend: &str, state: &str) {
    let r = adm.cmd(&format!("backend.set_health {backend} {state}"));
    assert_eq!(r.status, 200, "{r:?}");
}

// Goal: round_robin gives each member an equal share in Varnish's order, and a member made
// sick is skipped (its share goes to the others) until it is healthy again.
// Method: 30 pass requests over 3 origins; then b sick; then b auto again.
fn round_robin_spreads_and_skips_sick(cores: usize) {
    let (_os, decl) = origins(&["a", "b", "c"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{ new rr = directors.round_robin(); rr.add_backend(a); \
         rr.add_backend(b); rr.add_backend(c); }}\n\
         sub vcl_recv {{ set req.backend_hint = rr.backend(); return (pass); }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    if cores == 1 {
        let seq: Vec<String> = (0..6).map(|i| who(&s, &format!("/s{i}"), &[])).collect();
        assert_eq!(seq, ["a", "b", "c", "a", "b", "c"]);
    }
    let t = tally(&s, 30, "x");
    for n in ["a", "b", "c"] {
        let c = t.get(n).copied().unwrap_or(0);
        assert!((8..=12).contains(&c), "{n}: {t:?}");
    }
    let mut adm = AdminConn::open(s.admin_addr(), None);
    set_health(&mut adm, "b", "sick");
    let t = tally(&s, 30, "y");
    assert_eq!(t.get("b"), None, "sick b gets nothing: {t:?}");
    for n in ["a", "c"] {
        let c = t.get(n).copied().unwrap_or(0);
        assert!((13..=17).contains(&c), "{n}: {t:?}");
    }
    set_health(&mut adm, "b", "auto");
    let t = tally(&s, 30, "z");
    assert!(t.get("b").copied().unwrap_or(0) >= 8, "b is back: {t:?}");
}

// Goal: fallback (non-sticky) sends everything to the first healthy member in the order they
// were added, and back to the first as soon as it recovers.
fn fallback_priority_and_recovery(cores: usize) {
    let (_os, decl) = origins(&["primary", "second", "third"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{ new fb = directors.fallback(); fb.add_backend(primary); \
         fb.add_backend(second); fb.add_backend(third); }}\n\
         sub vcl_recv {{ set req.backend_hint = fb.backend(); return (pass); }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let all = |s: &Server, p: &str| {
        let t = tally(s, 4 * cores, p);
        assert_eq!(t.len(), 1, "{t:?}");
        t.into_keys().next().unwrap_or_default()
    };
    assert_eq!(all(&s, "a"), "primary");
    set_health(&mut adm, "primary", "sick");
    assert_eq!(all(&s, "b"), "second");
    set_health(&mut adm, "second", "sick");
    assert_eq!(all(&s, "c"), "third");
    set_health(&mut adm, "primary", "auto");
    assert_eq!(all(&s, "d"), "primary", "non-sticky: back to the first");
}

// Goal: Varnish's directors_b00004 with `fallback(sticky = true)`: s1 sick -> s2; s2 sick -> s3;
// s1 healthy again -> still s3; s3 sick -> s1. With two shards the current member is shared,
// so every request follows the same sequence whichever shard serves it.
fn sticky_fallback_sequence_of_b00004(cores: usize) {
    let (_os, decl) = origins(&["s1", "s2", "s3"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{ new vd = directors.fallback(sticky = true); vd.add_backend(s1); \
         vd.add_backend(s2); vd.add_backend(s3); }}\n\
         sub vcl_recv {{ set req.backend_hint = vd.backend(); return (pass); }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let n = 3 * cores;
    let only = |s: &Server, p: &str| {
        let t = tally(s, n, p);
        assert_eq!(t.len(), 1, "{p}: {t:?}");
        t.into_keys().next().unwrap_or_default()
    };
    set_health(&mut adm, "s1", "sick");
    assert_eq!(only(&s, "foo"), "s2");
    set_health(&mut adm, "s2", "sick");
    assert_eq!(only(&s, "bar"), "s3");
    set_health(&mut adm, "s1", "healthy");
    assert_eq!(only(&s, "baz"), "s3", "sticky: does not go back to s1");
    set_health(&mut adm, "s3", "sick");
    assert_eq!(only(&s, "qux"), "s1");
}

// Goal: the hash director sends one URL to one member every time, spreads URLs, and assigns
// them as Varnish does (directors_b00003: "/1" and "/8" to s2, "/3" and "/13" to s1).
fn hash_sticks_by_url(cores: usize) {
    let (_os, decl) = origins(&["s1", "s2", "s3"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{\n\
           new h1 = directors.hash(); h1.add_backend(s1); h1.add_backend(s2, 1);\n\
           new h3 = directors.hash(); h3.add_backend(s1); h3.add_backend(s2); h3.add_backend(s3);\n\
         }}\n\
         sub vcl_recv {{\n\
           if (req.http.x-two) {{ set req.backend_hint = h1.backend(req.url); }}\n\
           else {{ set req.backend_hint = h3.backend(req.url); }}\n\
           return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    for (url, want) in [("/1", "s2"), ("/3", "s1"), ("/13", "s1"), ("/8", "s2")] {
        assert_eq!(who(&s, url, &[("x-two", "1")]), want, "{url}");
    }
    let mut first = HashMap::new();
    for round in 0..3 {
        for i in 0..20 {
            let url = format!("/obj{i}");
            let got = who(&s, &url, &[]);
            let was = first.entry(url.clone()).or_insert_with(|| got.clone());
            assert_eq!(*was, got, "{url} moved in round {round}");
        }
    }
    let mut distinct: Vec<&String> = first.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "20 URLs spread over 3 members: {first:?}"
    );
}

// Goal: the shard director: Varnish's directors_c00003 (25 replicas, by=KEY: key 1 -> s1,
// 2147483647 -> s2, 4294967295 -> s3); by=URL keeps a URL on one backend, and when a backend
// goes sick only its URLs move.
fn shard_keys_and_consistency(cores: usize) {
    let (_os, decl) = origins(&["s1", "s2", "s3"]);
    let vcl = format!(
        "vcl 4.1;\nimport std;\nimport directors;\n{decl}\n\
         sub vcl_init {{\n\
           new vd = directors.shard();\n\
           if (!vd.add_backend(s1)) {{ return (fail); }}\n\
           if (!vd.add_backend(s2)) {{ return (fail); }}\n\
           if (!vd.add_backend(s3)) {{ return (fail); }}\n\
           if (!vd.reconfigure(replicas=25)) {{ return (fail); }}\n\
         }}\n\
         sub vcl_recv {{\n\
           if (req.http.key) {{\n\
             set req.backend_hint = vd.backend(by=KEY, key=std.integer(req.http.key, 0));\n\
           }} else {{\n\
             set req.backend_hint = vd.backend(by=URL);\n\
           }}\n\
           return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    for (key, want) in [("1", "s1"), ("2147483647", "s2"), ("4294967295", "s3")] {
        assert_eq!(who(&s, "/", &[("key", key)]), want, "key {key}");
    }
    let urls: Vec<String> = (0..30).map(|i| format!("/page{i}")).collect();
    let before: Vec<String> = urls.iter().map(|u| who(&s, u, &[])).collect();
    let again: Vec<String> = urls.iter().map(|u| who(&s, u, &[])).collect();
    assert_eq!(before, again, "stable per URL");
    let mut adm = AdminConn::open(s.admin_addr(), None);
    set_health(&mut adm, "s2", "sick");
    let after: Vec<String> = urls.iter().map(|u| who(&s, u, &[])).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_ne!(a, "s2", "{}", urls[i]);
        if b != "s2" {
            assert_eq!(a, b, "{} moved although its backend is healthy", urls[i]);
        }
    }
    set_health(&mut adm, "s2", "auto");
    let back: Vec<String> = urls.iter().map(|u| who(&s, u, &[])).collect();
    assert_eq!(back, before, "s2's URLs come back");
}

// Goal: seed 004's layering: `dcprio` (fallback) of `dc1` and `dc2` (round-robins) resolves to
// server1A or server1B while either is healthy, and to dc2's servers only when both are sick;
// `dcprio.backend().resolve()` gives a real backend in vcl_recv.
fn layered_dcprio_of_seed_004(cores: usize) {
    let (_os, decl) = origins(&["server1A", "server1B", "server2A", "server2B"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{\n\
           new dc1 = directors.round_robin(); dc1.add_backend(server1A); dc1.add_backend(server1B);\n\
           new dc2 = directors.round_robin(); dc2.add_backend(server2A); dc2.add_backend(server2B);\n\
           new dcprio = directors.fallback(); dcprio.add_backend(dc1); dcprio.add_backend(dc2);\n\
         }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/resolve\") {{\n\
             set req.backend_hint = dcprio.backend().resolve();\n\
             set req.http.x-resolved = req.backend_hint;\n\
           }} else {{\n\
             set req.backend_hint = dcprio.backend();\n\
           }}\n\
           return (pass);\n\
         }}\n\
         sub vcl_deliver {{ set resp.http.x-resolved = req.http.x-resolved; }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let t = tally(&s, 12, "a");
    let share = |t: &HashMap<String, usize>, n: &str| t.get(n).copied().unwrap_or(0);
    assert_eq!(share(&t, "server1A") + share(&t, "server1B"), 12, "{t:?}");
    assert!(
        share(&t, "server1A") >= 4 && share(&t, "server1B") >= 4,
        "{t:?}"
    );
    let r = get(s.addr(), "/resolve1", &[]);
    let named = r.header("x-resolved").unwrap_or("").to_string();
    assert!(named == "server1A" || named == "server1B", "{named:?}");
    assert_eq!(r.body_str(), named, "the resolved backend served it");
    let mut adm = AdminConn::open(s.admin_addr(), None);
    set_health(&mut adm, "server1A", "sick");
    let t = tally(&s, 8, "b");
    assert_eq!(share(&t, "server1B"), 8, "{t:?}");
    set_health(&mut adm, "server1B", "sick");
    let t = tally(&s, 12, "c");
    assert_eq!(share(&t, "server2A") + share(&t, "server2B"), 12, "{t:?}");
    assert!(
        share(&t, "server2A") >= 4 && share(&t, "server2B") >= 4,
        "{t:?}"
    );
    let r = get(s.addr(), "/resolve2", &[]);
    let named = r.header("x-resolved").unwrap_or("").to_string();
    assert!(named.starts_with("server2"), "{named:?}");
    set_health(&mut adm, "server1A", "auto");
    let t = tally(&s, 4, "d");
    assert_eq!(share(&t, "server1A"), 4, "dc1 is back (non-sticky): {t:?}");
}

// Goal: a director with no healthy member gives no backend: the fetch fails with 503 and
// `FetchError ... Director rr returned no backend`; `std.healthy(rr.backend())` is false.
fn all_sick_gives_503(cores: usize) {
    let (os, decl) = origins(&["a", "b"]);
    let vcl = format!(
        "vcl 4.1;\nimport std;\nimport directors;\n{decl}\n\
         sub vcl_init {{ new rr = directors.round_robin(); rr.add_backend(a); rr.add_backend(b); }}\n\
         sub vcl_recv {{\n\
           if (req.url == \"/health\") {{\n\
             return (synth(200, \"healthy=\" + std.healthy(rr.backend())));\n\
           }}\n\
           set req.backend_hint = rr.backend(); return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let healthy = |s: &Server| get(s.addr(), "/health", &[]).reason;
    assert_eq!(healthy(&s), "healthy=true");
    let mut adm = AdminConn::open(s.admin_addr(), None);
    set_health(&mut adm, "a", "sick");
    assert_eq!(healthy(&s), "healthy=true");
    set_health(&mut adm, "b", "sick");
    assert_eq!(healthy(&s), "healthy=false");
    let before: usize = os.iter().map(|o| o.request_count()).sum();
    for i in 0..3 {
        assert_eq!(get(s.addr(), &format!("/x{i}"), &[]).status, 503);
    }
    assert_eq!(
        os.iter().map(|o| o.request_count()).sum::<usize>(),
        before,
        "no origin contacted"
    );
    assert!(
        s.wait_for_log("Director rr returned no backend", Duration::from_secs(3)),
        "{}",
        s.stderr_text()
    );
    set_health(&mut adm, "a", "auto");
    assert_eq!(who(&s, "/y", &[]), "a");
}

// Goal: least_connections (ringcache extension) sends new requests away from a backend that
// holds a slow request, and shares idle backends in turn. The counts are the backends'
// connections in use on all shards, so this holds with two shards as with one.
fn least_connections_avoids_busy_backend(cores: usize) {
    let slow = Origin::start(|_, _| Reply::ok("slow").delay(Duration::from_millis(1500)));
    let (_os, decl) = origins(&["f1", "f2"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{}\n{decl}\n\
         sub vcl_init {{ new lc = directors.least_connections(); lc.add_backend(slow); \
         lc.add_backend(f1); lc.add_backend(f2); }}\n\
         sub vcl_recv {{ set req.backend_hint = lc.backend(); return (pass); }}\n",
        vcl_backend("slow", slow.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();
    // The first request goes to `slow` (ties go in order) and stays in flight.
    let held = std::thread::spawn(move || get(addr, "/held", &[]));
    assert!(slow.wait_for_requests(1, Duration::from_secs(5)));
    let t = tally(&s, 6, "q");
    assert_eq!(t.get("slow"), None, "busy backend avoided: {t:?}");
    assert_eq!(t.values().sum::<usize>(), 6, "{t:?}");
    if cores == 1 {
        assert_eq!(t.get("f1"), Some(&3), "{t:?}");
        assert_eq!(t.get("f2"), Some(&3), "{t:?}");
    }
    let r = held.join().expect("held request");
    assert_eq!(r.body_str(), "slow");
}

// Goal: ringcache fixes directors when vcl_init ends: `add_backend`/`remove_backend` in a
// request sub is a VCL failure (503), where Varnish would change the director.
fn director_changes_outside_init_fail(cores: usize) {
    let (_os, decl) = origins(&["a", "b"]);
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{decl}\n\
         sub vcl_init {{ new rr = directors.round_robin(); rr.add_backend(a); rr.add_backend(b); }}\n\
         sub vcl_recv {{\n\
           if (req.method == \"DELETE\") {{ rr.remove_backend(a); return (synth(204)); }}\n\
           set req.backend_hint = rr.backend(); return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let r = request(s.addr(), "DELETE", "/", &[], None);
    assert_eq!(r.status, 503);
    assert!(
        s.wait_for_log("changes directors in vcl_init only", Duration::from_secs(3)),
        "{}",
        s.stderr_text()
    );
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
}
