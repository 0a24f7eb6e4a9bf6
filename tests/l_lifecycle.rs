//! The process lifecycle, black box: `SIGHUP` reloads the `-f` file (a broken file is refused
//! and the old VCL keeps serving), `SIGTERM`/`SIGINT` drain (requests in flight finish, new
//! connections are refused, idle keep-alive connections close, exit 0, `drain_timeout` bounds
//! it), and systemd's notify protocol over `$NOTIFY_SOCKET` (`READY=1`, `RELOADING=1` +
//! `MONOTONIC_USEC`, `WATCHDOG=1`, `STOPPING=1`).
//!
//! Signals are sent to the real child with `kill(2)`; every wait polls a condition with a
//! deadline.

#[macro_use]
mod common;

use common::*;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

shard_tests!(
    reload_keeps_serving,
    reload_refuses_a_broken_vcl,
    drain_finishes_in_flight_requests,
    drain_timeout_cuts,
    systemd_notifications,
);

/// A VCL over `origin` whose responses carry `X-Conf: <conf>`; `/slow` is passed (so a slow
/// request is a fetch in flight, not a coalesced hit).
fn conf_vcl(origin: SocketAddr, conf: &str) -> String {
    format!(
        "vcl 4.1;\n{}\n\
         sub vcl_recv {{ if (req.url ~ \"^/slow\") {{ return (pass); }} }}\n\
         sub vcl_deliver {{ set resp.http.X-Conf = \"{conf}\"; }}\n",
        vcl_backend("origin", origin)
    )
}

/// An origin answering `ok <url>`, `/slow*` after `slow`.
fn origin_with_slow(slow: Duration, slow_body: Vec<u8>) -> Origin {
    Origin::start(move |r, _| {
        if r.url.starts_with("/slow") {
            Reply::ok(&slow_body).delay(slow)
        } else {
            Reply::ok(format!("ok {}", r.url)).cc("max-age=60")
        }
    })
}

/// Sends requests for the whole test from its own thread, on one keep-alive connection (and a
/// new one whenever the server closes it), counting responses that are not a complete 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// At most `max` requests over at most `limit`.
    fn start(addr: SocketAddr, max: u64, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = thread::spawn(move || {
            let t0 = Instant::now();
            let mut client: Option<Client> = None;
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) && n < max && t0.elapsed() < limit {
                n += 1;
                let c = match client.take() {
                    Some(c) => c,
                    None => match Client::try_connect(addr) {
                        Ok(c) => c,
                        Err(e) => {
                            f.lock().unwrap().push(format!("connect: {e}"));
                            continue;
                        }
                    },
                };
                let mut c = c;
                let path = format!("/load/{}", n % 16);
                if let Err(e) = c.try_send(&build_request("GET", &path, &[], None)) {
                    f.lock().unwrap().push(format!("send: {e}"));
                    continue;
                }
                match c.try_read_response(false) {
                    Ok(r) if r.status == 200 && r.body_str() == format!("ok {path}") => {
                        o.fetch_add(1, Ordering::SeqCst);
                        if r.header("Connection") != Some("close") {
                            client = Some(c);
                        }
                    }
                    Ok(r) => f.lock().unwrap().push(r.summary()),
                    Err(e) => f.lock().unwrap().push(format!("read: {e}")),
                }
            }
        });
        Load {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stops the loop; returns (successful requests, failures).
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("load thread");
        }
        (self.ok(), self.failed.lock().unwrap().clone())
    }
}

/// `X-Conf` of a fresh GET.
fn conf_of(addr: SocketAddr) -> String {
    get(addr, "/conf", &[])
        .header("X-Conf")
        .unwrap_or("")
        .to_string()
}

/// The lines of `log.read -i VCL_Event`.
fn vcl_events(s: &Server) -> Vec<String> {
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let r = adm.cmd("log.read -i VCL_Event");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The `vcl.list` rows as (status, name).
fn vcl_list(s: &Server) -> Vec<(String, String)> {
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let r = adm.cmd("vcl.list");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.first()?.to_string(), w.last()?.to_string()))
        })
        .collect()
}

