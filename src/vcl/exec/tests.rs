//! Unit tests of the interpreter: real VCL compiled with the checker (no DNS), run on
//! hand-built contexts.

use std::sync::Arc;

use super::*;
use crate::vcl::check::{compile, CompileOptions};
use crate::vcl::parser::parse_str;

fn opts() -> CompileOptions {
    CompileOptions {
        resolver: Some(Arc::new(|_h: &str, p: &str| {
            let port = p.parse().unwrap_or(80);
            Ok(vec![SocketAddr::from(([192, 0, 2, 10], port))])
        })),
        ..Default::default()
    }
}

fn prog(text: &str) -> Program {
    let (mut map, r) = parse_str("t.vcl", text);
    let vcl = match r {
        Ok(v) => v,
        Err(e) => panic!("{}", e.iter().map(|d| map.render(d)).collect::<String>()),
    };
    match compile(&mut map, &vcl, &opts()) {
        Ok(p) => p,
        Err(e) => panic!("{}", e.iter().map(|d| map.render(d)).collect::<String>()),
    }
}

fn req(method: &'static str, url: &'static str, hdrs: &[(&'static str, &'static str)]) -> ReqCtx {
    let mut headers = Headers::new();
    for (n, v) in hdrs {
        headers.append(*n, *v);
    }
    ReqCtx {
        method: Bytes::from_static(method.as_bytes()),
        url: Bytes::from_static(url.as_bytes()),
        proto: Bytes::from_static(b"HTTP/1.1"),
        headers,
        ..Default::default()
    }
}

fn client_ctx<'a>(r: ReqCtx) -> Ctx<'a> {
    let mut c = Ctx::new(1_000_000.0);
    c.req = Some(r);
    c
}

fn h<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(|v| &v[..])
}

fn be(p: &Program, name: &str) -> Option<BackendRef> {
    p.backend_by_name(name).map(BackendRef::Backend)
}

fn object(t_origin: f64, ttl: f64, grace: f64) -> std::sync::Arc<Object> {
    let mut headers = Headers::new();
    headers.append("X-Obj", "yes");
    std::sync::Arc::new(Object {
        xid: 7,
        kind: ObjKind::Normal,
        status: 200,
        reason: Bytes::from_static(b"OK"),
        head: Object::build_head(200, b"OK", &headers),
        headers,
        body: Bytes::from_static(b"body"),
        t_origin,
        ttl,
        grace,
        keep: 0.0,
        vary: None,
    })
}

const ROUTING: &str = r#"
vcl 4.1;
import std;

backend alpha { .host = "alpha.test"; .port = "8080"; }
backend bravo { .host = "bravo.test"; .port = "8081"; }

acl purgers { "127.0.0.1"; "10.0.0.0"/8; !"10.1.2.3"; }

sub vcl_recv {
    set req.http.host = regsub(req.http.host, ":[0-9]+$", "");
    unset req.http.cookie;
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        return (purge);
    }
    if (req.http.host == "bravo.example.com" || req.url ~ "^/bravo/") {
        set req.backend_hint = bravo;
    } else {
        set req.backend_hint = alpha;
    }
    if (req.url ~ "^/admin") {
        return (pass);
    }
}

sub vcl_deliver {
    set resp.http.X-Cache = "HIT";
    set resp.http.X-Served-By = "ringcache " + resp.status;
    unset resp.http.x-powered-by;
}
"#;

#[test]
fn routes_by_host_and_url_and_normalises() {
    let p = prog(ROUTING);
    let mut c = client_ctx(req(
        "GET",
        "/x",
        &[
            ("Host", "bravo.example.com:8080"),
            ("Cookie", "a=b"),
            ("Cookie", "c=d"),
        ],
    ));
    // No cookie any more and a GET: the builtin vcl_recv hashes.
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), Outcome::Hash);
    let r = c.req.as_ref().unwrap();
    assert_eq!(h(&r.headers, "host"), Some(&b"bravo.example.com"[..]));
    assert!(!r.headers.contains("cookie"));
    assert_eq!(r.backend_hint, be(&p, "bravo"));

    let mut c = client_ctx(req("GET", "/bravo/img.png", &[("Host", "other.test")]));
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), Outcome::Hash);
    assert_eq!(c.req.as_ref().unwrap().backend_hint, be(&p, "bravo"));

    let mut c = client_ctx(req("GET", "/", &[("Host", "alpha.example.com")]));
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), Outcome::Hash);
    assert_eq!(c.req.as_ref().unwrap().backend_hint, be(&p, "alpha"));

    let mut c = client_ctx(req("GET", "/admin/x", &[("Host", "a")]));
    assert_eq!(
        run(&p, Method::Recv, &mut c).unwrap(),
        Outcome::Pass { ttl: None }
    );
}

