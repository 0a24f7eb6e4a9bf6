//! Backend attributes and the fetch path around them, black box: a ringcache child process, a
//! VCL, and fake origins written here. Covered: failover to a director's next candidate when a
//! backend refuses the connection (ringcache extension), connect holddown after a refusal,
//! `.max_connections` across shards without and with a wait queue (`.wait_limit`,
//! `.wait_timeout`), PROXY v1/v2 bytes on fetch connections (never reused), `.via` with the
//! PROXY v2 authority TLV, Unix domain socket backends, `.host_header`, and the precedence of
//! `bereq.*_timeout` > backend attribute > parameter.
//!
//! Origins that must see raw bytes (PROXY headers, Unix sockets) are [`RawOrigin`]s: a thread
//! per connection records what came before the HTTP request and answers every request with a
//! small keep-alive 200.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

shard_tests!(
    failover_past_refusing_members,
    failover_bounded_by_parameter,
    holddown_after_refused_connect,
    max_connections_without_queue,
    max_connections_with_queue,
    queue_times_out,
    proxy_v1_and_v2_on_fetches,
    via_sends_proxy2_with_authority,
    unix_socket_backend,
    host_header_when_bereq_has_none,
    timeout_precedence,
    probes_of_uds_and_via_backends,
    one_address_one_pool_across_backends_and_vcls,
);

// ------------------------------------------------------------------------------------------
// A raw origin: records connection prefixes (PROXY headers), answers keep-alive 200s
// ------------------------------------------------------------------------------------------

#[derive(Default)]
struct RawLog {
    /// Per connection: the bytes before its first HTTP request (PROXY header or nothing).
    prefixes: Vec<Vec<u8>>,
    /// Every request head received, in order.
    heads: Vec<String>,
}

struct RawOrigin {
    log: Arc<Mutex<RawLog>>,
    addr: Option<SocketAddr>,
    _dir: Option<tempdir::Dir>,
    path: Option<std::path::PathBuf>,
}

mod tempdir {
    /// A private directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "ringcache-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RawOrigin {
    fn tcp(body: &'static str) -> RawOrigin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(RawLog::default()));
        let lg = log.clone();
        thread::spawn(move || serve_conns(l.incoming(), &lg, body));
        RawOrigin {
            log,
            addr: Some(addr),
            _dir: None,
            path: None,
        }
    }

    fn unix(body: &'static str) -> RawOrigin {
        let dir = tempdir::Dir::new("uds");
        let path = dir.0.join("origin.sock");
        let l = UnixListener::bind(&path).expect("bind unix");
        let log = Arc::new(Mutex::new(RawLog::default()));
        let lg = log.clone();
        thread::spawn(move || serve_conns(l.incoming(), &lg, body));
        RawOrigin {
            log,
            addr: None,
            _dir: Some(dir),
            path: Some(path),
        }
    }

    fn prefixes(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().prefixes.clone()
    }

    fn heads(&self) -> Vec<String> {
        self.log.lock().unwrap().heads.clone()
    }
}

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Serves each accepted connection (at most 200) on its own thread.
fn serve_conns<S: Read + Write + Send + 'static>(
    conns: impl Iterator<Item = std::io::Result<S>>,
    log: &Arc<Mutex<RawLog>>,
    body: &'static str,
) {
    for s in conns.take(200) {
        let Ok(s) = s else { continue };
        let lg = log.clone();
        thread::spawn(move || serve_raw(s, &lg, body));
    }
}