fn is_reload_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("reload_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    parts.len() == 3
        && parts[0].len() == 8
        && parts[1].len() == 6
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

// Goal: SIGHUP loads the changed -f file and switches to it while a client keeps sending
// requests, none of which fails; a request in flight during the reload finishes on the VCL it
// started with; reload VCLs are named as varnishreload names them and old ones are discarded
// (two available ones are kept).
fn reload_keeps_serving(cores: usize) {
    let origin = origin_with_slow(Duration::from_millis(1500), b"slow body".to_vec());
    let s = Server::with_vcl(&conf_vcl(origin.addr(), "one"), cores, &[]);
    let vcl = s.vcl_path().expect("vcl file").to_path_buf();
    let addr = s.addr();
    assert_eq!(conf_of(addr), "one");
    let load = Load::start(addr, 200_000, Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(10), || load.ok() >= 20));

    // A slow request that starts on "one".
    let slow = thread::spawn(move || get(addr, "/slow", &[]));
    assert!(wait_until(Duration::from_secs(10), || origin
        .count_url("/slow")
        == 1));

    std::fs::write(&vcl, conf_vcl(origin.addr(), "two")).expect("rewrite VCL");
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || conf_of(addr) == "two"),
        "the reloaded VCL never served; stderr:\n{}",
        s.stderr_text()
    );
    let r = slow.join().expect("slow request");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slow body");
    assert_eq!(
        r.header("X-Conf"),
        Some("one"),
        "a request in flight keeps the VCL it started with"
    );

    // More reloads: each switches; old reload VCLs do not pile up.
    for conf in ["three", "four", "five", "six"] {
        std::fs::write(&vcl, conf_vcl(origin.addr(), conf)).expect("rewrite VCL");
        s.signal(libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(10), || conf_of(addr) == conf),
            "reload to {conf}; stderr:\n{}",
            s.stderr_text()
        );
    }
    let before = load.ok();
    assert!(wait_until(Duration::from_secs(10), || load.ok() >= before + 20));
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );

    let list = vcl_list(&s);
    let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
    let active: Vec<&str> = list
        .iter()
        .filter(|(st, _)| st == "active")
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(active.len(), 1, "{list:?}");
    assert!(is_reload_name(active[0]), "{list:?}");
    let reloads: Vec<&&str> = names.iter().filter(|n| is_reload_name(n)).collect();
    assert_eq!(reloads.len(), 3, "active + two kept: {list:?}");
    assert!(names.contains(&"boot"), "boot is never discarded: {list:?}");
    let events = vcl_events(&s);
    assert_eq!(
        events
            .iter()
            .filter(|l| l.starts_with("VCL_Event use reload_"))
            .count(),
        5,
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|l| l.starts_with("VCL_Event discard reload_"))
            .count(),
        2,
        "{events:?}"
    );
}