#[test]
fn builtin_fall_through() {
    let p = prog(ROUTING);
    let run_req = |m: &'static str, hdrs: &[(&'static str, &'static str)]| {
        let mut c = client_ctx(req(m, "/", hdrs));
        run(&p, Method::Recv, &mut c).unwrap()
    };
    assert_eq!(run_req("GET", &[("Host", "a")]), Outcome::Hash);
    assert_eq!(run_req("HEAD", &[("Host", "a")]), Outcome::Hash);
    assert_eq!(
        run_req("POST", &[("Host", "a")]),
        Outcome::Pass { ttl: None }
    );
    assert_eq!(
        run_req("GET", &[("Host", "a"), ("Authorization", "Basic x")]),
        Outcome::Pass { ttl: None }
    );
    assert_eq!(
        run_req("PRI", &[("Host", "a")]),
        Outcome::Synth {
            status: 405,
            reason: None
        }
    );
    assert_eq!(run_req("FOO", &[("Host", "a")]), Outcome::Pipe);
    // HTTP/1.1 without Host (ROUTING's regsub would create an empty Host, as in Varnish).
    let bare = prog("vcl 4.1; backend default { .host = \"a.test\"; }");
    let mut c = client_ctx(req("GET", "/", &[]));
    assert_eq!(
        run(&bare, Method::Recv, &mut c).unwrap(),
        Outcome::Synth {
            status: 400,
            reason: None
        }
    );
    // The builtin lower-cases the Host.
    let mut c = client_ctx(req("GET", "/", &[("Host", "WWW.Example.COM")]));
    run(&p, Method::Recv, &mut c).unwrap();
    assert_eq!(
        h(&c.req.as_ref().unwrap().headers, "host"),
        Some(&b"www.example.com"[..])
    );
    // Other methods fall through to the builtin too.
    let mut c = client_ctx(req("GET", "/", &[]));
    assert_eq!(run(&p, Method::Miss, &mut c).unwrap(), Outcome::Fetch);
    assert_eq!(run(&p, Method::Pass, &mut c).unwrap(), Outcome::Fetch);
    assert_eq!(run(&p, Method::Purge, &mut c).unwrap(), {
        Outcome::Synth {
            status: 200,
            reason: Some(Bytes::from_static(b"Purged")),
        }
    });
}

#[test]
fn hash_collects_url_and_host_or_server_ip() {
    let p = prog(ROUTING);
    let mut c = client_ctx(req("GET", "/a?b", &[("Host", "example.com")]));
    assert_eq!(run(&p, Method::Hash, &mut c).unwrap(), Outcome::Lookup);
    let parts: Vec<&[u8]> = c.hash.parts().collect();
    assert_eq!(parts, vec![&b"/a?b"[..], &b"example.com"[..]]);
    assert_eq!(
        c.hash.key(),
        crate::cache::object::CacheKey::from_parts(&[b"/a?b", b"example.com"])
    );

    let mut c = client_ctx(req("GET", "/", &[]));
    c.conn.server_ip = "192.0.2.1:80".parse().unwrap();
    run(&p, Method::Hash, &mut c).unwrap();
    let parts: Vec<&[u8]> = c.hash.parts().collect();
    assert_eq!(parts, vec![&b"/"[..], &b"192.0.2.1"[..]]);
}

#[test]
fn purge_acl_on_client_ip() {
    let p = prog(ROUTING);
    let with_ip = |ip: &str| {
        let mut c = client_ctx(req("PURGE", "/x", &[("Host", "a")]));
        c.conn.client_ip = ip.parse().unwrap();
        run(&p, Method::Recv, &mut c).unwrap()
    };
    assert_eq!(with_ip("127.0.0.1:5555"), Outcome::Purge);
    assert_eq!(with_ip("10.9.9.9:1"), Outcome::Purge);
    let forbidden = Outcome::Synth {
        status: 403,
        reason: Some(Bytes::from_static(b"Forbidden")),
    };
    assert_eq!(with_ip("10.1.2.3:1"), forbidden);
    assert_eq!(with_ip("192.0.2.7:1"), forbidden);
    assert_eq!(with_ip("[::ffff:127.0.0.1]:1"), Outcome::Purge);
}

#[test]
fn deliver_edits_response_headers() {
    let p = prog(ROUTING);
    let mut c = client_ctx(req("GET", "/", &[("Host", "a")]));
    let mut headers = Headers::new();
    headers.append("X-Powered-By", "php");
    headers.append("X-Cache", "old");
    c.resp = Some(RespCtx {
        proto: Bytes::from_static(b"HTTP/1.1"),
        status: 200,
        reason: Bytes::from_static(b"OK"),
        headers,
    });
    assert_eq!(run(&p, Method::Deliver, &mut c).unwrap(), Outcome::Deliver);
    let r = c.resp.as_ref().unwrap();
    assert!(!r.headers.contains("x-powered-by"));
    assert_eq!(h(&r.headers, "x-cache"), Some(&b"HIT"[..]));
    assert_eq!(h(&r.headers, "x-served-by"), Some(&b"ringcache 200"[..]));
    // A new header gets a canonical spelling; a replaced one keeps its place and name.
    let names: Vec<&[u8]> = r.headers.iter().map(|f| &f.name[..]).collect();
    assert_eq!(names, vec![&b"X-Cache"[..], &b"X-Served-By"[..]]);
}

const GRACE: &str = r#"
vcl 4.0;
import std;

backend default { .host = "127.0.0.1"; .port = "8080"; }

sub vcl_hit {
    if (obj.ttl >= 0s) {
        return (deliver);
    }
    if (std.healthy(req.backend_hint)) {
        if (obj.ttl + 10s > 0s) {
            return (deliver);
        } else {
            return (fetch);
        }
    } else {
        if (obj.ttl + obj.grace > 0s) {
            return (deliver);
        } else {
            return (fetch);
        }
    }
}
"#;

struct Health(bool);