/// Serves one connection: a PROXY header (v1 line or v2 block) if any, then requests (GET,
/// no body) answered with `body` until EOF (or a `Connection: close` request: a probe). Bounded: 100 requests, 10 s of silence.
fn serve_raw<S: Read + Write>(mut s: S, log: &Mutex<RawLog>, body: &'static str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut prefix_done = false;
    let mut served = 0;
    let started = Instant::now();
    while served < 100 && started.elapsed() < Duration::from_secs(10) {
        if !prefix_done {
            let plen = if buf.starts_with(V2_SIG) && buf.len() >= 16 {
                Some(16 + u16::from_be_bytes([buf[14], buf[15]]) as usize)
            } else if buf.starts_with(b"PROXY ") {
                buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
            } else if buf.len() >= 12 && !buf.starts_with(b"PROXY") && !buf.starts_with(V2_SIG) {
                Some(0)
            } else {
                None
            };
            if let Some(n) = plen.filter(|n| buf.len() >= *n) {
                log.lock().unwrap().prefixes.push(buf[..n].to_vec());
                buf.drain(..n);
                prefix_done = true;
            }
        }
        if prefix_done {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                let close = head.to_ascii_lowercase().contains("connection: close");
                log.lock().unwrap().heads.push(head);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(resp.as_bytes()).is_err() || close {
                    return;
                }
                served += 1;
                continue;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An origin answering 200 with its name.
fn named(name: &'static str) -> Origin {
    Origin::start(move |_, _| Reply::ok(name))
}

fn pass_vcl(backends: &str, init: &str, hint: &str) -> String {
    format!(
        "vcl 4.1;\nimport directors;\n{backends}\n\
         sub vcl_init {{ {init} }}\n\
         sub vcl_recv {{ set req.backend_hint = {hint}; return (pass); }}\n"
    )
}

fn dead_backend(name: &str) -> String {
    format!(
        "backend {name} {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}",
        dead_port()
    )
}

/// An origin answering "live", and the declarations of backends `dead` (a refusing port) and
/// `live`.
fn dead_and_live() -> (Origin, String) {
    let live = named("live");
    let decl = format!(
        "{}\n{}",
        dead_backend("dead"),
        vcl_backend("live", live.addr())
    );
    (live, decl)
}

fn stat(s: &Server, name: &str) -> u64 {
    admin_stats(s.admin_addr())
        .get(&format!("MAIN.{name}"))
        .copied()
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Failover and holddown
// ------------------------------------------------------------------------------------------

// Goal: when a director's chosen backend refuses the connection, an idempotent request moves
// on to the next healthy candidate instead of failing (Varnish #2765): every request is
// answered, by the live member, and the moves are counted.
// Method: round-robin and fallback over [dead, live]; pass requests; a POST with a body is not
// moved (it fails on the dead member when chosen).
fn failover_past_refusing_members(cores: usize) {
    let (_live, backends) = dead_and_live();
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{backends}\n\
         sub vcl_init {{\n\
           new rr = directors.round_robin(); rr.add_backend(dead); rr.add_backend(live);\n\
           new fb = directors.fallback(); fb.add_backend(dead); fb.add_backend(live);\n\
         }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/fb\") {{ set req.backend_hint = fb.backend(); }}\n\
           else {{ set req.backend_hint = rr.backend(); }}\n\
           return (pass);\n\
         }}\n"
    );
    // No holddown, so every pick of `dead` really connects and is refused.
    let s = Server::with_vcl(&vcl, cores, &["-p", "backend_remote_error_holddown=0"]);
    for i in 0..8 {
        let r = get(s.addr(), &format!("/rr{i}"), &[]);
        assert_eq!(
            (r.status, r.body_str()),
            (200, "live".into()),
            "request {i}"
        );
    }
    let r = get(s.addr(), "/fb", &[]);
    assert_eq!((r.status, r.body_str()), (200, "live".into()));
    let moved = stat(&s, "backend_failover");
    assert!(
        moved >= 4,
        "round-robin picked dead about half the time: {moved}"
    );
    assert!(s.wait_for_log("backend=dead", Duration::from_secs(3)));
    // A POST with a body may not be sent twice: when round-robin picks dead, it fails.
    let mut codes = Vec::new();
    for i in 0..4 {
        let r = request(s.addr(), "POST", &format!("/post{i}"), &[], Some(b"x=1"));
        codes.push(r.status);
    }
    assert!(codes.contains(&503), "{codes:?}");
    assert!(codes.contains(&200), "{codes:?}");
}

// Goal: failover is bounded by `director_failover_max`; 0 is Varnish's behaviour (no move).
fn failover_bounded_by_parameter(cores: usize) {
    let live = named("live");
    let backends = format!(
        "{}\n{}\n{}",
        dead_backend("d1"),
        dead_backend("d2"),
        vcl_backend("live", live.addr())
    );
    let vcl = pass_vcl(
        &backends,
        "new fb = directors.fallback(); fb.add_backend(d1); fb.add_backend(d2); fb.add_backend(live);",
        "fb.backend()",
    );
    let hold0 = ["-p", "backend_remote_error_holddown=0"];
    let s = Server::with_vcl(
        &vcl,
        cores,
        &[&hold0[..], &["-p", "director_failover_max=1"]].concat(),
    );
    assert_eq!(
        get(s.addr(), "/a", &[]).status,
        503,
        "two dead members, one move"
    );
    assert_eq!(stat(&s, "backend_failover"), 1);
    assert!(
        s.wait_for_log("no other candidate", Duration::from_secs(3))
            || s.wait_for_log("backend=d2", Duration::from_secs(3))
    );
    drop(s);
    let s = Server::with_vcl(
        &vcl,
        cores,
        &[&hold0[..], &["-p", "director_failover_max=2"]].concat(),
    );
    assert_eq!(get(s.addr(), "/a", &[]).body_str(), "live");
    assert_eq!(stat(&s, "backend_failover"), 2);
    drop(s);
    let s = Server::with_vcl(
        &vcl,
        cores,
        &[&hold0[..], &["-p", "director_failover_max=0"]].concat(),
    );
    assert_eq!(get(s.addr(), "/a", &[]).status, 503);
    assert_eq!(stat(&s, "backend_failover"), 0);
}

// Goal: after a refused connect, connects to that backend are held down for
// `backend_remote_error_holddown`: fetches fail at once without a connect (counted), and a
// director fails over to its next member during the holddown.
// Method: a plain dead backend with a 30 s holddown: the first fetch is refused, the next
// ones are held down (no connect: `backend_fail` stays 1); with holddown 0 every fetch
// connects again.
fn holddown_after_refused_connect(cores: usize) {
    let (_live, backends) = dead_and_live();
    let vcl = format!(
        "vcl 4.1;\nimport directors;\n{backends}\n\
         sub vcl_init {{ new fb = directors.fallback(); fb.add_backend(dead); fb.add_backend(live); }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/plain\") {{ set req.backend_hint = dead; }}\n\
           else {{ set req.backend_hint = fb.backend(); }}\n\
           return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &["-p", "backend_remote_error_holddown=30"]);
    assert_eq!(get(s.addr(), "/plain1", &[]).status, 503);
    let fails = stat(&s, "backend_fail");
    assert_eq!(fails, 1, "one refused connect");
    for i in 0..4 {
        assert_eq!(get(s.addr(), &format!("/plain{}", i + 2), &[]).status, 503);
    }
    assert_eq!(
        stat(&s, "backend_fail"),
        1,
        "no connect tried while held down"
    );
    assert_eq!(stat(&s, "backend_helddown"), 4);
    assert!(s.wait_for_log("held down", Duration::from_secs(3)));
    // Through the director: the held-down member is passed over at once.
    for i in 0..3 {
        assert_eq!(get(s.addr(), &format!("/fb{i}"), &[]).body_str(), "live");
    }
    assert_eq!(stat(&s, "backend_fail"), 1);
    assert_eq!(stat(&s, "backend_failover"), 3);
    drop(s);
    // Holddown 0: every fetch tries to connect.
    let s = Server::with_vcl(&vcl, cores, &["-p", "backend_remote_error_holddown=0"]);
    for i in 0..3 {
        assert_eq!(get(s.addr(), &format!("/plain{i}"), &[]).status, 503);
    }
    assert_eq!(stat(&s, "backend_fail"), 3);
    assert_eq!(stat(&s, "backend_helddown"), 0);
}

// ------------------------------------------------------------------------------------------
// max_connections and its queue
// ------------------------------------------------------------------------------------------

/// Sends `n` pass GETs at once (each on its own connection); returns the statuses.
fn concurrent_statuses(s: &Server, n: usize, prefix: &str) -> Vec<u16> {
    let addr = s.addr();
    let mut v = parallel(n, |i| get(addr, &format!("/{prefix}{i}"), &[]).status);
    v.sort();
    v
}

// Goal: `.max_connections` counts connections in use across all shards: with a limit of 2 and
// 6 concurrent slow requests, exactly 2 reach the origin and 4 get 503 at once (busy).
fn max_connections_without_queue(cores: usize) {
    let slow = Origin::start(|_, _| Reply::ok("slow").delay(Duration::from_millis(800)));
    let vcl = format!(
        "vcl 4.1;\nbackend slow {{ .host = \"127.0.0.1\"; .port = \"{}\"; .max_connections = 2; }}\n\
         sub vcl_recv {{ return (pass); }}\n",
        slow.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let codes = concurrent_statuses(&s, 6, "m");
    assert_eq!(codes, vec![200, 200, 503, 503, 503, 503]);
    assert_eq!(slow.request_count(), 2);
    assert!(slow.max_in_flight() <= 2);
    assert_eq!(stat(&s, "backend_busy"), 4);
    assert!(s.wait_for_log("busy", Duration::from_secs(3)));
    // Released: the next ones go through.
    assert_eq!(get(s.addr(), "/after", &[]).status, 200);
}

// Goal: with `.wait_limit` and `.wait_timeout`, fetches over `.max_connections` queue and go
// through one at a time as connections are released (on any shard); over the wait limit they
// are refused at once.
fn max_connections_with_queue(cores: usize) {
    let slow = Origin::start(|_, _| Reply::ok("slow").delay(Duration::from_millis(200)));
    let vcl = format!(
        "vcl 4.1;\nbackend slow {{ .host = \"127.0.0.1\"; .port = \"{}\"; .max_connections = 1;\n\
           .wait_limit = 3; .wait_timeout = 10s; }}\n\
         sub vcl_recv {{ return (pass); }}\n",
        slow.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let codes = concurrent_statuses(&s, 4, "q");
    assert_eq!(codes, vec![200, 200, 200, 200], "one in use, three queued");
    assert_eq!(slow.max_in_flight(), 1, "never two at once at the origin");
    assert_eq!(stat(&s, "backend_wait"), 3);
    assert_eq!(stat(&s, "backend_busy"), 0);
    // Six at once: one in use, three queued, two refused.
    let codes = concurrent_statuses(&s, 6, "r");
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 4, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 2, "{codes:?}");
    assert_eq!(slow.max_in_flight(), 1);
    assert_eq!(stat(&s, "backend_busy"), 2);
}

// Goal: a queued fetch gives up after `.wait_timeout` (503, counted), long before the
// connection in use is released; a backend made sick ends the wait too.
fn queue_times_out(cores: usize) {
    let slow = Origin::start(|_, _| Reply::ok("slow").delay(Duration::from_millis(3000)));
    let vcl = format!(
        "vcl 4.1;\nbackend slow {{ .host = \"127.0.0.1\"; .port = \"{}\"; .max_connections = 1;\n\
           .wait_limit = 5; .wait_timeout = 300ms; }}\n\
         sub vcl_recv {{ return (pass); }}\n",
        slow.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();
    let held = thread::spawn(move || get(addr, "/held", &[]).status);
    assert!(slow.wait_for_requests(1, Duration::from_secs(5)));
    let (r, took) = timed_get(addr, "/waits", &[]);
    assert_eq!(r.status, 503);
    assert!(
        took < Duration::from_millis(2500),
        "gave up at the wait timeout: {took:?}"
    );
    assert_eq!(stat(&s, "backend_wait_fail"), 1);
    assert_eq!(held.join().expect("held"), 200);
    // A long wait ended by the backend going sick.
    drop(s);
    let vcl = vcl.replace("300ms", "20s");
    let s = Server::with_vcl(&vcl, cores, &[]);
    let addr = s.addr();
    let held2 = thread::spawn(move || get(addr, "/held2", &[]).status);
    assert!(slow.wait_for_requests(2, Duration::from_secs(5)));
    let waiter = thread::spawn(move || timed_get(addr, "/waits2", &[]));
    assert!(wait_until(Duration::from_secs(5), || stat(
        &s,
        "backend_wait"
    ) == 1));
    let mut adm = AdminConn::open(s.admin_addr(), None);
    assert_eq!(adm.cmd("backend.set_health slow sick").status, 200);
    let (r, took) = waiter.join().expect("waiter");
    assert_eq!(r.status, 503);
    assert!(
        took < Duration::from_millis(2500),
        "woken by the health change: {took:?}"
    );
    assert_eq!(held2.join().expect("held2"), 200);
}

// ------------------------------------------------------------------------------------------
// What goes on the wire
// ------------------------------------------------------------------------------------------

// Goal: `.proxy_header = 1|2` sends Varnish's PROXY header (client address and the address it
// connected to) first on each fetch connection, and such connections are never reused.
fn proxy_v1_and_v2_on_fetches(cores: usize) {
    let v1 = RawOrigin::tcp("one");
    let v2 = RawOrigin::tcp("two");
    let port = |o: &RawOrigin| o.addr.expect("tcp").port();
    let vcl = format!(
        "vcl 4.1;\n\
         backend p1 {{ .host = \"127.0.0.1\"; .port = \"{}\"; .proxy_header = 1; }}\n\
         backend p2 {{ .host = \"127.0.0.1\"; .port = \"{}\"; .proxy_header = 2; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/two\") {{ set req.backend_hint = p2; }} else {{ set req.backend_hint = p1; }}\n\
           return (pass);\n\
         }}\n",
        port(&v1),
        port(&v2)
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());
    let client_port = c.stream().local_addr().expect("local").port();
    for i in 0..3 {
        assert_eq!(c.get(&format!("/one{i}"), &[]).body_str(), "one");
    }
    let p = v1.prefixes();
    assert_eq!(p.len(), 3, "a new connection per fetch");
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {}\r\n",
        s.addr().port()
    );
    for x in &p {
        assert_eq!(String::from_utf8_lossy(x), want);
    }
    assert_eq!(c.get("/two", &[]).body_str(), "two");
    assert_eq!(c.get("/two2", &[]).body_str(), "two");
    let p = v2.prefixes();
    assert_eq!(p.len(), 2);
    let mut want = V2_SIG.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
    want.extend_from_slice(&client_port.to_be_bytes());
    want.extend_from_slice(&s.addr().port().to_be_bytes());
    assert_eq!(p[0], want);
    assert_eq!(stat(&s, "backend_reuse"), 0);
    assert_eq!(stat(&s, "backend_recycle"), 0);
}

// Goal: a `.via` backend connects to its proxy and opens each connection with PROXY v2 naming
// the real destination (source: the unspecified address) and the authority TLV (default: the
// `.host_header` without port); such connections are pooled and reused.
fn via_sends_proxy2_with_authority(cores: usize) {
    let onloader = RawOrigin::tcp("via");
    let vcl = format!(
        "vcl 4.1;\n\
         backend proxy {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         backend origin {{ .host = \"192.0.2.10\"; .port = \"443\"; .host_header = \"www.example.com:443\"; .via = proxy; }}\n\
         backend other {{ .host = \"192.0.2.11\"; .port = \"8443\"; .authority = \"api.example.net\"; .via = proxy; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/other\") {{ set req.backend_hint = other; }} else {{ set req.backend_hint = origin; }}\n\
           return (pass);\n\
         }}\n",
        onloader.addr.expect("tcp").port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());
    for i in 0..3 {
        assert_eq!(c.get(&format!("/o{i}"), &[]).body_str(), "via");
    }
    let p = onloader.prefixes();
    assert_eq!(p.len(), 1, "one connection, reused: {p:?}");
    let tlv = b"www.example.com";
    let mut want = V2_SIG.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0, (12 + 3 + tlv.len()) as u8]);
    want.extend_from_slice(&[0, 0, 0, 0, 192, 0, 2, 10, 0, 0, 1, 187]);
    want.extend_from_slice(&[0x02, 0, tlv.len() as u8]);
    want.extend_from_slice(tlv);
    assert_eq!(p[0], want);
    assert!(stat(&s, "backend_reuse") >= 2);
    assert_eq!(c.get("/other", &[]).body_str(), "via");
    let p = onloader.prefixes();
    assert_eq!(p.len(), 2, "another destination, another connection");
    assert_eq!(&p[1][16..22], &[0, 0, 0, 0, 192, 0]);
    assert!(p[1].ends_with(b"api.example.net"));
    assert_eq!(onloader.heads().len(), 4);
}

// Goal: `.path` backends are fetched from over a Unix domain socket, with pooled reuse, and
// get `Host: 0.0.0.0` unless the request has one or `.host_header` says otherwise.
fn unix_socket_backend(cores: usize) {
    let o = RawOrigin::unix("over uds");
    let path = o.path.clone().expect("path");
    let vcl = format!(
        "vcl 4.1;\nbackend sock {{ .path = \"{}\"; }}\n\
         sub vcl_recv {{ return (pass); }}\n\
         sub vcl_backend_fetch {{ if (bereq.url ~ \"nohost\") {{ unset bereq.http.host; }} }}\n",
        path.display()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());
    for i in 0..3 {
        let r = c.get(&format!("/u{i}"), &[]);
        assert_eq!((r.status, r.body_str()), (200, "over uds".into()));
    }
    assert_eq!(o.prefixes().len(), 1, "pooled and reused");
    assert_eq!(c.get("/nohost", &[]).status, 200);
    let heads = o.heads();
    assert!(
        heads.last().is_some_and(|h| h.contains("Host: 0.0.0.0")),
        "{heads:?}"
    );
}

// Goal: `.host_header` is the Host of backend requests that carry none; a request's own Host
// is kept.
fn host_header_when_bereq_has_none(cores: usize) {
    let o = Origin::start(|r, _| Reply::ok(r.header("host").unwrap_or("-")));
    let vcl = format!(
        "vcl 4.1;\nbackend b {{ .host = \"127.0.0.1\"; .port = \"{}\"; .host_header = \"origin.example\"; }}\n\
         sub vcl_recv {{ return (pass); }}\n\
         sub vcl_backend_fetch {{ if (bereq.url ~ \"nohost\") {{ unset bereq.http.host; }} }}\n",
        o.addr().port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    assert_eq!(get(s.addr(), "/nohost", &[]).body_str(), "origin.example");
    assert_eq!(
        get(s.addr(), "/keep", &[("Host", "client.example")]).body_str(),
        "client.example"
    );
}

// Goal: Varnish's timeout precedence: `bereq.first_byte_timeout` set in VCL > the backend's
// `.first_byte_timeout` > the `first_byte_timeout` parameter.
fn timeout_precedence(cores: usize) {
    let slow = Origin::start(|_, _| Reply::ok("late").delay(Duration::from_millis(700)));
    let port = slow.addr().port();
    // The backend attribute (0.2 s) wins over the parameter (60 s).
    let vcl = format!(
        "vcl 4.1;\nbackend b {{ .host = \"127.0.0.1\"; .port = \"{port}\"; .first_byte_timeout = 0.2s; }}\n\
         sub vcl_recv {{ return (pass); }}\n\
         sub vcl_backend_fetch {{ if (bereq.url ~ \"patient\") {{ set bereq.first_byte_timeout = 3s; }} }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    assert_eq!(get(s.addr(), "/x", &[]).status, 503);
    assert!(s.wait_for_log("first byte timeout", Duration::from_secs(3)));
    // VCL's bereq value wins over the attribute.
    assert_eq!(get(s.addr(), "/patient", &[]).body_str(), "late");
    drop(s);
    // Without the attribute, the parameter decides.
    let vcl = format!(
        "vcl 4.1;\nbackend b {{ .host = \"127.0.0.1\"; .port = \"{port}\"; }}\n\
         sub vcl_recv {{ return (pass); }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &["-p", "first_byte_timeout=0.2"]);
    assert_eq!(get(s.addr(), "/y", &[]).status, 503);
    drop(s);
    let s = Server::with_vcl(&vcl, cores, &[]);
    assert_eq!(get(s.addr(), "/z", &[]).body_str(), "late");
}

// Goal: a `.path` backend is probed over its Unix socket and a `.via` backend through its via
// backend (PROXY v2 naming the destination first), as they are fetched from; both turn
// healthy from `.initial = 0` and serve.
fn probes_of_uds_and_via_backends(cores: usize) {
    let sock = RawOrigin::unix("uds");
    let onloader = RawOrigin::tcp("via");
    let vcl = format!(
        "vcl 4.1;\n\
         probe hc {{ .url = \"/hc\"; .interval = 0.1s; .timeout = 1s; .window = 3; .threshold = 2; .initial = 0; }}\n\
         backend sock {{ .path = \"{}\"; .probe = hc; }}\n\
         backend proxy {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         backend tls {{ .host = \"192.0.2.30\"; .port = \"443\"; .authority = \"tls.example\"; .via = proxy; .probe = hc; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/tls\") {{ set req.backend_hint = tls; }} else {{ set req.backend_hint = sock; }}\n\
           return (pass);\n\
         }}\n",
        sock.path.clone().expect("path").display(),
        onloader.addr.expect("tcp").port()
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let healthy = |adm: &mut AdminConn, name: &str| {
        let r = adm.cmd(&format!("backend.list {name}"));
        r.body.lines().skip(1).any(|l| l.contains("healthy"))
    };
    assert!(
        wait_until(Duration::from_secs(5), || healthy(&mut adm, "sock")
            && healthy(&mut adm, "tls")),
        "{}",
        adm.cmd("backend.list -p").body
    );
    let probed = wait_until(Duration::from_secs(5), || {
        sock.heads()
            .iter()
            .any(|h| h.starts_with("GET /hc HTTP/1.1"))
    });
    assert!(
        probed,
        "heads {:?}\n{}\n{}",
        sock.heads(),
        adm.cmd("backend.list -p").body,
        s.stderr_text()
    );
    let probe_prefix = onloader
        .prefixes()
        .into_iter()
        .next()
        .expect("a probe connection");
    assert!(probe_prefix.starts_with(V2_SIG), "{probe_prefix:?}");
    assert_eq!(&probe_prefix[20..24], &[192, 0, 2, 30]);
    assert!(probe_prefix.ends_with(b"tls.example"));
    for (path, body) in [("/u", "uds"), ("/tls", "via")] {
        let r = get(s.addr(), path, &[]);
        assert_eq!(
            r.body_str(),
            body,
            "{path}: {}\n{}\n{}",
            r.status,
            adm.cmd("backend.list -p").body,
            s.stderr_text()
        );
    }
}

// Goal: pools are keyed by address: two backends naming one origin, and a new VCL loaded with
// `vcl.inline` + `vcl.use` naming it again, share pooled connections (Varnish b00093).
// Method: requests on one client connection (so on one shard) through backend a, then b, then
// the new VCL's c: the origin sees one connection.
fn one_address_one_pool_across_backends_and_vcls(cores: usize) {
    let o = named("origin");
    let port = o.addr().port();
    let vcl = format!(
        "vcl 4.1;\n\
         backend a {{ .host = \"127.0.0.1\"; .port = \"{port}\"; }}\n\
         backend b {{ .host = \"127.0.0.1\"; .port = \"{port}\"; .host_header = \"b.example\"; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/b\") {{ set req.backend_hint = b; }} else {{ set req.backend_hint = a; }}\n\
           return (pass);\n\
         }}\n"
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let mut c = Client::connect(s.addr());
    for path in ["/a1", "/b1", "/a2", "/b2"] {
        assert_eq!(c.get(path, &[]).body_str(), "origin");
    }
    assert_eq!(o.conn_count(), 1, "one pooled connection for both backends");
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let next = format!(
        "vcl 4.1;\nbackend c {{ .host = \"127.0.0.1\"; .port = \"{port}\"; }}\n\
         sub vcl_recv {{ return (pass); }}\n"
    );
    let r = adm.cmd(&format!("vcl.inline next << EOF\n{next}\nEOF"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(adm.cmd("vcl.use next").status, 200);
    assert_eq!(c.get("/c1", &[]).body_str(), "origin");
    assert_eq!(o.conn_count(), 1, "the new VCL's backend reuses it too");
}
