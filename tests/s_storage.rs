//! Storage limits: with a small cache (`-s 1m`) a flood of unique objects evicts old ones, the
//! server keeps serving, and memory stays bounded.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

shard_tests!(small_storage_evicts_and_stays_bounded);

const OBJECTS: usize = 4000;
const OBJ_SIZE: usize = 2048;
const THREADS: usize = 4;

fn body_for(url: &str) -> Vec<u8> {
    let mut b = format!("{url}:").into_bytes();
    b.resize(OBJ_SIZE, b'.');
    b
}

// Goal: with -s 1m, 4,000 unique 2 KiB objects (8 MiB) are all served, the first ones get
// evicted (the origin sees them again), and the process RSS stays below 64 MiB.
// Method: 4 client threads on keep-alive connections fetch 1,000 URLs each (bounded to 60 s);
// then the first 10 URLs are fetched again; RSS read from /proc/<pid>/status and printed.
fn small_storage_evicts_and_stays_bounded(cores: usize) {
    let o = Origin::start(|req, _| Reply::ok(body_for(&req.url)).cc("max-age=600"));
    let mut s = Server::for_origin(&o, cores, &["-s", "1m"]);
    let addr = s.addr();
    let rss_before = s.rss_kib();
    let t0 = Instant::now();
    let errors: Vec<String> = parallel(THREADS, |t| {
        let mut errs = Vec::new();
        let mut c = Client::connect(addr);
        for i in (t..OBJECTS).step_by(THREADS) {
            if t0.elapsed() > Duration::from_secs(60) {
                errs.push(format!("flood exceeded 60 s at object {i}"));
                break;
            }
            let url = format!("/u{i:05}");
            let r = c.get(&url, &[]);
            if r.status != 200 || r.body != body_for(&url) {
                errs.push(format!("{url}: {}", r.summary()));
                if errs.len() > 5 {
                    break;
                }
            }
            if r.header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                c = Client::connect(addr);
            }
        }
        errs
    })
    .into_iter()
    .flatten()
    .collect();
    let flood = t0.elapsed();
    assert!(errors.is_empty(), "flood errors: {errors:?}");
    s.assert_alive();
    assert_eq!(o.request_count(), OBJECTS);
    for i in 0..10 {
        let url = format!("/u{i:05}");
        let r = get(addr, &url, &[]);
        assert_eq!(r.status, 200);
        assert!(r.body == body_for(&url));
        assert_eq!(
            o.count_url(&url),
            2,
            "{url} should have been evicted from a 1 MiB store by 8 MiB of newer objects"
        );
    }
    let rss = s.rss_kib().expect("VmRSS");
    println!(
        "ringcache cores={cores} -s 1m: {OBJECTS} x {OBJ_SIZE} B in {flood:?}; \
         RSS before {rss_before:?} KiB, after {rss} KiB"
    );
    assert!(rss < 64 * 1024, "RSS {rss} KiB exceeds 64 MiB");
}