impl Env for Health {
    fn healthy(&self, _be: BackendRef, _now: f64) -> bool {
        self.0
    }
}

#[test]
fn seed_grace_hit() {
    let p = prog(GRACE);
    let now = 1_000_000.0;
    let case = |age: f64, healthy: bool| {
        let env = Health(healthy);
        let o = object(now - age, 60.0, 3600.0);
        let mut c = Ctx::new(now).with_env(&env);
        c.req = Some(req("GET", "/", &[("Host", "a")]));
        c.req.as_mut().unwrap().backend_hint = be(&p, "default");
        c.obj = Some(ObjView {
            obj: o.clone(),
            hits: 3,
        });
        run(&p, Method::Hit, &mut c).unwrap()
    };
    assert_eq!(case(10.0, true), Outcome::Deliver);
    assert_eq!(case(65.0, true), Outcome::Deliver);
    assert_eq!(case(75.0, true), Outcome::Miss);
    assert_eq!(case(75.0, false), Outcome::Deliver);
    assert_eq!(case(60.0 + 3601.0, false), Outcome::Miss);

    // The seed's own file (Varnish 4.0 `return (fetch)` in vcl_hit).
    let p = prog(include_str!(
        "../../../tests/vcl_corpus/good/seed002_g_grace_hit.vcl"
    ));
    let env = Health(false);
    let o = object(now - 100.0, 60.0, 3600.0);
    let mut c = Ctx::new(now).with_env(&env);
    c.req = Some(req("GET", "/", &[("Host", "a")]));
    c.obj = Some(ObjView {
        obj: o.clone(),
        hits: 0,
    });
    assert_eq!(run(&p, Method::Hit, &mut c).unwrap(), Outcome::Deliver);
    let env = Health(true);
    let mut c = Ctx::new(now).with_env(&env);
    c.req = Some(req("GET", "/", &[("Host", "a")]));
    c.req.as_mut().unwrap().backend_hint = be(&p, "default");
    c.obj = Some(ObjView {
        obj: o.clone(),
        hits: 0,
    });
    assert_eq!(run(&p, Method::Hit, &mut c).unwrap(), Outcome::Miss);
}

#[test]
fn healthy_none_backend_is_false() {
    let p = prog(
        r#"vcl 4.1; import std;
        backend default { .host = "a.test"; }
        sub vcl_recv {
            set req.backend_hint = none;
            if (!std.healthy(req.backend_hint)) { return (synth(503, "No backend")); }
        }"#,
    );
    let mut c = client_ctx(req("GET", "/", &[("Host", "a")]));
    assert_eq!(
        run(&p, Method::Recv, &mut c).unwrap(),
        Outcome::Synth {
            status: 503,
            reason: Some(Bytes::from_static(b"No backend"))
        }
    );
}

const BERESP: &str = r#"
vcl 4.1;
backend default { .host = "a.test"; }
sub vcl_backend_response {
    if (bereq.url ~ "\.(css|js)$") {
        set beresp.ttl = 1h;
        set beresp.grace = 2m;
        unset beresp.http.set-cookie;
        set beresp.http.X-Rule = "static";
        return (deliver);
    }
    if (beresp.http.X-Nocache) {
        set beresp.uncacheable = true;
        return (pass(2s));
    }
    set beresp.ttl = beresp.ttl * 2;
    set beresp.ttl += 5s;
}
"#;

fn backend_ctx<'a>(url: &'static str, hdrs: &[(&'static str, &'static str)]) -> Ctx<'a> {
    let mut c = Ctx::new(1000.0);
    c.bereq = Some(BereqCtx {
        method: Bytes::from_static(b"GET"),
        url: Bytes::from_static(url.as_bytes()),
        proto: Bytes::from_static(b"HTTP/1.1"),
        ..Default::default()
    });
    let mut headers = Headers::new();
    for (n, v) in hdrs {
        headers.append(*n, *v);
    }
    c.beresp = Some(BerespCtx {
        proto: Bytes::from_static(b"HTTP/1.1"),
        status: 200,
        reason: Bytes::from_static(b"OK"),
        headers,
        ttl: 10.0,
        grace: 10.0,
        ..Default::default()
    });
    c
}

#[test]
fn backend_response_rules() {
    let p = prog(BERESP);
    let mut c = backend_ctx("/a.css", &[("Set-Cookie", "x=1")]);
    assert_eq!(
        run(&p, Method::BackendResponse, &mut c).unwrap(),
        Outcome::Deliver
    );
    let b = c.beresp.as_ref().unwrap();
    assert_eq!((b.ttl, b.grace), (3600.0, 120.0));
    assert!(!b.headers.contains("set-cookie"));
    assert_eq!(h(&b.headers, "x-rule"), Some(&b"static"[..]));

    let mut c = backend_ctx("/p", &[("X-Nocache", "1")]);
    assert_eq!(
        run(&p, Method::BackendResponse, &mut c).unwrap(),
        Outcome::Pass { ttl: Some(2.0) }
    );
    assert!(c.beresp.as_ref().unwrap().uncacheable);

    // Falls through to the builtin: Set-Cookie makes it a hit-for-miss for 120s.
    let mut c = backend_ctx("/p", &[("Set-Cookie", "a=b")]);
    assert_eq!(
        run(&p, Method::BackendResponse, &mut c).unwrap(),
        Outcome::Deliver
    );
    let b = c.beresp.as_ref().unwrap();
    assert_eq!(b.ttl, 120.0);
    assert!(b.uncacheable);

    let mut c = backend_ctx("/p", &[("Cache-Control", "max-age=10")]);
    run(&p, Method::BackendResponse, &mut c).unwrap();
    let b = c.beresp.as_ref().unwrap();
    assert_eq!(b.ttl, 25.0);
    assert!(!b.uncacheable);
}

