//! Backend health, black box: real probes from the poller against fake backends written here,
//! the `Backend_health` lines they log, what requests see, and the admin commands that steer
//! health (`backend.set_health`, `vcl.inline`/`vcl.use`/`vcl.discard` with shared slots).
//!
//! Expectations are Varnish's (reference section 2): exact probe bytes, no half-close, the
//! window/threshold arithmetic, `.initial`, `.timeout`; shared health across loaded VCLs is the
//! ringcache extension of the health issue.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

shard_tests!(
    set_health_overrides_the_probe,
    vcl_use_keeps_health_of_shared_backends,
    grace_serves_while_the_probe_says_sick,
);

/// Every probe's `Backend_health` line on stderr (by default only transitions go there), which
/// these tests read poke by poke.
const POKES: &[&str] = &["-p", "log_probes=on"];

/// Every request a fake backend read, with when it arrived.
type RequestLog = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// What the fake backend does with connection number `n` (from 0).
#[derive(Clone)]
enum Act {
    /// Sends these bytes and closes.
    Answer(Vec<u8>),
    /// Sends these bytes, then keeps the connection open for this long.
    AnswerKeepOpen(Vec<u8>, Duration),
    /// Reads the request and never answers (closes after this long).
    Hang(Duration),
    /// Zope 2.10: after the request, if the client half-closes, drop the connection without
    /// answering; otherwise answer.
    ZopeAnswer(Vec<u8>),
}

fn ok_close() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
}

