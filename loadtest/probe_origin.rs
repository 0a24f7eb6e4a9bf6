//! A probe target for the health load tests (`loadtest/probes.sh`, `loadtest/probe_truth.sh`):
//! answers every request with `200 OK`, `Content-Length: 0`, `Connection: close` and closes the
//! connection, as a health probe (`Connection: close`, Varnish's `vbp_poke`) expects. Std only,
//! so the scripts build it with `rustc -O` without touching Cargo.toml.
//!
//! ```text
//! probe_origin --listen 127.0.0.1:PORT [--threads N] [--log DIR] [--stats-file PATH]
//! ```
//!
//! `--threads N` (default 4) threads block in `accept` on one listener (backlog up to
//! net.core.somaxconn, not std's 128); each connection is read
//! up to the end of its head (`\r\n\r\n`, at most 8 KiB, 2 s), answered, and closed.
//!
//! `--log DIR`: every thread appends one line per answered connection to `DIR/probes-T.log`:
//! `HOST ACCEPT_NS CLOSE_NS`, the request's `Host` header (`-` if none) and the wall-clock times
//! (ns since the Unix epoch) when `accept` returned and just before the connection was closed.
//! Lines are buffered and flushed when 100 ms have passed since the previous flush (checked at
//! each connection), so a reader sees everything but the last ~100 ms. The scripts derive probe
//! lateness from these times (`loadtest/probe_stats.py`).
//!
//! `--stats-file PATH`: the total number of connections answered is written to PATH (atomically,
//! at most every 200 ms, when it changed).
//!
//! `probe_origin --client 127.0.0.1:PORT [--count N]` is the other end instead: N (20,000)
//! probes one after the other from one thread (connect, write the request a probe writes, read
//! until the server closes, close), then prints `key=value` lines with its CPU time per
//! connection (`/proc/thread-self/schedstat`, ns). Pinned to the server's core against this
//! origin, that is the kernel's floor for one probe exchange on loopback (where both ends' TCP
//! receive work mostly runs in the sender's context), against which a poller's CPU per probe
//! is compared.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const MAX_HEAD: usize = 8192;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Listen backlog asked for (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 65535;

extern "C" {
    #[link_name = "listen"]
    fn c_listen(fd: i32, backlog: i32) -> i32;
}

static SERVED: AtomicU64 = AtomicU64::new(0);

fn usage(msg: &str) -> ! {
    eprintln!("probe_origin: {msg}");
    eprintln!(
        "usage: probe_origin --listen 127.0.0.1:PORT [--threads N] [--log DIR] [--stats-file PATH]\n       \
         probe_origin --client 127.0.0.1:PORT [--count N]"
    );
    exit(2);
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The value of the Host header in `head` (case-insensitive name), or "-".
fn host(head: &[u8]) -> String {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"host:") {
            let v = String::from_utf8_lossy(&line[5..]).trim().to_string();
            if !v.is_empty() && !v.contains(char::is_whitespace) {
                return v;
            }
        }
    }
    "-".into()
}

fn serve(l: Arc<TcpListener>, mut log: Option<BufWriter<File>>) {
    let mut last_flush = Instant::now();
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let (mut s, _) = match l.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("probe_origin: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let t_accept = now_ns();
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut got = 0;
        while got < buf.len() {
            match s.read(&mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got += n;
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        if got == 0 {
            continue; // connected and closed without a request: nothing to answer
        }
        let _ = s.write_all(RESPONSE);
        let t_close = now_ns();
        drop(s);
        SERVED.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = log.as_mut() {
            let _ = writeln!(w, "{} {} {}", host(&buf[..got]), t_accept, t_close);
            if last_flush.elapsed() >= FLUSH_EVERY {
                let _ = w.flush();
                last_flush = Instant::now();
            }
        }
    }
}

/// CPU time of this thread so far, ns (the first field of schedstat: time spent on a CPU).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn client(addr: &str, count: u64) {
    let req = b"GET / HTTP/1.1\r\nHost: floor\r\nConnection: close\r\n\r\n";
    let mut buf = [0u8; 1024];
    let (mut ok, mut failed) = (0u64, 0u64);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    for _ in 0..count {
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            failed += 1;
            continue;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.set_nodelay(true);
        if c.write_all(req).is_err() {
            failed += 1;
            continue;
        }
        let mut got = 0;
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => {
                    got = 0;
                    break;
                }
            }
        }
        if got > 0 {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let cpu = thread_cpu_ns() - cpu0;
    let wall = t0.elapsed();
    println!("floor_connections={ok}");
    println!("floor_failures={failed}");
    println!("floor_cpu_us_per_conn={:.2}", cpu as f64 / 1e3 / ok.max(1) as f64);
    println!("floor_wall_us_per_conn={:.2}", wall.as_secs_f64() * 1e6 / ok.max(1) as f64);
}

fn main() {
    let mut listen = None;
    let mut client_addr: Option<String> = None;
    let mut count = 20_000u64;
    let mut threads = 4usize;
    let mut log_dir: Option<String> = None;
    let mut stats_file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(v) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(v),
            "--threads" => {
                threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("bad --threads"))
            }
            "--log" => log_dir = Some(v),
            "--client" => client_addr = Some(v),
            "--count" => count = v.parse().unwrap_or_else(|_| usage("bad --count")),
            "--stats-file" => stats_file = Some(v),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if let Some(addr) = client_addr {
        client(&addr, count);
        return;
    }
    let listen = listen.unwrap_or_else(|| usage("--listen or --client is required"));
    let l = TcpListener::bind(&listen).unwrap_or_else(|e| usage(&format!("bind {listen}: {e}")));
    // std listens with a backlog of 128: thousands of probes starting in the same millisecond
    // (a VCL with 10,000 backends boots) would overflow it and see SYNs dropped. listen(2) on a
    // listening socket only changes its backlog; the kernel caps it at net.core.somaxconn.
    // SAFETY: listen(2) on a socket we own; no memory is passed.
    if unsafe { c_listen(l.as_raw_fd(), BACKLOG) } != 0 {
        eprintln!("probe_origin: listen backlog {BACKLOG}: {}", std::io::Error::last_os_error());
    }
    let l = Arc::new(l);
    let mut handles = Vec::new();
    for t in 0..threads {
        let log = log_dir.as_ref().map(|d| {
            let p = format!("{d}/probes-{t}.log");
            BufWriter::with_capacity(
                1 << 20,
                File::create(&p).unwrap_or_else(|e| usage(&format!("{p}: {e}"))),
            )
        });
        let l = l.clone();
        handles.push(std::thread::spawn(move || serve(l, log)));
    }
    eprintln!("probe_origin: listening on {listen} ({threads} threads)");
    if let Some(path) = stats_file {
        let tmp = format!("{path}.tmp");
        let mut last = u64::MAX;
        loop {
            let n = SERVED.load(Ordering::Relaxed);
            if n != last {
                if std::fs::write(&tmp, format!("{n}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
                last = n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for h in handles {
        let _ = h.join();
    }
}