#[test]
fn std_functions_and_regsub() {
    let p = prog(
        r#"vcl 4.1; import std;
        backend default { .host = "a.test"; }
        sub vcl_recv {
            if (std.integer("x", 5) == 5) { set req.http.a = "fallback"; }
            if (std.integer(" 42 ", 0) == 42) { set req.http.b = "parsed"; }
            set req.http.c = regsuball("a1b22c333", "([0-9])", "<\1>");
            set req.http.d = regsub("hello world", "(\w+) (\w+)", "\2 \1 \0");
            set req.http.e = regsub("abc", "x", "y");
            set req.http.f = std.tolower("MiXeD") + std.toupper("-up");
            set req.http.g = std.duration("1.5m", 0s) + std.duration("bad", 7s);
            set req.http.h = std.port(std.ip("192.0.2.9:8080", "0.0.0.0"));
            set req.http.i = std.ip("nonsense", "127.0.0.2", resolve = false);
            set req.http.j = 10 / 3 + 10 % 3;
            set req.http.k = "" + req.http.missing + "x";
            std.log("seen " + req.url);
            set req.http.r = std.random(1, 2);
            if (req.http.missing == "") { set req.http.l = "eq-empty"; }
            if (req.http.missing != "") { set req.http.m = "unset-is-different"; }
            if (!req.http.missing) { set req.http.n = "falsy"; }
            set req.http.dup = "x";
            set req.http.dup += "y";
            std.collect(req.http.multi);
            return (hash);
        }"#,
    );
    let mut c = client_ctx(req(
        "GET",
        "/u",
        &[("Host", "a"), ("Multi", "1"), ("Multi", "2")],
    ));
    c.rng.set(12345);
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), Outcome::Hash);
    let r = &c.req.as_ref().unwrap().headers;
    assert_eq!(h(r, "a"), Some(&b"fallback"[..]));
    assert_eq!(h(r, "b"), Some(&b"parsed"[..]));
    assert_eq!(h(r, "c"), Some(&b"a<1>b<2><2>c<3><3><3>"[..]));
    assert_eq!(h(r, "d"), Some(&b"world hello hello world"[..]));
    assert_eq!(h(r, "e"), Some(&b"abc"[..]));
    assert_eq!(h(r, "f"), Some(&b"mixed-UP"[..]));
    assert_eq!(h(r, "g"), Some(&b"97.000"[..]));
    assert_eq!(h(r, "h"), Some(&b"8080"[..]));
    assert_eq!(h(r, "i"), Some(&b"127.0.0.2"[..]));
    assert_eq!(h(r, "j"), Some(&b"4"[..]));
    assert_eq!(h(r, "k"), Some(&b"x"[..]));
    assert_eq!(h(r, "l"), None);
    assert_eq!(h(r, "m"), Some(&b"unset-is-different"[..]));
    assert_eq!(h(r, "n"), Some(&b"falsy"[..]));
    assert_eq!(h(r, "dup"), Some(&b"xy"[..]));
    assert_eq!(h(r, "multi"), Some(&b"1, 2"[..]));
    assert_eq!(r.get_all("multi").count(), 1);
    let rnd: f64 = std::str::from_utf8(h(r, "r").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.0..2.0).contains(&rnd));
    assert_eq!(c.log, vec!["seen /u".to_string()]);

    // Deterministic with the same seed.
    let mut c2 = client_ctx(req("GET", "/u", &[("Host", "a")]));
    c2.rng.set(12345);
    run(&p, Method::Recv, &mut c2).unwrap();
    assert_eq!(
        h(&c2.req.as_ref().unwrap().headers, "r"),
        h(&c.req.as_ref().unwrap().headers, "r")
    );
}

#[test]
fn runtime_failures() {
    let p = prog(
        r#"vcl 4.1; import std;
        backend default { .host = "a.test"; }
        sub vcl_recv {
            if (req.url == "/int") { set req.http.x = std.integer(req.http.n); }
            if (req.url == "/div") { set req.http.x = 1 / std.integer("0", 0); }
            if (req.url == "/fail") { return (fail); }
            if (req.url == "/failr") { return (fail("custom")); }
        }"#,
    );
    for (url, msg) in [
        ("/int", "std.integer: conversion failed"),
        ("/div", "INT division by zero"),
        ("/fail", "return (fail)"),
        ("/failr", "return (fail): custom"),
    ] {
        let mut c = client_ctx(req("GET", url, &[("Host", "a"), ("N", "abc")]));
        let e = run(&p, Method::Recv, &mut c).unwrap_err();
        assert_eq!(e.sub, Method::Recv);
        assert_eq!(e.message, msg, "{url}");
    }
    // A sub run without its context part fails instead of panicking.
    let mut c = Ctx::new(0.0);
    let e = run(&p, Method::Recv, &mut c).unwrap_err();
    assert!(e.message.contains("req is not available"), "{}", e.message);
}