fn status_close(code: u16) -> Vec<u8> {
    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A fake backend on 127.0.0.1:0 that records every request it reads (with its arrival time)
/// and answers by script. Stops on drop.
struct ProbeBackend {
    addr: SocketAddr,
    log: RequestLog,
    half_closed: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProbeBackend {
    fn start(script: impl Fn(usize) -> Act + Send + Sync + 'static) -> ProbeBackend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let half_closed = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (log2, hc2, stop2) = (log.clone(), half_closed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0usize;
            // Bounded: at most 10 minutes or 100k connections.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && n < 100_000 {
                match l.accept() {
                    Ok((s, _)) => {
                        let act = script(n);
                        n += 1;
                        let (log, hc, stop) = (log2.clone(), hc2.clone(), stop2.clone());
                        std::thread::spawn(move || serve(s, act, log, hc, stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ProbeBackend {
            addr,
            log,
            half_closed,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<(Instant, Vec<u8>)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for ProbeBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    act: Act,
    log: RequestLog,
    half_closed: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    log.lock().unwrap().push((Instant::now(), req));
    match act {
        Act::Answer(b) => {
            let _ = s.write_all(&b);
        }
        Act::AnswerKeepOpen(b, d) => {
            let _ = s.write_all(&b);
            sleep_unless(&stop, d);
        }
        Act::Hang(d) => sleep_unless(&stop, d),
        Act::ZopeAnswer(b) => {
            // A half-closing client is seen at once as a read of 0 bytes.
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            match s.read(&mut buf) {
                Ok(0) => {
                    *half_closed.lock().unwrap() += 1;
                    // Dropped without answering, as Zope 2.10 did.
                }
                _ => {
                    let _ = s.write_all(&b);
                }
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One parsed `Backend_health` line.
#[derive(Debug, Clone, PartialEq)]
struct Health {
    name: String,
    transition: String,
    bits: String,
    good: u32,
    threshold: u32,
    window: u32,
    message: String,
}

fn health_lines(s: &Server, name: &str) -> Vec<Health> {
    s.stderr_text()
        .lines()
        .filter_map(|l| l.strip_prefix("Backend_health - "))
        .filter_map(|rest| {
            let (head, msg) = rest.split_once(" \"")?;
            let w: Vec<&str> = head.split(' ').collect();
            if w.len() < 9 || w[0] != name {
                return None;
            }
            Some(Health {
                name: w[0].to_string(),
                transition: format!("{} {}", w[1], w[2]),
                bits: w[3].to_string(),
                good: w[4].parse().ok()?,
                threshold: w[5].parse().ok()?,
                window: w[6].parse().ok()?,
                message: msg.strip_suffix('"').unwrap_or(msg).to_string(),
            })
        })
        .collect()
}

/// The poke lines (not the line logged when the probe is created, whose message is empty).
fn pokes(s: &Server, name: &str) -> Vec<Health> {
    health_lines(s, name)
        .into_iter()
        .filter(|h| !h.message.is_empty())
        .collect()
}

fn wait_pokes(s: &Server, name: &str, n: usize, timeout: Duration) -> Vec<Health> {
    wait_until(timeout, || pokes(s, name).len() >= n);
    let p = pokes(s, name);
    assert!(
        p.len() >= n,
        "wanted {n} pokes of {name}, got {}; stderr:\n{}",
        p.len(),
        s.stderr_text()
    );
    p
}

/// A `vcl_recv` that names every backend of `names` (varnishd refuses unused backends).
fn use_all(names: &[&str]) -> String {
    let mut s = String::from("sub vcl_recv {\n");
    for n in names {
        s.push_str(&format!(
            "    if (req.url == \"/{n}\") {{ set req.backend_hint = {n}; }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

fn backend(name: &str, addr: SocketAddr, probe: &str) -> String {
    format!(
        "backend {name} {{ .host = \"127.0.0.1\"; .port = \"{}\"; .probe = {{ {probe} }} }}\n",
        addr.port()
    )
}

// Goal: the probe sends exactly Varnish's bytes on a new connection (no other header), with the
// backend's Host header, and a backend answering 200 goes healthy.
#[test]
fn probe_sends_exact_bytes() {
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\nbackend be {{ .host = \"127.0.0.1\"; .port = \"{}\"; .host_header = \"probe.example\";\n\
         .probe = {{ .url = \"/health?x=1\"; .interval = 100ms; .window = 3; .threshold = 2; .initial = 0; }} }}\n",
        b.addr.port()
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let p = wait_pokes(&s, "be", 2, Duration::from_secs(10));
    assert_eq!(p[0].transition, "Still sick", "{p:?}");
    assert_eq!(p[1].transition, "Went healthy", "{p:?}");
    assert_eq!(p[1].bits, "4---X-RH");
    assert_eq!(p[1].message, "HTTP/1.1 200 OK");
    let reqs = b.requests();
    assert!(reqs.len() >= 2);
    for (_, r) in &reqs {
        assert_eq!(
            String::from_utf8_lossy(r),
            "GET /health?x=1 HTTP/1.1\r\nHost: probe.example\r\nConnection: close\r\n\r\n"
        );
    }
}

// Goal: seed 000, the Zope 2.10 half-close failure: a backend that drops a connection whose
// client half-closes must probe healthy, because ringcache never half-closes its probe.
#[test]
fn half_close_intolerant_backend_stays_healthy() {
    let b = ProbeBackend::start(|_| Act::ZopeAnswer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend(
            "zope",
            b.addr,
            ".url = \"/\"; .interval = 100ms; .timeout = 1s; .window = 4; .threshold = 4; .initial = 4;"
        )
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let p = wait_pokes(&s, "zope", 5, Duration::from_secs(15));
    for h in &p {
        assert_eq!(h.transition, "Still healthy", "{p:?}");
        assert_eq!(h.bits, "4---X-RH", "{p:?}");
    }
    assert_eq!(*b.half_closed.lock().unwrap(), 0, "a probe half-closed");
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
}

// Goal: Varnish's window arithmetic over a scripted sequence: 200, 200, 404, garbage, a status
// line without reason phrase, then 500s: good counts and transitions exactly as Varnish's.
#[test]
fn window_threshold_sequence() {
    let seq: Vec<Vec<u8>> = vec![
        ok_close(),
        ok_close(),
        status_close(404),
        b"FROBOZ 200 OK\r\n\r\n".to_vec(),
        b"HTTP/1.1 200\r\n\r\n".to_vec(),
    ];
    let b = ProbeBackend::start(move |n| {
        Act::Answer(seq.get(n).cloned().unwrap_or_else(|| status_close(500)))
    });
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend(
            "be",
            b.addr,
            ".interval = 50ms; .window = 4; .threshold = 2; .initial = 0;"
        )
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let p = wait_pokes(&s, "be", 8, Duration::from_secs(15));
    let got: Vec<(String, u32)> = p[..8]
        .iter()
        .map(|h| (h.transition.clone(), h.good))
        .collect();
    let want: Vec<(String, u32)> = [
        ("Still sick", 1),
        ("Went healthy", 2),
        ("Still healthy", 2),
        ("Still healthy", 2),
        ("Still healthy", 2),
        ("Went sick", 1),
        ("Still sick", 1),
        ("Still sick", 1),
    ]
    .iter()
    .map(|(t, g)| (t.to_string(), *g))
    .collect();
    assert_eq!(got, want, "{p:#?}");
    assert!(p.iter().all(|h| h.threshold == 2 && h.window == 4));
    assert_eq!(p[2].bits, "4---X-R-", "404 is received but not happy");
    assert_eq!(p[3].bits, "4---X-R-", "FROBOZ is not HTTP");
    assert_eq!(p[4].bits, "4---X-RH", "no reason phrase is fine");
    assert_eq!(p[4].message, "HTTP/1.1 200");
}

// Goal: `.expected_response` decides what is happy.
#[test]
fn expected_response() {
    let b = ProbeBackend::start(|_| Act::Answer(status_close(404)));
    let vcl = format!(
        "vcl 4.1;\n{}{}{}",
        backend(
            "wants404",
            b.addr,
            ".interval = 100ms; .expected_response = 404; .window = 2; .threshold = 1; .initial = 0;"
        ),
        backend(
            "wants200",
            b.addr,
            ".interval = 100ms; .window = 2; .threshold = 1; .initial = 0;"
        ),
        use_all(&["wants404", "wants200"])
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let a = wait_pokes(&s, "wants404", 2, Duration::from_secs(10));
    let c = wait_pokes(&s, "wants200", 2, Duration::from_secs(10));
    assert_eq!(a[0].transition, "Went healthy", "{a:?}");
    assert!(c.iter().all(|h| h.transition == "Still sick"), "{c:?}");
}

// Goal: `.expect_close`: a backend that answers but keeps the connection open fails the probe
// with the default (true: the answer must end with the close, within .timeout) and passes with
// false (what arrived by the deadline is judged).
#[test]
fn expect_close_both_ways() {
    let b = ProbeBackend::start(|_| {
        Act::AnswerKeepOpen(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Duration::from_secs(3),
        )
    });
    let vcl = format!(
        "vcl 4.1;\n{}{}{}",
        backend(
            "strict",
            b.addr,
            ".interval = 100ms; .timeout = 300ms; .window = 2; .threshold = 1; .initial = 0;"
        ),
        backend(
            "lenient",
            b.addr,
            ".interval = 100ms; .timeout = 300ms; .expect_close = false; .window = 2; .threshold = 1; .initial = 0;"
        ),
        use_all(&["strict", "lenient"])
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let strict = wait_pokes(&s, "strict", 2, Duration::from_secs(10));
    let lenient = wait_pokes(&s, "lenient", 2, Duration::from_secs(10));
    assert!(
        strict
            .iter()
            .all(|h| h.transition == "Still sick" && h.bits.contains('r')),
        "{strict:?}"
    );
    assert_eq!(lenient[0].transition, "Went healthy", "{lenient:?}");
}

// Goal: a frozen backend (accepts, never answers) goes sick once `.timeout` has passed, and then
// a request gets a fast 503 instead of waiting on it.
#[test]
fn frozen_backend_goes_sick_after_timeout() {
    let b = ProbeBackend::start(|_| Act::Hang(Duration::from_secs(5)));
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend(
            "frozen",
            b.addr,
            ".interval = 100ms; .timeout = 300ms; .window = 1; .threshold = 1; .initial = 1;"
        )
    );
    let started = Instant::now();
    let s = Server::with_vcl(&vcl, 1, POKES);
    let p = wait_pokes(&s, "frozen", 1, Duration::from_secs(10));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "went sick before .timeout"
    );
    assert_eq!(p[0].transition, "Went sick", "{p:?}");
    assert!(p[0].bits.contains('r'), "{p:?}");
    let (r, took) = timed_get(s.addr(), "/", &[]);
    assert_eq!(r.status, 503);
    assert!(
        took < Duration::from_secs(5),
        "the 503 waited for the frozen backend"
    );
}

// Goal: `.initial` decides health before the first poke completes: initial >= threshold starts
// healthy (requests pass), initial < threshold starts sick (503). The probes go to a dedicated
// health port (`.port`, the ringcache extension) that takes a second to answer.
#[test]
fn initial_and_probe_port() {
    let origin = Origin::fixed("origin", &[]);
    let health = ProbeBackend::start(|_| {
        Act::Hang(Duration::from_secs(1)) // never a verdict during the test's first second
    });
    let vcl = format!(
        "vcl 4.1;\n\
         backend up {{ .host = \"127.0.0.1\"; .port = \"{op}\"; .probe = {{ .url = \"/probe-check\"; .port = \"{hp}\"; .interval = 5s; .timeout = 3s; .window = 3; .threshold = 3; .initial = 3; }} }}\n\
         backend down {{ .host = \"127.0.0.1\"; .port = \"{op}\"; .probe = {{ .url = \"/probe-check\"; .port = \"{hp}\"; .interval = 5s; .timeout = 3s; .window = 3; .threshold = 3; .initial = 2; }} }}\n\
         sub vcl_recv {{ if (req.url ~ \"^/down\") {{ set req.backend_hint = down; }} else {{ set req.backend_hint = up; }} return (pass); }}\n",
        op = origin.addr().port(),
        hp = health.addr.port()
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    assert_eq!(get(s.addr(), "/up", &[]).status, 200);
    assert_eq!(get(s.addr(), "/down", &[]).status, 503);
    assert!(wait_until(Duration::from_secs(5), || health.count() >= 2));
    assert_eq!(
        origin.count_url("/probe-check"),
        0,
        "probes went to the health port, not the origin"
    );
}

fn set_health_overrides_the_probe(cores: usize) {
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\n{}\nsub vcl_recv {{ return (pass); }}\n",
        backend(
            "be",
            b.addr,
            ".url = \"/probe\"; .interval = 100ms; .window = 1; .threshold = 1; .initial = 1;"
        )
    );
    let s = Server::with_vcl(&vcl, cores, POKES);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let all_status =
        |want: u16| (0..2 * cores).all(|i| get(s.addr(), &format!("/x{i}"), &[]).status == want);
    assert!(all_status(200));
    assert_eq!(adm.cmd("backend.set_health be sick").status, 200);
    assert!(all_status(503), "forced sick wins over a healthy probe");
    let l = adm.cmd("backend.list");
    assert!(l.body.contains("boot.be"), "{l:?}");
    assert!(l.body.contains("sick"), "{l:?}");
    assert_eq!(adm.cmd("backend.set_health be auto").status, 200);
    assert!(all_status(200), "auto: the probe decides again");
    assert_eq!(adm.cmd("backend.set_health be HEALTHY").status, 200);
    assert!(all_status(200));
    let bad = adm.cmd("backend.set_health be maybe");
    assert_eq!(bad.status, 106, "{bad:?}");
    let none = adm.cmd("backend.set_health nosuch sick");
    assert_eq!(none.status, 106, "{none:?}");
}

fn vcl_use_keeps_health_of_shared_backends(cores: usize) {
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let be = backend(
        "be",
        b.addr,
        ".url = \"/probe\"; .interval = 200ms; .window = 3; .threshold = 3; .initial = 0;",
    );
    let vcl = format!("vcl 4.1;\n{be}\nsub vcl_recv {{ return (pass); }}\n");
    let s = Server::with_vcl(&vcl, cores, POKES);
    // Starts sick (initial 0), healthy after three good pokes.
    wait_until(Duration::from_secs(10), || {
        pokes(&s, "be")
            .iter()
            .any(|h| h.transition == "Went healthy")
    });
    assert_eq!(get(s.addr(), "/a", &[]).status, 200);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    // The same backend in a second VCL: same slot, no new sick period, no second probe stream.
    let inline = format!(
        "vcl.inline v2 \"vcl 4.1;\\n{}\\nsub vcl_recv {{ return (pass); }}\\n\"",
        be.replace('"', "\\\"").replace('\n', "\\n")
    );
    let r = adm.cmd(&inline);
    assert_eq!(r.status, 200, "{r:?}");
    let r = adm.cmd("vcl.use v2");
    assert_eq!(r.status, 200, "{r:?}");
    for i in 0..4 {
        assert_eq!(
            get(s.addr(), &format!("/b{i}"), &[]).status,
            200,
            "health right after vcl.use is current"
        );
    }
    // One probe stream: over ~1.2 s at 200 ms, about 6 probes, not 12.
    let before = b.count();
    std::thread::sleep(Duration::from_millis(1200));
    let n = b.count() - before;
    assert!(n <= 9, "{n} probes in 1.2 s: two streams?");
    let l = adm.cmd("backend.list *.*");
    assert!(
        l.body.contains("boot.be") && l.body.contains("v2.be"),
        "{l:?}"
    );
    // Discarding the old VCL keeps the slot (v2 uses it); the probe goes on.
    assert_eq!(adm.cmd("vcl.discard boot").status, 200);
    let before = b.count();
    assert!(wait_until(Duration::from_secs(5), || b.count() >= before + 2));
    assert_eq!(get(s.addr(), "/c", &[]).status, 200);
}

// Goal: a slot no VCL uses any more is retired and its probe stops.
#[test]
fn discarded_vcl_stops_its_probe() {
    let origin = Origin::fixed("origin", &[]);
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!("vcl 4.1;\n{}", vcl_backend("default", origin.addr()));
    let s = Server::with_vcl(&vcl, 1, POKES);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let v2 = format!(
        "vcl 4.1;\n{}",
        backend("other", b.addr, ".url = \"/p\"; .interval = 100ms;")
    );
    let r = adm.cmd(&format!(
        "vcl.inline v2 \"{}\"",
        v2.replace('"', "\\\"").replace('\n', "\\n")
    ));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        wait_until(Duration::from_secs(5), || b.count() >= 2),
        "a loaded VCL probes"
    );
    assert_eq!(adm.cmd("vcl.discard v2").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let settled = b.count();
    std::thread::sleep(Duration::from_millis(600));
    assert!(b.count() <= settled + 1, "the retired slot's probe goes on");
}

// Goal: Debian's real varnishadm lists ringcache's backends and sets their health.
#[test]
fn real_varnishadm_backend_commands() {
    if run_program("varnishadm", &["-h"], b"")
        .err()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED real_varnishadm_backend_commands: varnishadm is not installed"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("ringcache-t_health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, b"s3cret\n").expect("secret");
    let secret = secret.to_str().expect("utf-8").to_string();
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend("be", b.addr, ".interval = 100ms; .initial = 3;")
    );
    let s = Server::with_vcl(&vcl, 1, &["-S", &secret, "-p", "log_probes=on"]);
    let t = s.admin_addr().to_string();
    let r = run_program(
        "varnishadm",
        &["-T", &t, "-S", &secret, "backend.list"],
        b"",
    )
    .expect("run");
    assert!(r.status.success(), "{r:?}");
    assert!(r.stdout.starts_with("Backend name"), "{r:?}");
    assert!(r.stdout.contains("boot.be"), "{r:?}");
    let r = run_program(
        "varnishadm",
        &["-T", &t, "-S", &secret, "backend.set_health", "be", "sick"],
        b"",
    )
    .expect("run");
    assert!(r.status.success(), "{r:?}");
    assert_eq!(get(s.addr(), "/", &[]).status, 503);
    let r = run_program(
        "varnishadm",
        &["-T", &t, "-S", &secret, "backend.list", "-p"],
        b"",
    )
    .expect("run");
    assert!(r.stdout.contains("Current states"), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Goal: `poller.stats` (ringcache extension) counts the probes the poller started and how late
// they started; `-r` starts a new measurement.
#[test]
fn poller_stats_count_probes() {
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend("be", b.addr, ".interval = 50ms; .initial = 3;")
    );
    let s = Server::with_vcl(&vcl, 1, POKES);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let probes = |adm: &mut AdminConn, arg: &str| -> u64 {
        let r = adm.cmd(&format!("poller.stats{arg}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains("lateness_p99_us "), "{r:?}");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix("probes "))
            .and_then(|v| v.parse().ok())
            .expect("a probes line")
    };
    assert!(wait_until(Duration::from_secs(10), || b.count() >= 4));
    assert!(probes(&mut adm, " -r") >= 4);
    assert!(probes(&mut adm, "") < 4, "-r did not reset");
    assert_eq!(adm.cmd("poller.stats -x").status, 106);
}

// Goal: every `Backend_health` line reaches the admin log stream (`log.read`, ringcache
// extension), filterable by tag and resumable by sequence number, while stderr gets only the
// transitions by default (`log_probes=off`).
#[test]
fn backend_health_on_the_admin_log() {
    let b = ProbeBackend::start(|_| Act::Answer(ok_close()));
    let vcl = format!(
        "vcl 4.1;\n{}",
        backend(
            "be",
            b.addr,
            ".interval = 50ms; .window = 3; .threshold = 2; .initial = 0;"
        )
    );
    // Default `log_probes=off`: stderr gets the transitions, the event stream every poke.
    let s = Server::with_vcl(&vcl, 1, &[]);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let read = |adm: &mut AdminConn, args: &str| -> Vec<(u64, String)> {
        let r = adm.cmd(&format!("log.read{args}"));
        assert_eq!(r.status, 200, "{r:?}");
        r.body
            .lines()
            .filter_map(|l| {
                let (n, rest) = l.split_once(' ')?;
                Some((n.parse().ok()?, rest.to_string()))
            })
            .collect()
    };
    assert!(wait_until(Duration::from_secs(10), || {
        read(&mut adm, " -i Backend_health")
            .iter()
            .any(|(_, l)| l.starts_with("Backend_health - be Went healthy "))
    }));
    let all = read(&mut adm, " -i Backend_health");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    let last = all.last().map(|e| e.0).unwrap_or(0);
    let later = read(&mut adm, &format!(" -i backend_health {last}"));
    assert!(later.iter().all(|e| e.0 > last));
    assert!(read(&mut adm, " -i VCL_Event").is_empty());
    assert_eq!(adm.cmd("log.read x").status, 106);
    assert!(wait_until(Duration::from_secs(10), || {
        read(&mut adm, " -i Backend_health")
            .iter()
            .filter(|(_, l)| l.starts_with("Backend_health - be Still healthy "))
            .count()
            >= 2
    }));
    assert!(s.wait_for_log("Backend_health - be Went healthy ", Duration::from_secs(5)));
    let err = s.stderr_text();
    assert!(
        !err.contains("Still healthy") && !err.contains("Still sick"),
        "only transitions on stderr:\n{err}"
    );
}

// Goal: the operator's grace setup of Varnish's docs works with real probes: while the probe
// says the backend is sick, an expired object is delivered from grace without any fetch (the
// background fetch fails at once, the stale object stays); while it is healthy, VCL's
// `set req.grace = 0s` makes the same expired object a miss that refetches.
// Method: an origin whose `/hc` answers 200 or 500 at the test's command, objects with a 1 s
// TTL and 1 h grace; the probe turns the backend sick (checked on backend.list), the TTL runs
// out, requests are served stale; the probe turns it healthy, the next request refetches.
fn grace_serves_while_the_probe_says_sick(cores: usize) {
    let probe_ok = Arc::new(AtomicBool::new(true));
    let ok = probe_ok.clone();
    let o = Origin::start(move |r, n| {
        if r.url == "/hc" {
            let code = if ok.load(Ordering::SeqCst) { 200 } else { 500 };
            Reply::new(code).close()
        } else {
            Reply::ok(format!("v{n}")).cc("max-age=1")
        }
    });
    let vcl = format!(
        "vcl 4.1;\nimport std;\n\
         backend be {{ .host = \"127.0.0.1\"; .port = \"{}\";\n\
           .probe = {{ .url = \"/hc\"; .interval = 100ms; .timeout = 1s; .window = 3; .threshold = 2; .initial = 3; }} }}\n\
         sub vcl_recv {{ if (std.healthy(req.backend_hint)) {{ set req.grace = 0s; }} }}\n\
         sub vcl_backend_response {{ set beresp.grace = 1h; }}\n",
        o.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, POKES);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let is = |adm: &mut AdminConn, state: &str| {
        adm.cmd("backend.list be")
            .body
            .lines()
            .skip(1)
            .any(|l| l.contains(state))
    };
    let first = get(s.addr(), "/obj", &[]);
    assert_eq!(first.status, 200);
    let body = first.body_str();
    let fetches = || o.count_url("/obj");
    assert_eq!(fetches(), 1);
    // The probe fails: sick after two bad pokes.
    probe_ok.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || is(&mut adm, "sick")));
    // Past the 1 s TTL: delivered from grace, no fetch reaches the origin.
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..3 {
        let r = get(s.addr(), "/obj", &[]);
        assert_eq!(
            (r.status, r.body_str()),
            (200, body.clone()),
            "stale from grace"
        );
        assert!(r.age().unwrap_or(0) >= 1, "{r:?}");
    }
    assert_eq!(fetches(), 1, "a sick backend is not contacted");
    // Healthy again: req.grace = 0s, the expired object is refetched.
    probe_ok.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || is(
        &mut adm, "healthy"
    )));
    let r = get(s.addr(), "/obj", &[]);
    assert_eq!(r.status, 200);
    assert_ne!(r.body_str(), body, "a fresh copy");
    assert_eq!(fetches(), 2);
}
