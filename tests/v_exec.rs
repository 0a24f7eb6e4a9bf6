//! The VCL interpreter on whole files: the hit path of a read-only routing VCL allocates
//! nothing (counted with a wrapping global allocator), and the seed corpus runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;

use ringcache::cache::{ObjKind, Object};
use ringcache::http::Headers;
use ringcache::vcl::exec::{run, BackendRef, Ctx, ObjView, Outcome, ReqCtx, RespCtx};
use ringcache::vcl::program::Method;
use ringcache::vcl::{compile, parse_str, CompileOptions, Program};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged,
// so `System`'s guarantees hold; the only addition is a thread-local counter update, which
// allocates nothing (a const-initialised `Cell`) and is skipped during thread teardown.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

fn prog(text: &str) -> Program {
    let opts = CompileOptions {
        resolver: Some(Arc::new(|_h: &str, p: &str| {
            Ok(vec![std::net::SocketAddr::from((
                [192, 0, 2, 10],
                p.parse().unwrap_or(80),
            ))])
        })),
        ..Default::default()
    };
    let (mut map, r) = parse_str("t.vcl", text);
    let vcl = r.unwrap_or_else(|e| panic!("{}", map.render(&e[0])));
    compile(&mut map, &vcl, &opts).unwrap_or_else(|e| panic!("{}", map.render(&e[0])))
}

/// A 30-line routing VCL that only reads and compares on the hit path.
const ROUTING: &str = r#"
vcl 4.1;
import std;

backend alpha { .host = "alpha.test"; .port = "8080"; }
backend bravo { .host = "bravo.test"; .port = "8081"; }

sub vcl_recv {
    if (req.http.host == "bravo.example.com" || req.url ~ "^/bravo/") {
        set req.backend_hint = bravo;
    } elsif (req.http.host ~ "(?i)^alpha\.") {
        set req.backend_hint = alpha;
    } else {
        set req.backend_hint = alpha;
    }
    if (req.url ~ "^/admin" || req.http.x-nocache) {
        return (pass);
    }
}

sub vcl_hit {
    if (obj.ttl >= 0s) {
        return (deliver);
    }
    if (std.healthy(req.backend_hint) && obj.ttl + obj.grace > 0s) {
        return (deliver);
    }
}

sub vcl_deliver {
    if (obj.hits > 0 && resp.status == 200) {
        return (deliver);
    }
}
"#;

fn hit_path(p: &Program, o: &Arc<Object>, ctx: &mut Ctx<'_>) {
    ctx.hash.clear();
    assert_eq!(run(p, Method::Recv, ctx).unwrap(), Outcome::Hash);
    assert_eq!(run(p, Method::Hash, ctx).unwrap(), Outcome::Lookup);
    ctx.obj = Some(ObjView {
        obj: o.clone(),
        hits: 1,
    });
    assert_eq!(run(p, Method::Hit, ctx).unwrap(), Outcome::Deliver);
    assert_eq!(run(p, Method::Deliver, ctx).unwrap(), Outcome::Deliver);
}

#[test]
fn read_only_hit_path_does_not_allocate() {
    let p = prog(ROUTING);
    let mut headers = Headers::new();
    headers.append("Host", "bravo.example.com");
    headers.append("User-Agent", "test");
    let req = ReqCtx {
        method: Bytes::from_static(b"GET"),
        url: Bytes::from_static(b"/bravo/index.html"),
        proto: Bytes::from_static(b"HTTP/1.1"),
        headers,
        ..Default::default()
    };
    let oh = Headers::new();
    let o = Arc::new(Object {
        xid: 1,
        kind: ObjKind::Normal,
        status: 200,
        reason: Bytes::from_static(b"OK"),
        head: Object::build_head(200, b"OK", &oh),
        headers: oh,
        body: Bytes::from_static(b"x"),
        t_origin: 990.0,
        ttl: 60.0,
        grace: 10.0,
        keep: 0.0,
        vary: None,
    });
    let mut ctx = Ctx::new(1000.0);
    ctx.req = Some(req);
    ctx.resp = Some(RespCtx {
        status: 200,
        ..Default::default()
    });
    ctx.hash.buf.reserve(256);
    // Warm up (regex caches, lazily built tables).
    hit_path(&p, &o, &mut ctx);
    let before = allocs();
    let probe = std::hint::black_box(vec![0u8; 16]);
    assert!(allocs() > before, "the counting allocator is not counting");
    drop(probe);
    let before = allocs();
    for _ in 0..10 {
        hit_path(&p, &o, &mut ctx);
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "the read-only hit path allocated {n} times");
    assert_eq!(
        ctx.req.as_ref().unwrap().backend_hint,
        p.backend_by_name("bravo").map(BackendRef::Backend)
    );
    let parts: Vec<&[u8]> = ctx.hash.parts().collect();
    assert_eq!(
        parts,
        vec![&b"/bravo/index.html"[..], &b"bravo.example.com"[..]]
    );
}