#[test]
fn synth_body_and_custom_subs() {
    let p = prog(
        r#"vcl 4.1;
        backend default { .host = "a.test"; }
        sub add_marker { set resp.http.X-Marker = "m"; return; }
        sub vcl_synth {
            call add_marker;
            if (resp.status == 750) {
                set resp.status = 301;
                set resp.http.Location = "https://example.com" + req.url;
                return (deliver);
            }
            set resp.http.Content-Type = "text/plain";
            synthetic("Error " + resp.status + " " + resp.reason);
            return (deliver);
        }"#,
    );
    let mut c = client_ctx(req("GET", "/p", &[("Host", "a")]));
    c.resp = Some(RespCtx {
        status: 750,
        reason: Bytes::from_static(b"Moved"),
        ..Default::default()
    });
    assert_eq!(run(&p, Method::Synth, &mut c).unwrap(), Outcome::Deliver);
    let r = c.resp.as_ref().unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        h(&r.headers, "location"),
        Some(&b"https://example.com/p"[..])
    );
    assert_eq!(h(&r.headers, "x-marker"), Some(&b"m"[..]));

    let mut c = client_ctx(req("GET", "/p", &[("Host", "a")]));
    c.resp = Some(RespCtx {
        status: 404,
        reason: Bytes::from_static(b"Not Found"),
        ..Default::default()
    });
    run(&p, Method::Synth, &mut c).unwrap();
    assert_eq!(c.body, b"Error 404 Not Found");
}

#[test]
fn builtin_synth_and_backend_error_pages() {
    let p = prog("vcl 4.1; backend default { .host = \"a.test\"; }");
    let mut c = client_ctx(req("GET", "/", &[("Host", "a")]));
    c.req.as_mut().unwrap().xid = 42;
    c.resp = Some(RespCtx {
        status: 503,
        reason: Bytes::from_static(b"Service Unavailable"),
        ..Default::default()
    });
    assert_eq!(run(&p, Method::Synth, &mut c).unwrap(), Outcome::Deliver);
    let body = String::from_utf8(c.body.clone()).unwrap();
    assert!(
        body.contains("<title>503 Service Unavailable</title>"),
        "{body}"
    );
    assert!(body.contains("XID: 42"), "{body}");
    assert_eq!(
        h(&c.resp.as_ref().unwrap().headers, "retry-after"),
        Some(&b"5"[..])
    );

    let mut c = backend_ctx("/", &[]);
    c.beresp.as_mut().unwrap().status = 503;
    assert_eq!(
        run(&p, Method::BackendError, &mut c).unwrap(),
        Outcome::Deliver
    );
    assert!(String::from_utf8_lossy(&c.body).contains("Error 503"));
    // vcl_backend_fetch: the builtin unsets the body of a GET.
    let mut c = backend_ctx("/", &[]);
    assert_eq!(
        run(&p, Method::BackendFetch, &mut c).unwrap(),
        Outcome::Fetch
    );
    assert!(c.bereq.as_ref().unwrap().body_unset);
}

struct Dirs(std::cell::RefCell<Vec<String>>);

impl Env for Dirs {
    fn new_object(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        _args: &[Option<Value<'_>>],
    ) -> Result<(), String> {
        self.0
            .borrow_mut()
            .push(format!("new {obj} {}", kind.name()));
        Ok(())
    }

    fn object_method(
        &self,
        obj: ObjId,
        _kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
    ) -> Result<Value<'static>, String> {
        self.0
            .borrow_mut()
            .push(format!("{obj}.{}({:?})", method.name, args));
        Ok(match method.ret {
            Type::Backend => Value::Backend(Some(BackendRef::Backend(1))),
            _ => Value::Void,
        })
    }
}

#[test]
fn directors_through_env() {
    let p = prog(
        r#"vcl 4.1; import directors;
        backend b1 { .host = "a.test"; }
        backend b2 { .host = "b.test"; }
        sub vcl_init {
            new vdir = directors.round_robin();
            vdir.add_backend(b1);
            vdir.add_backend(b2);
        }
        sub vcl_recv {
            set req.backend_hint = vdir.backend();
        }"#,
    );
    let env = Dirs(Default::default());
    let mut c = Ctx::new(0.0).with_env(&env);
    assert_eq!(run(&p, Method::Init, &mut c).unwrap(), Outcome::Ok);
    let mut c = Ctx::new(0.0).with_env(&env);
    c.req = Some(req("GET", "/", &[("Host", "a")]));
    run(&p, Method::Recv, &mut c).unwrap();
    assert_eq!(
        c.req.as_ref().unwrap().backend_hint,
        Some(BackendRef::Backend(1))
    );
    let log = env.0.borrow().clone();
    assert_eq!(log[0], "new 0 round_robin");
    assert!(log[1].starts_with("0.add_backend([Some(Backend(Some(Backend(0))))"));
    assert_eq!(log.len(), 4);

    // The default Env leaves the director for the runtime to resolve.
    let mut c = client_ctx(req("GET", "/", &[("Host", "a")]));
    run(&p, Method::Recv, &mut c).unwrap();
    assert_eq!(
        c.req.as_ref().unwrap().backend_hint,
        Some(BackendRef::Director(0))
    );
}