// Goal: a SIGHUP whose file does not compile changes nothing: the old VCL keeps serving with
// no failed request, the compiler error is on stderr and a `VCL_Event reload_failed` line is
// in the admin log; a later good reload works.
fn reload_refuses_a_broken_vcl(cores: usize) {
    let origin = origin_with_slow(Duration::from_millis(10), Vec::new());
    let s = Server::with_vcl(&conf_vcl(origin.addr(), "one"), cores, &[]);
    let vcl = s.vcl_path().expect("vcl file").to_path_buf();
    let addr = s.addr();
    let load = Load::start(addr, 200_000, Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(10), || load.ok() >= 20));

    std::fs::write(
        &vcl,
        "vcl 4.1;\nbackend b { .host = \"127.0.0.1\"; }\nsub vcl_recv { set req.nosuch = 1; }\n",
    )
    .expect("rewrite VCL");
    s.signal(libc::SIGHUP);
    assert!(
        s.wait_for_log("VCL boot keeps serving", Duration::from_secs(10)),
        "no refusal logged; stderr:\n{}",
        s.stderr_text()
    );
    let err = s.stderr_text();
    assert!(
        err.contains("req.nosuch"),
        "compiler error on stderr:\n{err}"
    );
    // Event lines reach stderr through the log writer, a moment after the direct lines.
    assert!(
        s.wait_for_log("VCL_Event reload_failed reload_", Duration::from_secs(10)),
        "{err}"
    );
    let before = load.ok();
    assert!(wait_until(Duration::from_secs(10), || load.ok() >= before + 20));
    assert_eq!(conf_of(addr), "one");
    let events = vcl_events(&s);
    let failed_line = events
        .iter()
        .find(|l| l.starts_with("VCL_Event reload_failed reload_"))
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(failed_line.contains("req.nosuch"), "{failed_line}");
    assert!(
        !events.iter().any(|l| l.starts_with("VCL_Event use")),
        "{events:?}"
    );
    let list = vcl_list(&s);
    assert_eq!(list, vec![("active".to_string(), "boot".to_string())]);

    // The file fixed: the next SIGHUP switches.
    std::fs::write(&vcl, conf_vcl(origin.addr(), "fixed")).expect("rewrite VCL");
    s.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || conf_of(addr) == "fixed"));
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
}

/// True once connecting to `addr` is refused.
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// Inodes of the TCP sockets listening on 127.0.0.1:`port` (from /proc/net/tcp).
fn listening_inodes(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Socket inodes among the open file descriptors of process `pid`.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let target = std::fs::read_link(e.ok()?.path()).ok()?;
        let t = target.to_str()?;
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

// Goal: SIGTERM stops accepting (new connections are refused), closes an idle keep-alive
// connection at once, lets a slow request in flight finish with its whole body and
// `Connection: close`, then exits 0.
fn drain_finishes_in_flight_requests(cores: usize) {
    let body = pattern_body(200_000, 7);
    let origin = origin_with_slow(Duration::from_millis(2500), body.clone());
    let mut s = Server::with_vcl(
        &conf_vcl(origin.addr(), "one"),
        cores,
        &["-p", "drain_timeout=20"],
    );
    let addr = s.addr();
    // An idle keep-alive connection (it has served a request).
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/a", &[]).status, 200);
    // A slow request in flight, on a keep-alive connection.
    let slow = thread::spawn(move || {
        let mut c = Client::connect(addr);
        let r = c.get("/slow", &[]);
        let closed = c.wait_closed(Duration::from_secs(5));
        (r, closed)
    });
    assert!(wait_until(Duration::from_secs(10), || origin
        .count_url("/slow")
        == 1));
    let listeners = listening_inodes(addr.port());
    assert_eq!(
        listeners.len(),
        cores,
        "one listener per shard: {listeners:?}"
    );
    assert!(listeners.iter().all(|i| socket_inodes(s.pid()).contains(i)));

    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_for_log("SIGTERM: draining", Duration::from_secs(5)),
        "{}",
        s.stderr_text()
    );
    assert!(
        wait_until(Duration::from_secs(2), || refused(addr)),
        "new connections are still accepted during the drain"
    );
    idle.wait_closed(Duration::from_secs(2))
        .expect("the idle keep-alive connection is closed at drain start");
    // Every listening socket is closed while the slow request is still in flight: each
    // shard's accept ended and its listener was dropped.
    assert!(
        wait_until(Duration::from_secs(1), || {
            let open = socket_inodes(s.pid());
            !open.is_empty() && !listeners.iter().any(|i| open.contains(i))
        }),
        "a listening socket is still open during the drain"
    );
    assert!(
        !slow.is_finished(),
        "checked while the slow request is in flight"
    );
    s.assert_alive();

    let (r, closed) = slow.join().expect("slow request");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "body intact");
    assert_eq!(r.header("Connection"), Some("close"));
    closed.expect("closed after the response");

    let st = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", s.stderr_text()));
    assert_eq!(st.code(), Some(0), "{}", s.stderr_text());
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(s.stderr_text().contains("drained; exiting"));
    assert!(refused(addr));
}

