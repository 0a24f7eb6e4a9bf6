//! Micro-benchmark of the VCL work on a cache hit, without sockets: `vcl_recv`, `vcl_hash`,
//! `vcl_hit` and `vcl_deliver` for the VCL `-b` generates (the built-in VCL alone) and for the
//! load test's 30-line routing VCL (`loadtest/routing.vcl`).
//!
//! Why: the load test compares the two servers end to end through the kernel and wrk, where the
//! VCL's share is a few percent and noisy; this isolates it as ns/op so a change to the
//! interpreter shows up directly. `cargo bench --bench vcl_path` runs it; under `cargo test`
//! it runs a few iterations only, as a smoke test. It also prints the time of each of these
//! VCLs' regexes on the request through `vcl::re` and through the `regex` crate alone.
//! `VCL_PATH_ONLY=none|b|routing|FILE` runs one case, or the VCL in FILE, once (to profile
//! it with callgrind or perf).

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringcache::cache::Object;
use ringcache::cli::Backend;
use ringcache::http::request::{parse_request, Limits};
use ringcache::vcl::exec::{run, Ctx, ObjView, Outcome, ReqCtx};
use ringcache::vcl::program::Method;
use ringcache::vcl::{compile, parse_str, CompileOptions, LoadedVcl};

const REQUEST: &[u8] =
    b"GET /obj HTTP/1.1\r\nHost: 127.0.0.1:6081\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";

fn object() -> Arc<Object> {
    common::object(&[
        ("Content-Type", "application/octet-stream"),
        ("Cache-Control", "max-age=3600"),
    ])
}

fn routing() -> LoadedVcl {
    load(&include_str!("../loadtest/routing.vcl").replace("@PORT@", "8080"))
}

fn load(text: &str) -> LoadedVcl {
    let (mut map, parsed) = parse_str("routing.vcl", text);
    let vcl = parsed.expect("the VCL parses");
    let p = compile(&mut map, &vcl, &CompileOptions::default()).expect("the VCL compiles");
    LoadedVcl::prepare(p).expect("the VCL loads")
}