#[test]
fn corpus_programs_run_without_panicking() {
    // Every good corpus file: run each method on a full context; failures are allowed
    // (unsupported constructs), panics are not.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus/good");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("vcl") {
            continue;
        }
        let (_map, r) = crate::vcl::check::compile_file(&path, &opts());
        let Ok((p, _)) = r else { continue };
        for m in Method::ALL {
            let o = object(0.0, 10.0, 10.0);
            let mut c = backend_ctx("/", &[]);
            c.req = Some(req("GET", "/", &[("Host", "a")]));
            c.resp = Some(RespCtx::default());
            c.obj = Some(ObjView {
                obj: o.clone(),
                hits: 0,
            });
            let _ = run(&p, m, &mut c);
        }
        ran += 1;
    }
    assert!(ran > 10, "{ran}");
}

#[test]
fn deep_expressions_are_bounded() {
    let vcl = |cond: String| {
        prog(&format!(
            "vcl 4.1; backend default {{ .host = \"a.test\"; }}\n\
             sub vcl_recv {{ if ({cond}) {{ return (synth(200)); }} }}"
        ))
    };
    let synth200 = Outcome::Synth {
        status: 200,
        reason: None,
    };
    // A long flat chain is walked without recursion.
    let mut cond = String::from("req.url == \"/0\"");
    for i in 1..3000 {
        cond.push_str(&format!(" || req.url == \"/{i}\""));
    }
    let p = vcl(cond);
    let mut c = client_ctx(req("GET", "/2999", &[("Host", "a")]));
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), synth200);
    // Real nesting: right-nested parentheses.
    let nested = |n: usize| {
        let mut cond = String::from("req.url == \"/x\"");
        for i in 0..n {
            cond = format!("req.url == \"/{i}\" || ({cond})");
        }
        vcl(cond)
    };
    let p = nested(150);
    let mut c = client_ctx(req("GET", "/x", &[("Host", "a")]));
    assert_eq!(run(&p, Method::Recv, &mut c).unwrap(), synth200);
    // Deeper than the parser allows (200): built by hand, refused at run time.
    let mut e = Expr {
        ty: Type::Bool,
        kind: ExprKind::Bool(true),
    };
    for _ in 0..MAX_EXPR_DEPTH + 5 {
        e = Expr {
            ty: Type::Bool,
            kind: ExprKind::Not(Box::new(e)),
        };
    }
    let mut p = prog("vcl 4.1; backend default { .host = \"a.test\"; }");
    let recv = p.methods[0];
    p.subs[recv].body.insert(
        0,
        Stmt::If {
            branches: vec![(e, vec![])],
            otherwise: vec![],
        },
    );
    let mut c = client_ctx(req("GET", "/x", &[("Host", "a")]));
    let e = run(&p, Method::Recv, &mut c).unwrap_err();
    assert_eq!(e.message, "expression nested too deeply");
}

