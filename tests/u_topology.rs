//! Boot topology as an operator sees it from outside: one thread per shard and the poller
//! thread from the start, shards pinned to cores when there are enough, and IPv4 and IPv6 on
//! both sides (repeated `-a`, `-b [::1]:port`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::*;

/// (thread name, Cpus_allowed_list) for every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((comm.trim().to_string(), cpus));
    }
    out
}

/// Cores this test process may run on (the server inherits the same mask).
fn my_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpus_of<'a>(ts: &'a [(String, String)], prefix: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = ts
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, c)| c.as_str())
        .collect();
    v.sort_unstable();
    v
}

// Goal: the poller thread exists from boot, and there is one thread per shard.
// Method: start with cores=1 and cores=2 and count threads by name in /proc (names are cut to
// 15 bytes by the kernel: "ringcache-shard", "ringcache-polle").
#[test]
fn poller_and_one_thread_per_shard() {
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    for cores in [1usize, 2] {
        let s = Server::for_origin(&o, cores, &["-p", "cpu_affinity=off"]);
        let ts = threads(s.pid());
        assert_eq!(cpus_of(&ts, "ringcache-shard").len(), cores, "{ts:?}");
        assert_eq!(cpus_of(&ts, "ringcache-polle").len(), 1, "{ts:?}");
    }
}

// Goal: shards are pinned one per core when there are enough cores; the poller takes a spare
// core when one is left (cores + 1 <= available), else it floats; cpu_affinity=off pins nothing.
// Method: read each thread's Cpus_allowed_list on a machine with at least 2 cores.
#[test]
fn shards_pinned_poller_on_spare_core() {
    if my_cpus() < 2 {
        eprintln!("SKIPPED shards_pinned_poller_on_spare_core: needs 2 cores");
        return;
    }
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    let all = threads(std::process::id())
        .first()
        .map(|(_, c)| c.clone())
        .unwrap_or_default();

    // 1 shard on a 2+ core machine: shard on core 0, poller on core 1.
    let s = Server::for_origin(&o, 1, &[]);
    let ts = threads(s.pid());
    assert_eq!(cpus_of(&ts, "ringcache-shard"), vec!["0"], "{ts:?}");
    assert_eq!(cpus_of(&ts, "ringcache-polle"), vec!["1"], "{ts:?}");
    drop(s);

    // 2 shards on exactly 2 cores: shards on 0 and 1, the poller shares (unpinned).
    if my_cpus() == 2 {
        let s = Server::for_origin(&o, 2, &[]);
        let ts = threads(s.pid());
        assert_eq!(cpus_of(&ts, "ringcache-shard"), vec!["0", "1"], "{ts:?}");
        assert_eq!(
            cpus_of(&ts, "ringcache-polle"),
            vec![all.as_str()],
            "{ts:?}"
        );
        drop(s);
    }

    // cpu_affinity=off: nobody is pinned.
    let s = Server::for_origin(&o, 2, &["-p", "cpu_affinity=off"]);
    let ts = threads(s.pid());
    for (name, cpus) in &ts {
        assert_eq!(
            cpus, &all,
            "{name} pinned although cpu_affinity=off: {ts:?}"
        );
    }
}

/// A minimal origin on [::1]: answers every request with a cacheable "v6" and counts requests.
fn ipv6_origin() -> Option<(SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let l = TcpListener::bind("[::1]:0").ok()?;
    let addr = l.local_addr().ok()?;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        // Bounded: at most 16 connections, each with a read timeout.
        for conn in l.incoming().take(16).flatten() {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for _ in 0..64 {
                    let n = match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nv6";
                        if conn.write_all(resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Some((addr, count))
}

// Goal: repeated -a listens on IPv4 and IPv6, and -b accepts a bracketed IPv6 backend.
// Method: origin on [::1]; ringcache with -a 127.0.0.1:0 -a [::1]:0 -b [::1]:PORT, 1 and 2
// shards; a miss over IPv4 then a hit over IPv6; the origin sees one request.
#[test]
fn ipv4_and_ipv6_listeners_and_ipv6_backend() {
    for cores in [1usize, 2] {
        let Some((origin, count)) = ipv6_origin() else {
            eprintln!("SKIPPED ipv4_and_ipv6_listeners_and_ipv6_backend: no IPv6 loopback");
            return;
        };
        let backend = format!("[::1]:{}", origin.port());
        let s = Server::start(&[
            "-a",
            "127.0.0.1:0",
            "-a",
            "[::1]:0",
            "-b",
            &backend,
            "-p",
            &format!("cores={cores}"),
        ]);
        let addrs = s.addrs().to_vec();
        assert_eq!(addrs.len(), 2, "two listen lines: {}", s.stderr_text());
        let v4 = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .copied()
            .expect("IPv4 listener");
        let v6 = addrs
            .iter()
            .find(|a| a.is_ipv6())
            .copied()
            .expect("IPv6 listener");
        let r1 = get(v4, "/six", &[("Host", "h")]);
        assert_eq!(
            (r1.status, r1.body_str().as_str()),
            (200, "v6"),
            "{}",
            r1.summary()
        );
        let r2 = get(v6, "/six", &[("Host", "h")]);
        assert_eq!(r2.status, 200, "{}", r2.summary());
        assert!(r2.is_hit(), "same key over IPv6 must hit: {}", r2.summary());
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