/// ns per request for recv + hash (key taken) + hit + deliver; with `vcl` `None`, the same
/// request preparation and key without any VCL (the baseline the VCL's cost is read against).
fn measure(vcl: Option<&LoadedVcl>, iterations: u64) -> f64 {
    let limits = Limits::default();
    let obj = object();
    let mut buf = BytesMut::with_capacity(4096);
    let start = Instant::now();
    for _ in 0..iterations {
        buf.extend_from_slice(REQUEST);
        let head = match parse_request(&mut buf, &limits) {
            Ok(Some(r)) => r,
            other => panic!("request did not parse: {:?}", other.err()),
        };
        let mut ctx = Ctx::new(1_500.0);
        ctx.req = Some(ReqCtx {
            method: head.method_raw,
            url: head.url,
            proto: Bytes::from_static(b"HTTP/1.1"),
            headers: head.headers,
            backend_hint: vcl.and_then(|v| v.default_backend()),
            ..ReqCtx::default()
        });
        ctx.hash.buf.reserve(128);
        let Some(vcl) = vcl else {
            if let Some(req) = &ctx.req {
                let (url, host) = (req.url.clone(), req.headers.get("host").cloned());
                ctx.hash.add(&url);
                ctx.hash.add(host.as_deref().unwrap_or_default());
            }
            std::hint::black_box(ctx.hash.take_key());
            continue;
        };
        let p = &vcl.program;
        assert_eq!(run(p, Method::Recv, &mut ctx), Ok(Outcome::Hash));
        assert_eq!(run(p, Method::Hash, &mut ctx), Ok(Outcome::Lookup));
        let key = ctx.hash.take_key();
        std::hint::black_box(&key);
        ctx.obj = Some(ObjView {
            obj: obj.clone(),
            hits: 1,
        });
        assert_eq!(run(p, Method::Hit, &mut ctx), Ok(Outcome::Deliver));
        assert_eq!(run(p, Method::Deliver, &mut ctx), Ok(Outcome::Deliver));
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations: u64 = if full { 1_000_000 } else { 1_000 };
    let b = LoadedVcl::for_backend(&Backend {
        addr: "127.0.0.1:8080".parse().expect("addr"),
        host_header: "127.0.0.1:8080".into(),
    })
    .expect("-b VCL");
    let r = routing();
    // `VCL_PATH_ONLY=none|b|routing|FILE`: that case (or the VCL in FILE) alone, once (for a
    // profiler such as callgrind).
    if let Ok(which) = std::env::var("VCL_PATH_ONLY") {
        let f;
        let vcl = match which.as_str() {
            "none" => None,
            "b" => Some(&b),
            "routing" => Some(&r),
            file => {
                let text = std::fs::read_to_string(file).expect("VCL_PATH_ONLY: a VCL file");
                f = load(&text.replace("@PORT@", "8080"));
                Some(&f)
            }
        };
        let ns = measure(vcl, iterations);
        println!("vcl_path: {which}: {iterations} iterations, {ns:.0} ns/op");
        return;
    }
    // Alternate to share the machine's drift.
    let (mut n0, mut nb, mut nr) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        n0.push(measure(None, iterations));
        nb.push(measure(Some(&b), iterations));
        nr.push(measure(Some(&r), iterations));
    }
    for v in [&mut n0, &mut nb, &mut nr] {
        v.sort_by(f64::total_cmp);
    }
    if full {
        println!(
            "vcl_path: {} iterations x3, median ns/op: no VCL (parse, context, key) {:.0}; \
             -b (built-in VCL) {:.0} (VCL {:.0}); routing.vcl {:.0} (VCL {:.0})",
            iterations,
            n0[1],
            nb[1],
            nb[1] - n0[1],
            nr[1],
            nr[1] - n0[1]
        );
    }
    regexes(if full { 2_000_000 } else { 1_000 }, full);
}

/// ns per match of the regexes the two VCLs run on the benchmark's request (and on a few
/// longer subjects), through `vcl::re` (the fast forms) and through the `regex` crate alone.
fn regexes(iterations: u32, print: bool) {
    let cases = [
        ("[[:upper:]]", "127.0.0.1:6081"),
        (":[0-9]+$", "127.0.0.1:6081"),
        (r"^(api|rest)\.example\.(com|net)$", "127.0.0.1"),
        ("^/api/", "/obj"),
        ("^/(static|assets|img)/", "/obj"),
        ("[?&](utm_[a-z]+|gclid|fbclid)=", "/obj"),
        ("gzip", "gzip, deflate, br"),
        // Subjects the length check does not turn away.
        (r"^(api|rest)\.example\.(com|net)$", "rest.example.net"),
        ("^/(static|assets|img)/", "/img/logo.png"),
        (
            "[?&](utm_[a-z]+|gclid|fbclid)=",
            "/p/1234?ref=home&utm_source=news",
        ),
        ("[?&](utm_[a-z]+|gclid|fbclid)=", "/p/1234/reviews"),
    ];
    let time = |f: &dyn Fn(&[u8]) -> bool, h: &[u8]| {
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(f(std::hint::black_box(h)));
        }
        start.elapsed().as_nanos() as f64 / f64::from(iterations)
    };
    let mut line = String::from("vcl_path: regex ns/match (vcl::re / regex crate):");
    for (pat, subject) in cases {
        let re = ringcache::vcl::re::Regex::new(pat, 1 << 22).expect("regex");
        let fast = time(&|h| re.is_match(h), subject.as_bytes());
        let plain = time(&|h| re.regex().is_match(h), subject.as_bytes());
        line.push_str(&format!(" {pat} on {subject:?} {fast:.1}/{plain:.1};"));
    }
    if print {
        println!("{}", line.trim_end_matches(';'));
    }
}