#[test]
fn deep_blocks_and_expressions_fit_a_small_stack() {
    // The parser allows 200 levels; the interpreter must run them on a modest stack even
    // unoptimised (1 MiB here; worker threads have more).
    let mut body = String::from("set req.http.deep = \"yes\";");
    for i in 0..190 {
        body = format!("if (req.url != \"/{i}\") {{ {body} }}");
    }
    let mut cond = String::from("req.url == \"/x\"");
    for i in 0..190 {
        cond = format!("req.url == \"/{i}\" || ({cond})");
    }
    let p = prog(&format!(
        "vcl 4.1; backend default {{ .host = \"a.test\"; }}\n\
         sub vcl_recv {{ {body} if ({cond}) {{ return (synth(200)); }} }}"
    ));
    let mut e = Expr {
        ty: Type::Bool,
        kind: ExprKind::Bool(true),
    };
    for _ in 0..MAX_EXPR_DEPTH {
        e = Expr {
            ty: Type::Bool,
            kind: ExprKind::Not(Box::new(e)),
        };
    }
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn_scoped(s, || {
                let mut c = client_ctx(req("GET", "/x", &[("Host", "a")]));
                let o = run(&p, Method::Recv, &mut c).unwrap();
                assert_eq!(
                    o,
                    Outcome::Synth {
                        status: 200,
                        reason: None
                    }
                );
                assert_eq!(
                    h(&c.req.as_ref().unwrap().headers, "deep"),
                    Some(&b"yes"[..])
                );
                let m = Machine::new(&p, Method::Recv);
                assert_eq!(m.eval(&e, &c, 0).unwrap(), Value::Bool(true));
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

#[test]
fn taken_hash_key_equals_the_parts_key() {
    let mut h = HashCtx::default();
    h.add(b"/a");
    h.add(b"example.com");
    let want = crate::cache::object::CacheKey::from_parts(&[b"/a", b"example.com"]);
    assert_eq!(h.key(), want);
    assert_eq!(h.take_key(), want);
    assert_eq!(h.parts().count(), 0);
    assert!(h.buf.is_empty());
}

#[test]
fn header_names_compare_like_eq_ignore_ascii_case() {
    let names: &[&[u8]] = &[
        b"",
        b"a",
        b"A",
        b"host",
        b"Host",
        b"HOST",
        b"hosT",
        b"h0st",
        b"@",
        b"`",
        b"[",
        b"{",
        b"Z",
        b"z",
        b"accept-encoding",
        b"Accept-Encoding",
        b"ACCEPT-ENCODINg",
        b"accept-encodinh",
        b"x-\xff-y",
        b"X-\xdf-Y",
        b"x-\xff-Y",
        b"12345678",
        b"1234567",
        b"abcdefghijklmnopq",
        b"ABCDEFGHIJKLMNOPQ",
        b"ABCDEFGHIJKLMNOPq",
        b"\xc1",
        b"\xe1",
    ];
    for a in names {
        for b in names {
            if a.len() == b.len() {
                assert_eq!(
                    eq_ignore_case(a, b),
                    a.eq_ignore_ascii_case(b),
                    "{:?} {:?}",
                    a.escape_ascii().to_string(),
                    b.escape_ascii().to_string()
                );
            }
        }
    }
    // Every byte pair, one position.
    for x in 0..=255u8 {
        for y in 0..=255u8 {
            assert_eq!(eq_ignore_case(&[x], &[y]), [x].eq_ignore_ascii_case(&[y]));
        }
    }
}

/// The conditions and strings the interpreter evaluates without [`Value`]s (`cond`,
/// `str_ref`), against the general path (`eval`, then `boolean` / `to_str`).
const SHORTCUTS: &str = r#"
vcl 4.1;
import std;

backend alpha { .host = "alpha.test"; }
acl local { "127.0.0.1"; }

sub vcl_recv {
    if (req.http.host ~ "^(api|rest)\.example\.(com|net)$") {}
    if (req.http.host !~ "^(api|rest)\.example\.(com|net)$") {}
    if (req.url ~ "^/api/" || req.url ~ "^/(static|assets|img)/") {}
    if (req.url ~ "[?&](utm_[a-z]+|gclid|fbclid)=") {}
    if (req.http.missing ~ "^$") {}
    if (req.http.missing !~ "x") {}
    if (req.http.host ~ "[[:upper:]]") {}
    if (req.http.Accept-Encoding) {}
    if (!req.http.cookie) {}
    if (req.http.Accept-Encoding ~ "gzip") {}
    if (req.http.host == "api.example.com") {}
    if (req.http.missing == "a") {}
    if (req.http.missing != "a") {}
    if (req.http.missing == req.http.missing2) {}
    if (req.http.missing != req.http.missing2) {}
    if (req.http.missing < "a") {}
    if (req.http.missing > "a") {}
    if (req.http.missing >= "a") {}
    if ("a" <= req.http.missing) {}
    if (req.url < "/b") {}
    if (req.url >= req.http.host) {}
    if (req.url <= req.url) {}
    if (req.method == "GET" && req.url ~ "x" || req.http.a) {}
    if (req.method != "GET" && req.method != "HEAD") {}
    if (std.tolower(req.http.host) == "api.example.com") {}
    if (regsub(req.http.host, ":[0-9]+$", "") == "api.example.com") {}
    if (req.xid == "1") {}
    if (req.proto ~ "1\.1") {}
    if (client.ip ~ local) {}
    if (req.restarts == 0) {}
    if (req.restarts == 0 && req.proto == "HTTP/1.1") {}
    if (!(req.http.a || req.http.b) && !req.http.c) {}
    if (req.backend_hint) {}
    if (req.http.host ~ "(?i)^API\.") {}
    set req.http.s1 = regsub(req.http.host, ":[0-9]+$", "");
    set req.http.s2 = std.tolower(regsub(req.http.host, ":[0-9]+$", ""));
    set req.http.s3 = regsuball(req.url, "(utm_[a-z]+|gclid|fbclid)=[^&]*&?", "");
    set req.http.s4 = regsub(req.url, "[?&]$", "");
    set req.http.s5 = regsub(req.url, "^/(a|b)", "/\1\1");
    set req.http.s6 = regsub(req.url, "^/", "\0\0");
    set req.http.s7 = req.http.host + "-" + req.url;
    set req.http.s8 = req.http.missing;
    set req.http.s9 = std.toupper(req.http.missing);
    set req.http.s10 = "lit";
    set req.http.s11 = req.url;
    set req.http.s12 = regsub(req.url, "^/x", "");
    set req.http.s13 = regsuball(req.url, "^/x", "");
    set req.http.s14 = regsuball(req.url, "[?&]$", "");
    set req.http.s15 = regsuball(req.http.host, "[.]", "\\");
    set req.http.s16 = std.toupper(req.http.host);
    set req.http.s17 = req.xid;
    set req.http.s18 = req.restarts;
    set req.http.s19 = req.backend_hint;
}
"#;

#[test]
fn shortcut_paths_agree_with_the_general_path() {
    let p = prog(SHORTCUTS);
    let m = Machine::new(&p, Method::Recv);
    let code = p.method(Method::Recv);
    let contexts: Vec<ReqCtx> = vec![
        req("GET", "/obj", &[("Host", "127.0.0.1:6081")]),
        req("GET", "/api/v1?a=1&", &[("host", "API.example.com")]),
        req(
            "HEAD",
            "/x/p?utm_source=a&gclid=b&c=1",
            &[("HOST", "rest.example.net:80")],
        ),
        req(
            "POST",
            "/bb",
            &[
                ("Host", "a"),
                ("Accept-Encoding", "br, gzip"),
                ("Cookie", "x=1"),
                ("a", ""),
                ("missing2", "a"),
            ],
        ),
        req("PURGE", "/static/x.css", &[("missing", "a"), ("c", "1")]),
        req("GET", "", &[]),
    ];
    let mut conds = 0;
    let mut strings = 0;
    for r in contexts {
        let mut c = client_ctx(r);
        c.req.as_mut().unwrap().backend_hint = be(&p, "alpha");
        for st in &code.body {
            match st {
                Stmt::If { branches, .. } => {
                    for (e, _) in branches {
                        let fast = m.cond(e, &c, 0).map_err(String::from);
                        let general = m.eval(e, &c, 0).and_then(|v| boolean(&v));
                        assert_eq!(fast, general, "{e:?} on {:?}", c.req);
                        conds += 1;
                    }
                }
                Stmt::Set { value, .. } => {
                    let fast = m.str_ref(value, &c, 0);
                    let general = m.eval(value, &c, 0).and_then(|v| m.to_str(v));
                    assert_eq!(fast, general, "{value:?} on {:?}", c.req);
                    strings += 1;
                }
                _ => {}
            }
        }
    }
    assert!(conds > 100 && strings > 50, "{conds} {strings}");
}

#[test]
fn a_header_set_from_a_slice_of_the_request_shares_its_buffer() {
    let p = prog(ROUTING);
    let mut head = Headers::new();
    let value = Bytes::from(b"example.com:8080".to_vec());
    head.append("Host", value.clone());
    let mut c = client_ctx(ReqCtx {
        headers: head,
        ..req("GET", "/x", &[])
    });
    run(&p, Method::Recv, &mut c).unwrap();
    let host = c.req.as_ref().unwrap().headers.get("host").unwrap().clone();
    assert_eq!(&host[..], b"example.com");
    // No copy: the new value is a slice of the old one.
    assert_eq!(host.as_ptr(), value.as_ptr());
    // A literal, a built string and a slice of another field are stored as they are.
    let p = prog(
        "vcl 4.1; import std; backend default { .host = \"a.test\"; }\n\
         sub vcl_recv {\n\
           set req.http.a = \"lit\";\n\
           set req.http.b = std.toupper(req.url);\n\
           set req.http.c = regsub(req.url, \"^/\", \"\");\n\
           set req.url = regsub(req.http.c, \"y$\", \"\");\n\
           return (hash);\n\
         }",
    );
    let mut c = client_ctx(req("GET", "/xy", &[]));
    run(&p, Method::Recv, &mut c).unwrap();
    let r = c.req.as_ref().unwrap();
    assert_eq!(h(&r.headers, "a"), Some(&b"lit"[..]));
    assert_eq!(h(&r.headers, "b"), Some(&b"/XY"[..]));
    assert_eq!(h(&r.headers, "c"), Some(&b"xy"[..]));
    assert_eq!(&r.url[..], b"x");
}

#[test]
fn regsub_deleting_at_an_end_borrows_and_agrees_with_the_general_loop() {
    let cases: &[(&str, &str)] = &[
        (":[0-9]+$", "127.0.0.1:6081"),
        (":[0-9]+$", "127.0.0.1"),
        ("[?&]$", "/a?b=1&"),
        ("^/x", "/x/y"),
        ("^/x", "/y/x"),
        ("x", "axbxc"),
        ("x*", "axbxc"),
        ("^", "abc"),
        ("$", "abc"),
        ("", ""),
        (
            "(utm_[a-z]+|gclid|fbclid)=[^&]*&?",
            "/p?utm_a=1&gclid=2&x=3",
        ),
        ("b", "b"),
    ];
    for (pat, subject) in cases {
        let re = crate::vcl::re::Regex::new(pat, 1 << 22).unwrap();
        let plain = regex::bytes::Regex::new(pat).unwrap();
        for all in [false, true] {
            let want: Vec<u8> = if all {
                plain.replace_all(subject.as_bytes(), &b""[..]).into_owned()
            } else {
                plain.replace(subject.as_bytes(), &b""[..]).into_owned()
            };
            let borrowed = regsub(&re, Cow::Borrowed(subject.as_bytes()), b"", all);
            assert_eq!(&borrowed[..], &want[..], "{pat:?} {subject:?} all={all}");
            let owned = regsub(&re, Cow::Owned(subject.as_bytes().to_vec()), b"", all);
            assert_eq!(&owned[..], &want[..], "{pat:?} {subject:?} all={all}");
            // No match, or a first match that ends the subject, or (for regsub) one that
            // starts it: a slice of the subject.
            let first = plain.find(subject.as_bytes());
            let slice = first.is_none_or(|m| m.end() == subject.len() || (m.start() == 0 && !all));
            assert_eq!(
                matches!(borrowed, Cow::Borrowed(_)),
                slice,
                "{pat:?} {subject:?} all={all}"
            );
        }
    }
}

#[test]
fn case_conversion_finds_letters_like_a_byte_loop() {
    let mut subjects: Vec<Vec<u8>> = vec![];
    for n in 0..20 {
        for letter in [
            b'a', b'A', b'z', b'Z', b'@', b'[', b'`', b'{', 0xC1, 0xE1, b'0',
        ] {
            for at in 0..n {
                let mut v = vec![b'.'; n];
                v[at] = letter;
                subjects.push(v);
            }
        }
        subjects.push(vec![b'.'; n]);
    }
    for b in &subjects {
        for up in [false, true] {
            let want = if up {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            let got = change_case(Cow::Borrowed(b), up);
            assert_eq!(
                &got[..],
                &want[..],
                "{:?} up={up}",
                b.escape_ascii().to_string()
            );
            // Unchanged strings are not copied.
            assert_eq!(matches!(got, Cow::Borrowed(_)), want == *b);
        }
    }
}