// Goal: with a drain_timeout shorter than a request in flight, the process exits after about
// drain_timeout (not after the request), and says how many connections it cut. SIGINT drains
// like SIGTERM.
fn drain_timeout_cuts(cores: usize) {
    let origin = origin_with_slow(Duration::from_secs(8), b"late".to_vec());
    let mut s = Server::with_vcl(
        &conf_vcl(origin.addr(), "one"),
        cores,
        &["-p", "drain_timeout=300ms"],
    );
    let addr = s.addr();
    let slow = thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(&build_request("GET", "/slow", &[], None));
        c.try_read_response(false)
    });
    assert!(wait_until(Duration::from_secs(10), || origin
        .count_url("/slow")
        == 1));
    let t0 = Instant::now();
    s.signal(libc::SIGINT);
    let st = s
        .wait_exit(Duration::from_secs(6))
        .unwrap_or_else(|| panic!("still running 6 s after SIGINT:\n{}", s.stderr_text()));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "exited before drain_timeout: {took:?}"
    );
    assert_eq!(st.code(), Some(0), "{}", s.stderr_text());
    let err = s.stderr_text();
    assert!(err.contains("SIGINT: draining"), "{err}");
    assert!(
        err.contains("drain_timeout reached; exiting with 1 connections cut"),
        "{err}"
    );
    let r = slow.join().expect("client thread");
    assert!(r.is_err(), "the cut request got no response: {r:?}");
}

/// Collects every datagram that arrives on a unix socket bound in a fresh temp dir.
struct NotifySocket {
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringcache-notify-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (messages.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Bounded: ends with the test (stop) and after at most 10 minutes.
            let t0 = Instant::now();
            while !st.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(600) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            path,
            dir,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits for a message, after the first `skip` ones, whose lines include `line`; returns
    /// its index.
    fn wait_for(&self, skip: usize, line: &str, timeout: Duration) -> Option<usize> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .messages()
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, (_, m))| m.lines().any(|l| l == line))
                .map(|(i, _)| i);
            found.is_some()
        });
        found
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

