//! What a director's pick costs, per kind, at 2, 16 and 1000 members.
//!
//! Why: a director is asked once per fetch (and `hash`/`shard` `.backend()` once per call in
//! VCL); the claim is that a pick is small next to a fetch, also for large pools, and that the
//! shard ring's binary search keeps it flat in the number of members. Two layers are measured:
//! the pure selection functions of `ringcache::director` with health from a slice (the policy
//! alone), and `Running::resolve` on a loaded VCL (the runtime path a fetch takes: health from
//! the board's atomics, the per-shard cursor, the director table). Keys and URLs cycle through
//! 1024 precomputed values. `cargo bench --bench director_pick`; under `cargo test` it runs a
//! few iterations only, as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use ringcache::director::{self, fallback, hash, least_connections, random, round_robin, shard};
use ringcache::health::Health;
use ringcache::server::env::Running;
use ringcache::vcl::exec::{BackendRef, Site};
use ringcache::vcl::program::Method;
use ringcache::vcl::LoadedVcl;

/// Nanoseconds per call of `f` over `iters` calls (best of three runs).
fn ns_per(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

/// A VCL with `n` backends and one director of `kind` over them (`shard` reconfigured with
/// the default 67 replicas).
fn vcl_text(n: usize, kind: &str) -> String {
    let mut s = String::from("vcl 4.1;\nimport directors;\n");
    for i in 0..n {
        s.push_str(&format!(
            "backend b{i} {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n",
            10_000 + i
        ));
    }
    s.push_str(&format!("sub vcl_init {{\n  new d = directors.{kind}();\n"));
    let weight = if kind == "random" { ", 1.0" } else { "" };
    for i in 0..n {
        s.push_str(&format!("  d.add_backend(b{i}{weight});\n"));
    }
    s.push_str("}\nsub vcl_recv { set req.backend_hint = d.backend(); }\n");
    s
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iters: u64 = if full { 2_000_000 } else { 200 };
    let urls: Vec<String> = (0..1024)
        .map(|i| format!("/objects/{i}/index.html"))
        .collect();
    let keys: Vec<u32> = urls
        .iter()
        .map(|u| director::hash32(&[u.as_bytes()]))
        .collect();
    println!("director_pick: ns per pick (best of 3 x {iters}), all members healthy unless said");
    println!("{:<44} {:>10} {:>10} {:>10}", "case", "2", "16", "1000");
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    let sizes = [2usize, 16, 1000];
    let mut row = |name: &'static str, f: &mut dyn FnMut(usize) -> f64| {
        let v = sizes.iter().map(|n| f(*n)).collect();
        rows.push((name, v));
    };
    row("round_robin", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let up = vec![true; n];
        let mut c = 0;
        ns_per(iters, |_| {
            black_box(round_robin::pick(&m, &mut c, |x| up[x]));
        })
    });
    row("round_robin, every other member sick", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let up: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
        let mut c = 0;
        ns_per(iters, |_| {
            black_box(round_robin::pick(&m, &mut c, |x| up[x]));
        })
    });
    row("fallback (first healthy)", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let up = vec![true; n];
        let mut c = 0;
        ns_per(iters, |_| {
            black_box(fallback::pick(&m, false, &mut c, |x| up[x]));
        })
    });
    row("fallback, first half sick", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let up: Vec<bool> = (0..n).map(|i| i >= n / 2).collect();
        let mut c = 0;
        ns_per(iters, |_| {
            black_box(fallback::pick(&m, false, &mut c, |x| up[x]));
        })
    });
    row("random (weights 1..n, draw included)", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let w: Vec<f64> = (1..=n).map(|i| i as f64).collect();
        let up = vec![true; n];
        let mut s = 7u64;
        ns_per(iters, |_| {
            let r = random::next_unit(&mut s);
            black_box(random::pick(&m, &w, r, |x| up[x]));
        })
    });
    row("hash (SHA-256 of a URL included)", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let w = vec![1.0; n];
        let up = vec![true; n];
        ns_per(iters, |i| {
            let u = urls[i as usize % urls.len()].as_bytes();
            black_box(hash::pick(&m, &w, &[u], |x| up[x]));
        })
    });
    let ring = |n: usize| {
        let mut s = shard::Shard::new();
        for i in 0..n {
            s.add_backend(i, &format!("b{i}"), None, None, None);
        }
        s.reconfigure(67).expect("ring");
        s
    };
    row("shard by=KEY (ring lookup and walk)", &mut |n| {
        let s = ring(n);
        let up = vec![true; n];
        let changed = |_: usize| 0.0;
        let mut draw = || 0.5;
        let mut dice = shard::Dice {
            now: 0.0,
            changed: &changed,
            draw: &mut draw,
        };
        ns_per(iters, |i| {
            let p = shard::Params::for_key(keys[i as usize % keys.len()]);
            black_box(s.pick(&p, |x| up[x], &mut dice));
        })
    });
    row("shard by=KEY, every other member sick", &mut |n| {
        let s = ring(n);
        let up: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
        let changed = |_: usize| 0.0;
        let mut draw = || 0.5;
        let mut dice = shard::Dice {
            now: 0.0,
            changed: &changed,
            draw: &mut draw,
        };
        ns_per(iters, |i| {
            let p = shard::Params::for_key(keys[i as usize % keys.len()]);
            black_box(s.pick(&p, |x| up[x], &mut dice));
        })
    });
    row("shard by=URL (SHA-256 of a URL included)", &mut |n| {
        let s = ring(n);
        let up = vec![true; n];
        let changed = |_: usize| 0.0;
        let mut draw = || 0.5;
        let mut dice = shard::Dice {
            now: 0.0,
            changed: &changed,
            draw: &mut draw,
        };
        ns_per(iters, |i| {
            let u = urls[i as usize % urls.len()].as_bytes();
            let p = shard::Params::for_key(director::hash32(&[u]));
            black_box(s.pick(&p, |x| up[x], &mut dice));
        })
    });
    row("least_connections", &mut |n| {
        let m: Vec<usize> = (0..n).collect();
        let up = vec![true; n];
        let load: Vec<u32> = (0..n).map(|i| (i % 3) as u32 + 1).collect();
        let mut c = 0;
        ns_per(iters, |_| {
            black_box(least_connections::pick(&m, &mut c, |x| up[x], |x| load[x]));
        })
    });
    // The runtime path: Running::resolve on a loaded VCL, health from the board.
    let urls = &urls;
    let runtime = |kind: &'static str| {
        move |n: usize| {
            let vcl = Arc::new(
                LoadedVcl::from_text("bench.vcl", &vcl_text(n, kind))
                    .expect("bench VCL loads")
                    .0,
            );
            let run = Running::new(vcl, Arc::new(Health::new()), 1);
            ns_per(iters, |i| {
                let site = Site {
                    sub: Method::BackendFetch,
                    url: Some(urls[i as usize % urls.len()].as_bytes()),
                    hash: None,
                    now: 0.0,
                };
                black_box(run.resolve(BackendRef::Director(0), &site, &[]));
            })
        }
    };
    row(
        "Running::resolve round_robin (board health)",
        &mut runtime("round_robin"),
    );
    row("Running::resolve random", &mut runtime("random"));
    row(
        "Running::resolve shard (lazy, by=HASH->URL)",
        &mut runtime("shard"),
    );
    row(
        "Running::resolve least_connections",
        &mut runtime("least_connections"),
    );
    for (name, v) in &rows {
        println!("{name:<44} {:>10.1} {:>10.1} {:>10.1}", v[0], v[1], v[2]);
    }
}