// Goal: under systemd (NOTIFY_SOCKET and WATCHDOG_USEC set), READY=1 comes once ringcache
// serves and its probe had its first poke, WATCHDOG=1 comes while the shards run, SIGHUP is
// framed by RELOADING=1 with MONOTONIC_USEC and READY=1, and SIGTERM sends STOPPING=1.
fn systemd_notifications(cores: usize) {
    // The probe's answer takes a while; when it has been sent is recorded.
    let probe_answered: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let answered = probe_answered.clone();
    let origin = Origin::start(move |r, _| {
        if r.url == "/probe" {
            thread::sleep(Duration::from_millis(300));
            answered.lock().unwrap().get_or_insert_with(Instant::now);
            Reply::ok("up").close()
        } else {
            Reply::ok(format!("ok {}", r.url))
        }
    });
    let vcl_text = |conf: &str| {
        format!(
            "vcl 4.1;\nbackend origin {{ .host = \"127.0.0.1\"; .port = \"{}\";\n\
             .probe = {{ .url = \"/probe\"; .interval = 60s; .timeout = 2s; .window = 3;\n\
             .threshold = 1; .initial = 0; }} }}\n\
             sub vcl_deliver {{ set resp.http.X-Conf = \"{conf}\"; }}\n",
            origin.addr().port()
        )
    };
    let file = VclFile::new(&vcl_text("one"));
    let notify = NotifySocket::bind();
    let socket = notify.path.to_str().expect("utf-8 path").to_string();
    let args = vcl_args(file.path_str(), cores, &["-p", "drain_timeout=5"]);
    let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let mut s = Server::try_start_env(
        &refs,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let ready = notify
        .wait_for(0, "READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1: {:?}", notify.messages()));
    let (ready_at, msg) = notify.messages()[ready].clone();
    let probed_at = *probe_answered.lock().unwrap();
    let probed_at = probed_at.expect("READY=1 before the probe was answered");
    assert!(ready_at > probed_at, "READY=1 before the first probe round");
    assert!(
        msg.contains(&format!("STATUS=serving, {cores} shards, VCL boot")),
        "{msg:?}"
    );
    // Ready means serving.
    let r = get(s.addr(), "/x", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Conf"), Some("one"));

    assert!(
        notify
            .wait_for(0, "WATCHDOG=1", Duration::from_secs(5))
            .is_some(),
        "no WATCHDOG=1: {:?}",
        notify.messages()
    );

    std::fs::write(file.path(), vcl_text("two")).expect("rewrite VCL");
    let skip = notify.messages().len();
    let before = monotonic_usec();
    s.signal(libc::SIGHUP);
    let reloading = notify
        .wait_for(skip, "RELOADING=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RELOADING=1: {:?}", notify.messages()));
    let msg = notify.messages()[reloading].1.clone();
    let usec: u64 = msg
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {msg:?}"));
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC between the signal and now"
    );
    let ready2 = notify
        .wait_for(reloading + 1, "READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1 after the reload: {:?}", notify.messages()));
    assert!(notify.messages()[ready2].1.contains("VCL reload_"));
    assert_eq!(get(s.addr(), "/y", &[]).header("X-Conf"), Some("two"));

    // Still pinging after the reload.
    let skip = notify.messages().len();
    assert!(notify
        .wait_for(skip, "WATCHDOG=1", Duration::from_secs(5))
        .is_some());

    let skip = notify.messages().len();
    s.signal(libc::SIGTERM);
    assert!(
        notify
            .wait_for(skip, "STOPPING=1", Duration::from_secs(5))
            .is_some(),
        "no STOPPING=1: {:?}",
        notify.messages()
    );
    let st = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", s.stderr_text()));
    assert_eq!(st.code(), Some(0));
}

// Goal: started with -b there is no file to reload: SIGHUP says so, keeps serving, and still
// answers systemd's reload protocol with READY=1; without NOTIFY_SOCKET nothing fails.
#[test]
fn sighup_with_b_keeps_serving() {
    let origin = Origin::fixed("hello", &[]);
    let notify = NotifySocket::bind();
    let socket = notify.path.to_str().expect("utf-8 path").to_string();
    let args = proxy_args(&origin.addr().to_string(), 1, &[]);
    let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let s = Server::try_start_env(&refs, &[("NOTIFY_SOCKET", &socket)])
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = notify
        .wait_for(0, "READY=1", Duration::from_secs(10))
        .expect("READY=1");
    s.signal(libc::SIGHUP);
    assert!(s.wait_for_log("there is no VCL file to reload", Duration::from_secs(5)));
    let reloading = notify
        .wait_for(ready + 1, "RELOADING=1", Duration::from_secs(5))
        .expect("RELOADING=1");
    assert!(notify
        .wait_for(reloading + 1, "READY=1", Duration::from_secs(5))
        .is_some());
    assert_eq!(get(s.addr(), "/", &[]).body_str(), "hello");
    // No watchdog asked for: no pings.
    assert!(!notify
        .messages()
        .iter()
        .any(|(_, m)| m.contains("WATCHDOG=1")));

    // Without NOTIFY_SOCKET.
    let plain = Server::for_origin(&origin, 1, &[]);
    plain.signal(libc::SIGHUP);
    assert!(plain.wait_for_log("there is no VCL file to reload", Duration::from_secs(5)));
    assert_eq!(get(plain.addr(), "/", &[]).body_str(), "hello");
}
