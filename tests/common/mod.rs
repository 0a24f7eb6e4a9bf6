//! Black-box test harness for ringcache (std only, hermetic, 127.0.0.1 only).
//!
//! * [`Server`]: runs the real `ringcache` binary as a child process, waits for its ready line,
//!   parses the listen address and drains stderr/stdout into shared buffers in threads.
//! * [`Origin`]: a scriptable fake origin (std::net + threads) that records every request and
//!   answers through a handler closure returning a [`Reply`].
//! * [`Client`]: a tiny independent HTTP/1.1 client on `TcpStream` (raw bytes in, parsed
//!   [`Response`] out, pipelining, close detection), sharing no code with ringcache.
//!
//! Every loop is bounded in time and count; every thread ends when its owner is dropped.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for one client read (a whole response).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on how long an origin connection may stay idle before the origin drops it.
const ORIGIN_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound on a `Reply::hang()`.
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound on connections one origin accepts.
const ORIGIN_MAX_CONNS: usize = 20_000;
/// Upper bound on requests one origin serves.
const ORIGIN_MAX_REQUESTS: usize = 200_000;
/// Upper bound on a request/response head.
const MAX_HEAD: usize = 1 << 20;
/// Upper bound on the captured stderr/stdout text of one server.
const MAX_LOG: usize = 16 << 20;

/// Generates `mod NAME { #[test] fn cores_1(); #[test] fn cores_2(); }` for each scenario
/// function `fn NAME(cores: usize)`, so every scenario runs with one shard and with two (the
/// cross-shard path).
#[macro_export]
macro_rules! shard_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn cores_1() {
                    super::$name(1)
                }
                #[test]
                fn cores_2() {
                    super::$name(2)
                }
            }
        )*
    };
}

// ------------------------------------------------------------------------------------------
// Small utilities
// ------------------------------------------------------------------------------------------

/// Polls `cond` every 10 ms until it is true or `timeout` passed; returns the last value.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` and returns its value with the elapsed time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// Runs `f(i)` for `i in 0..n` on `n` threads released together by a barrier; returns the
/// results in index order. Panics in a worker propagate.
pub fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    assert!(n <= 512, "parallel(): too many threads");
    let barrier = Barrier::new(n);
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                let f = &f;
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// A 127.0.0.1 port that (very probably) refuses connections: bound then released.
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// Deterministic, position-dependent bytes (so truncation/reordering is detectable).
pub fn pattern_body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let v = (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) % 62;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[v as usize]
        })
        .collect()
}

/// An HTTP-date (IMF-fixdate) for seconds since the epoch.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant), valid for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(mo - 1) as usize],
        y,
        h,
        m,
        s
    )
}

/// The product token expected in `Via` ("ringcache"; overridable through the environment
/// variable RINGCACHE_TEST_VIA only to validate these tests against another implementation).
pub fn via_token() -> String {
    std::env::var("RINGCACHE_TEST_VIA").unwrap_or_else(|_| "ringcache".to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_lookup<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_lookup_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Splits a head (without the final CRLFCRLF) into its first line and header fields.
fn parse_head(head: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without colon: {line:?}"))?;
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok((first, headers))
}

/// Decodes a chunked body at the start of `data`. `Ok(None)`: incomplete. `Ok(Some((body,
/// consumed)))`: complete, including the trailer section.
pub fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut pos = 0;
    let mut body = Vec::new();
    for _ in 0..1_000_000 {
        let Some(eol) = find(&data[pos..], b"\r\n") else {
            if data.len() - pos > 1024 {
                return Err("chunk size line too long".into());
            }
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + eol]).to_string();
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailer section: lines until an empty line.
            for _ in 0..1000 {
                let Some(eol) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
            return Err("too many trailer lines".into());
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
    Err("too many chunks".into())
}

/// Encodes `body` as one chunk plus the last chunk.
pub fn encode_chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        if !p.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ------------------------------------------------------------------------------------------
// Server (the ringcache child process)
// ------------------------------------------------------------------------------------------

/// Text captured from a child pipe, with an end-of-file flag, and a condvar to wait on.
struct LogBuf {
    state: Mutex<(String, bool)>,
    cv: Condvar,
}

impl LogBuf {
    fn new() -> Arc<LogBuf> {
        Arc::new(LogBuf {
            state: Mutex::new((String::new(), false)),
            cv: Condvar::new(),
        })
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    fn is_eof(&self) -> bool {
        self.state.lock().unwrap().1
    }

    /// Waits until `pred(text, eof)` holds or `timeout` passes.
    fn wait(&self, timeout: Duration, pred: impl Fn(&str, bool) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.state.lock().unwrap();
        loop {
            if pred(&g.0, g.1) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            g = self.cv.wait_timeout(g, step).unwrap().0;
        }
    }
}

fn spawn_drain<R: Read + Send + 'static>(r: R, buf: Arc<LogBuf>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut g = buf.state.lock().unwrap();
                    if g.0.len() < MAX_LOG {
                        g.0.push_str(&String::from_utf8_lossy(&line));
                    }
                    drop(g);
                    buf.cv.notify_all();
                }
            }
        }
        buf.state.lock().unwrap().1 = true;
        buf.cv.notify_all();
    });
}

/// A running ringcache child process. Killed on drop (after printing its stderr if the test
/// is failing). If it died on its own during the test, drop fails the test.
pub struct Server {
    child: Child,
    addrs: Vec<SocketAddr>,
    stderr: Arc<LogBuf>,
    stdout: Arc<LogBuf>,
    /// The VCL file of [`Server::with_vcl`], kept (and removed) with the server.
    vcl_file: Option<VclFile>,
    /// The test saw it exit through [`Server::wait_exit`] (drop does not complain then).
    exit_expected: bool,
}

/// The usual argument vector: `-a 127.0.0.1:0 -b <backend> -p cores=<n> <extra...>`.
pub fn proxy_args(backend: &str, cores: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "-a".into(),
        "127.0.0.1:0".into(),
        "-b".into(),
        backend.into(),
        "-p".into(),
        format!("cores={cores}"),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `-a 127.0.0.1:0 -f <vcl_path> -p cores=<n> <extra...>`.
pub fn vcl_args(vcl_path: &str, cores: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "-a".into(),
        "127.0.0.1:0".into(),
        "-f".into(),
        vcl_path.into(),
        "-p".into(),
        format!("cores={cores}"),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A VCL text written to a unique file under `std::env::temp_dir()`, removed on drop.
pub struct VclFile {
    path: std::path::PathBuf,
}

impl VclFile {
    pub fn new(text: &str) -> VclFile {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ringcache-test-{}-{}-{nanos}.vcl",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("write VCL file {}: {e}", path.display()));
        VclFile { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for VclFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A VCL backend declaration for a 127.0.0.1 address:
/// `backend NAME { .host = "127.0.0.1"; .port = "PORT"; }`.
pub fn vcl_backend(name: &str, addr: SocketAddr) -> String {
    format!(
        "backend {name} {{ .host = \"{}\"; .port = \"{}\"; }}",
        addr.ip(),
        addr.port()
    )
}

fn spawn_child(args: &[&str], env: &[(&str, &str)]) -> (Child, Arc<LogBuf>, Arc<LogBuf>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringcache");
    let stderr = LogBuf::new();
    let stdout = LogBuf::new();
    spawn_drain(child.stderr.take().unwrap(), stderr.clone());
    spawn_drain(child.stdout.take().unwrap(), stdout.clone());
    (child, stderr, stdout)
}

fn parse_listen_addrs(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.split_once("ringcache: listening on "))
        .filter_map(|(_, rest)| rest.trim().parse().ok())
        .collect()
}

impl Server {
    /// Starts ringcache with `args`; panics (with its stderr) if it is not ready in 10 s.
    pub fn start(args: &[&str]) -> Server {
        Self::try_start(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts ringcache in front of `origin` with `cores` shards and extra arguments.
    pub fn for_origin(origin: &Origin, cores: usize, extra: &[&str]) -> Server {
        Self::for_backend(&origin.addr().to_string(), cores, extra)
    }

    /// Starts ringcache in front of `backend` ("host:port") with `cores` shards.
    pub fn for_backend(backend: &str, cores: usize, extra: &[&str]) -> Server {
        let args = proxy_args(backend, cores, extra);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        Self::start(&refs)
    }

    /// Starts ringcache serving with the VCL `vcl_text`:
    /// `-a 127.0.0.1:0 -f <temp file> -p cores=<n> <extra...>`. The file lives (and is removed)
    /// with the returned server.
    /// Like [`Server::with_vcl`], returning the startup failure instead of panicking.
    pub fn try_start_vcl_text(vcl_text: &str, cores: usize) -> Result<Server, String> {
        let file = VclFile::new(vcl_text);
        let args = vcl_args(file.path_str(), cores, &[]);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let mut s = Self::try_start(&refs)?;
        s.vcl_file = Some(file);
        Ok(s)
    }

    pub fn with_vcl(vcl_text: &str, cores: usize, extra: &[&str]) -> Server {
        let file = VclFile::new(vcl_text);
        let args = vcl_args(file.path_str(), cores, extra);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let mut s = Self::start(&refs);
        s.vcl_file = Some(file);
        s
    }

    /// The VCL file this server was started with ([`Server::with_vcl`]).
    pub fn vcl_path(&self) -> Option<&std::path::Path> {
        self.vcl_file.as_ref().map(|f| f.path())
    }

    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        Self::try_start_env(args, &[])
    }

    /// Like [`Server::try_start`], with extra environment variables for the child.
    pub fn try_start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let (mut child, stderr, stdout) = spawn_child(args, env);
        let is_ready = |t: &str| t.lines().any(|l| l.contains("ringcache: ready ("));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut status = None;
        while Instant::now() < deadline {
            if stderr.wait(Duration::from_millis(100), |t, eof| eof || is_ready(t)) {
                break;
            }
            status = child.try_wait().ok().flatten();
            if status.is_some() {
                stderr.wait(Duration::from_secs(1), |_, eof| eof);
                break;
            }
        }
        let text = stderr.text();
        if !is_ready(&text) {
            let status = status.or_else(|| child.try_wait().ok().flatten());
            let _ = child.kill();
            let _ = child.wait();
            stderr.wait(Duration::from_secs(2), |_, eof| eof);
            return Err(format!(
                "ringcache {args:?} did not become ready within {READY_TIMEOUT:?} \
                 (exit status: {status:?}); stderr:\n{}",
                stderr.text()
            ));
        }
        let addrs = parse_listen_addrs(&text);
        if addrs.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "ringcache printed no parsable 'ringcache: listening on <addr>' line; stderr:\n{text}"
            ));
        }
        Ok(Server {
            child,
            addrs,
            stderr,
            stdout,
            vcl_file: None,
            exit_expected: false,
        })
    }

    /// Runs ringcache expecting a startup failure; returns its exit status and stderr. Panics
    /// if it is still running after 10 s (it is killed first).
    pub fn start_expect_fail(args: &[&str]) -> (ExitStatus, String) {
        let (mut child, stderr, _stdout) = spawn_child(args, &[]);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                stderr.wait(Duration::from_secs(2), |_, eof| eof);
                return (status, stderr.text());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                stderr.wait(Duration::from_secs(2), |_, eof| eof);
                panic!(
                    "ringcache {args:?} was expected to fail at startup but is still running \
                     after {READY_TIMEOUT:?}; stderr:\n{}",
                    stderr.text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// Waits until stderr contains `substr`.
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> bool {
        self.stderr.wait(timeout, |t, _| t.contains(substr))
    }

    /// `Some(status)` if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends signal `sig` (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).expect("pid fits in pid_t");
        // SAFETY: kill(2) with a valid signal number on our own child; no memory is involved.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    /// Waits up to `timeout` for the child to exit; the exit is then expected (no complaint
    /// on drop). `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                self.exit_expected = true;
                self.stderr.wait(Duration::from_secs(2), |_, eof| eof);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Panics if the child has exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.exited() {
            panic!(
                "ringcache exited unexpectedly ({st}); stderr:\n{}",
                self.stderr_text()
            );
        }
    }

    /// Resident set size of the child in KiB, from /proc/<pid>/status VmRSS.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let died = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.wait(Duration::from_secs(1), |_, eof| eof);
        if thread::panicking() {
            eprintln!(
                "----- ringcache stderr (exit before kill: {died:?}) -----\n{}\n-----",
                self.stderr.text()
            );
        } else if let (Some(st), false) = (died, self.exit_expected) {
            panic!(
                "ringcache exited during the test ({st}); stderr:\n{}",
                self.stderr.text()
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Origin (fake backend)
// ------------------------------------------------------------------------------------------

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct OriginRequest {
    pub method: String,
    pub url: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Index (0-based, in accept order) of the connection it came on.
    pub conn: usize,
    /// Index (0-based) of this request on its connection.
    pub seq_on_conn: usize,
    /// Global index (0-based) in arrival order; also passed to the handler.
    pub index: usize,
    pub at: Instant,
}

impl OriginRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_lookup(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_lookup_all(&self.headers, name)
    }
}

/// What the origin does instead of (or besides) a normal response.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A normal response built from the [`Reply`] fields.
    Respond,
    /// Write exactly these bytes (then close if `close`).
    Raw(Vec<u8>),
    /// Close the connection without writing anything.
    CloseWithoutAnswer,
    /// Keep the connection open, never answer (until the origin is dropped, at most 60 s).
    Hang,
}

/// The origin's answer to one request (builder style).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sleep before doing anything.
    pub delay: Duration,
    /// Send the body with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `HTTP/1.0` status line; the connection is closed afterwards unless a
    /// `Connection: keep-alive` header was added.
    pub http10: bool,
    /// Add `Connection: close` and close after responding.
    pub close: bool,
    /// No Content-Length, no chunking: body delimited by closing the connection.
    pub eof_framed: bool,
    /// After responding (keep-alive, no `Connection: close`), close the idle connection after
    /// this delay.
    pub close_after: Option<Duration>,
    /// Further body pieces, each sent after its pause (streamed response).
    pub parts: Vec<(Duration, Vec<u8>)>,
    pub action: Action,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            chunked: false,
            http10: false,
            close: false,
            eof_framed: false,
            close_after: None,
            parts: Vec::new(),
            action: Action::Respond,
        }
    }
    /// 200 with this body.
    pub fn ok(body: impl AsRef<[u8]>) -> Reply {
        Reply::new(200).body(body)
    }
    /// Raw bytes, then close.
    pub fn raw(bytes: impl AsRef<[u8]>) -> Reply {
        let mut r = Reply::new(200);
        r.action = Action::Raw(bytes.as_ref().to_vec());
        r.close = true;
        r
    }
    pub fn close_without_answer() -> Reply {
        let mut r = Reply::new(0);
        r.action = Action::CloseWithoutAnswer;
        r
    }
    pub fn hang() -> Reply {
        let mut r = Reply::new(0);
        r.action = Action::Hang;
        r
    }
    pub fn status(mut self, s: u16) -> Reply {
        self.status = s;
        self.reason = reason_phrase(s).to_string();
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    /// Adds `Cache-Control: <v>`.
    pub fn cc(self, v: &str) -> Reply {
        self.header("Cache-Control", v)
    }
    pub fn body(mut self, b: impl AsRef<[u8]>) -> Reply {
        self.body = b.as_ref().to_vec();
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
    pub fn delay_ms(self, ms: u64) -> Reply {
        self.delay(Duration::from_millis(ms))
    }
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }
    pub fn http10(mut self) -> Reply {
        self.http10 = true;
        self
    }
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }
    pub fn eof_framed(mut self) -> Reply {
        self.eof_framed = true;
        self
    }
    pub fn close_after(mut self, d: Duration) -> Reply {
        self.close_after = Some(d);
        self
    }
    pub fn then(mut self, pause: Duration, more: impl AsRef<[u8]>) -> Reply {
        self.parts.push((pause, more.as_ref().to_vec()));
        self
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

type Handler = dyn Fn(&OriginRequest, usize) -> Reply + Send + Sync;

#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub opened_at: Instant,
    pub closed_at: Option<Instant>,
    /// The peer (ringcache) closed it (we read EOF with nothing pending).
    pub closed_by_peer: bool,
    pub requests: usize,
}

struct OriginShared {
    handler: Box<Handler>,
    stop: AtomicBool,
    requests: Mutex<Vec<OriginRequest>>,
    conns: Mutex<Vec<ConnInfo>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    live_threads: AtomicUsize,
}

/// A fake origin on 127.0.0.1:0. Dropping it stops it (the port then refuses connections).
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<OriginShared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn start<F>(handler: F) -> Origin
    where
        F: Fn(&OriginRequest, usize) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("origin bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(OriginShared {
            handler: Box::new(handler),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            live_threads: AtomicUsize::new(0),
        });
        let sh = shared.clone();
        let accept_thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let idx = {
                    let mut c = sh.conns.lock().unwrap();
                    if c.len() >= ORIGIN_MAX_CONNS {
                        continue;
                    }
                    c.push(ConnInfo {
                        opened_at: Instant::now(),
                        closed_at: None,
                        closed_by_peer: false,
                        requests: 0,
                    });
                    c.len() - 1
                };
                let sh2 = sh.clone();
                sh.live_threads.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let by_peer = serve_conn(&sh2, stream, idx);
                    if let Some(ci) = sh2.conns.lock().unwrap().get_mut(idx) {
                        ci.closed_at = Some(Instant::now());
                        ci.closed_by_peer = by_peer;
                    }
                    sh2.live_threads.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // listener dropped here: the port refuses from now on.
        });
        Origin {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// An origin answering every request with `200` and `body`, plus headers.
    pub fn fixed(body: &str, headers: &[(&str, &str)]) -> Origin {
        let body = body.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Origin::start(move |_, _| {
            let mut r = Reply::ok(&body);
            r.headers = headers.clone();
            r
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<OriginRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Requests whose URL equals `url`.
    pub fn count_url(&self, url: &str) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.url == url)
            .count()
    }

    pub fn conn_count(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    pub fn conns(&self) -> Vec<ConnInfo> {
        self.shared.conns.lock().unwrap().clone()
    }

    /// Connections that ringcache closed (EOF seen by the origin).
    pub fn peer_closed_count(&self) -> usize {
        self.conns().iter().filter(|c| c.closed_by_peer).count()
    }

    /// Highest number of requests being handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were received.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.request_count() >= n)
    }

    /// Stops accepting and closes every connection; afterwards the port refuses connections.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            // Wake the blocking accept().
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
        wait_until(Duration::from_secs(3), || {
            self.shared.live_threads.load(Ordering::SeqCst) == 0
        });
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sleeps `d` in small steps; returns false if the origin is stopping.
fn nap(sh: &OriginShared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

enum Parsed {
    Incomplete,
    Bad(String),
    Done(Box<OriginRequest>, usize),
}

fn parse_origin_request(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Parsed::Bad("request head too large".into());
        }
        return Parsed::Incomplete;
    };
    let (first, headers) = match parse_head(&buf[..end]) {
        Ok(x) => x,
        Err(e) => return Parsed::Bad(e),
    };
    let parts: Vec<&str> = first.split(' ').collect();
    if parts.len() != 3 {
        return Parsed::Bad(format!("bad request line {first:?}"));
    }
    let body_start = end + 4;
    let te = header_lookup(&headers, "Transfer-Encoding").map(|s| s.to_ascii_lowercase());
    let (body, consumed, chunked) = if te.as_deref().is_some_and(|t| t.contains("chunked")) {
        match decode_chunked(&buf[body_start..]) {
            Err(e) => return Parsed::Bad(e),
            Ok(None) => return Parsed::Incomplete,
            Ok(Some((b, n))) => (b, body_start + n, true),
        }
    } else if let Some(cl) = header_lookup(&headers, "Content-Length") {
        let Ok(n) = cl.trim().parse::<usize>() else {
            return Parsed::Bad(format!("bad content-length {cl:?}"));
        };
        if buf.len() < body_start + n {
            return Parsed::Incomplete;
        }
        (
            buf[body_start..body_start + n].to_vec(),
            body_start + n,
            false,
        )
    } else {
        (Vec::new(), body_start, false)
    };
    Parsed::Done(
        Box::new(OriginRequest {
            method: parts[0].to_string(),
            url: parts[1].to_string(),
            version: parts[2].to_string(),
            headers,
            body,
            chunked,
            conn: 0,
            seq_on_conn: 0,
            index: 0,
            at: Instant::now(),
        }),
        consumed,
    )
}

/// Serves one origin connection; returns true if the peer closed it.
fn serve_conn(sh: &OriginShared, mut s: TcpStream, conn_idx: usize) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut seq = 0usize;
    let mut last_activity = Instant::now();
    let mut tmp = [0u8; 16384];
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return false;
        }
        // Parse as many complete requests as are buffered.
        match parse_origin_request(&buf) {
            Parsed::Bad(e) => {
                let msg = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    e.len(),
                    e
                );
                let _ = s.write_all(msg.as_bytes());
                return false;
            }
            Parsed::Done(mut req, consumed) => {
                buf.drain(..consumed);
                req.conn = conn_idx;
                req.seq_on_conn = seq;
                seq += 1;
                let index = {
                    let mut all = sh.requests.lock().unwrap();
                    if all.len() >= ORIGIN_MAX_REQUESTS {
                        return false;
                    }
                    req.index = all.len();
                    all.push((*req).clone());
                    req.index
                };
                if let Some(ci) = sh.conns.lock().unwrap().get_mut(conn_idx) {
                    ci.requests += 1;
                }
                let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let reply = (sh.handler)(&req, index);
                let mut flight = Flight(Some(&sh.in_flight));
                let keep = respond(sh, &mut s, &req, &reply, &mut flight);
                drop(flight);
                if !keep {
                    let _ = s.shutdown(Shutdown::Both);
                    return false;
                }
                if let Some(d) = reply.close_after {
                    nap(sh, d);
                    let _ = s.shutdown(Shutdown::Both);
                    return false;
                }
                last_activity = Instant::now();
                continue;
            }
            Parsed::Incomplete => {}
        }
        match s.read(&mut tmp) {
            Ok(0) => return true,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                last_activity = Instant::now();
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                if last_activity.elapsed() > ORIGIN_IDLE_LIMIT {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
}

/// A request in flight at the origin: it ends just before the reply's last bytes are written
/// (once they are, the proxy may rightly send the next request, possibly before this thread
/// runs again), or when dropped.
struct Flight<'a>(Option<&'a AtomicUsize>);

impl Flight<'_> {
    fn end(&mut self) {
        if let Some(c) = self.0.take() {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// Writes the reply; returns whether the connection may be kept open.
fn respond(
    sh: &OriginShared,
    s: &mut TcpStream,
    req: &OriginRequest,
    r: &Reply,
    flight: &mut Flight<'_>,
) -> bool {
    if !r.delay.is_zero() && !nap(sh, r.delay) {
        return false;
    }
    match &r.action {
        Action::CloseWithoutAnswer => return false,
        Action::Hang => {
            nap(sh, HANG_LIMIT);
            return false;
        }
        Action::Raw(bytes) => {
            flight.end();
            if s.write_all(bytes).is_err() {
                return false;
            }
            return !r.close;
        }
        Action::Respond => {}
    }
    let head_req = req.method.eq_ignore_ascii_case("HEAD");
    let total: usize = r.body.len() + r.parts.iter().map(|(_, p)| p.len()).sum::<usize>();
    let mut head = format!(
        "HTTP/1.{} {} {}\r\n",
        if r.http10 { 0 } else { 1 },
        r.status,
        r.reason
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let has = |n: &str| header_lookup(&r.headers, n).is_some();
    let no_body_status = r.status == 204 || r.status == 304 || (100..200).contains(&r.status);
    let chunked = r.chunked && !r.http10 && !r.eof_framed;
    if chunked {
        if !has("Transfer-Encoding") {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
    } else if !r.eof_framed && !has("Content-Length") && !no_body_status {
        head.push_str(&format!("Content-Length: {total}\r\n"));
    }
    if (r.close || r.eof_framed) && !has("Connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let send_body = !head_req && !no_body_status;
    let mut first = head.into_bytes();
    if send_body {
        if chunked {
            first.extend_from_slice(&chunk_bytes(&r.body));
        } else {
            first.extend_from_slice(&r.body);
        }
    }
    if !(send_body && (chunked || !r.parts.is_empty())) {
        flight.end();
    }
    if s.write_all(&first).is_err() {
        return false;
    }
    if send_body {
        for (i, (pause, part)) in r.parts.iter().enumerate() {
            let _ = s.flush();
            if !nap(sh, *pause) {
                return false;
            }
            let bytes = if chunked {
                chunk_bytes(part)
            } else {
                part.clone()
            };
            if !chunked && i + 1 == r.parts.len() {
                flight.end();
            }
            if s.write_all(&bytes).is_err() {
                return false;
            }
        }
        flight.end();
        if chunked && s.write_all(b"0\r\n\r\n").is_err() {
            return false;
        }
    }
    let keepalive_hdr = header_lookup(&r.headers, "Connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("keep-alive"));
    let client_close = header_lookup(&req.headers, "Connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
        || (req.version == "HTTP/1.0"
            && !header_lookup(&req.headers, "Connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("keep-alive")));
    !(r.close || r.eof_framed || (r.http10 && !keepalive_hdr) || client_close)
}

fn chunk_bytes(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

// ------------------------------------------------------------------------------------------
// Client
// ------------------------------------------------------------------------------------------

/// One parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Body arrived chunked.
    pub chunked: bool,
    /// Body was delimited by the connection closing.
    pub eof_delimited: bool,
    /// When reading started (`read_response` call).
    pub started_at: Instant,
    /// When the complete head had arrived.
    pub head_at: Instant,
    /// When the first byte after the head arrived (if any).
    pub first_body_at: Option<Instant>,
    /// When the response was complete.
    pub done_at: Instant,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_lookup(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_lookup_all(&self.headers, name)
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The numbers in `X-Varnish` (one on a miss/pass, two on a hit).
    pub fn xids(&self) -> Vec<u64> {
        self.header("X-Varnish")
            .map(|v| {
                v.split_whitespace()
                    .map(|n| n.parse().unwrap_or(u64::MAX))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn is_hit(&self) -> bool {
        self.xids().len() == 2
    }
    pub fn age(&self) -> Option<u64> {
        self.header("Age").and_then(|v| v.trim().parse().ok())
    }
    /// One-line summary for assertion messages.
    pub fn summary(&self) -> String {
        let mut b = self.body_str();
        if b.len() > 200 {
            b.truncate(200);
            b.push('…');
        }
        format!(
            "{} {} {:?} body={:?}",
            self.status, self.reason, self.headers, b
        )
    }
}

/// A client connection with a read buffer (supports pipelining).
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    pub timeout: Duration,
    eof: bool,
}

/// Builds a request. Adds `Host: localhost` unless a Host header is given (case-insensitive),
/// and `Content-Length` for a body unless Content-Length/Transfer-Encoding is given.
pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        s.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if let Some(b) = body {
        if !framed {
            s.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
    }
    s.push_str("\r\n");
    let mut v = s.into_bytes();
    if let Some(b) = body {
        v.extend_from_slice(b);
    }
    v
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            timeout: IO_TIMEOUT,
            eof: false,
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes raw bytes (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("client write failed: {e}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends a request and reads its response (HEAD-aware).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.send(&build_request(method, path, headers, body));
        self.read_response_to(method)
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, None)
    }

    /// Reads one response to a non-HEAD request (panics on error/timeout).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to("GET")
    }

    /// Reads one response to a request with `method` (HEAD responses have no body).
    pub fn read_response_to(&mut self, method: &str) -> Response {
        self.try_read_response(method.eq_ignore_ascii_case("HEAD"))
            .unwrap_or_else(|e| panic!("reading response failed: {e}"))
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out; buffered: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            ));
        }
        let step = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(step))?;
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "timed out; buffered: {:?}",
                                String::from_utf8_lossy(&self.buf)
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one response. 1xx responses are returned as such (call again for the final one).
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let started_at = Instant::now();
        let deadline = started_at + self.timeout;
        let unexpected_eof = |what: &str, buf: &[u8]| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed {what}; buffered: {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(300)])
                ),
            )
        };
        let end = loop {
            if let Some(e) = find(&self.buf, b"\r\n\r\n") {
                break e;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::other("response head too large"));
            }
            if self.fill(deadline)? == 0 {
                return Err(unexpected_eof("before a complete response head", &self.buf));
            }
        };
        let head_at = Instant::now();
        let (first, headers) = parse_head(&self.buf[..end]).map_err(io::Error::other)?;
        let mut it = first.splitn(3, ' ');
        let version = it.next().unwrap_or("").to_string();
        let status: u16 = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {first:?}")))?;
        let reason = it.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::other(format!("bad status line {first:?}")));
        }
        self.buf.drain(..end + 4);
        let mut first_body_at = if self.buf.is_empty() {
            None
        } else {
            Some(head_at)
        };
        let te = header_lookup(&headers, "Transfer-Encoding")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let cl = header_lookup(&headers, "Content-Length");
        let no_body = head_request || status < 200 || status == 204 || status == 304;
        let mut chunked = false;
        let mut eof_delimited = false;
        let body = if no_body {
            Vec::new()
        } else if te.contains("chunked") {
            chunked = true;
            loop {
                match decode_chunked(&self.buf).map_err(io::Error::other)? {
                    Some((b, n)) => {
                        self.buf.drain(..n);
                        break b;
                    }
                    None => {
                        if self.fill(deadline)? == 0 {
                            return Err(unexpected_eof("inside a chunked body", &self.buf));
                        }
                        first_body_at.get_or_insert_with(Instant::now);
                    }
                }
            }
        } else if let Some(cl) = cl {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::other(format!("bad Content-Length {cl:?}")))?;
            while self.buf.len() < n {
                if self.fill(deadline)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} of {} body bytes",
                            self.buf.len(),
                            n
                        ),
                    ));
                }
                first_body_at.get_or_insert_with(Instant::now);
            }
            self.buf.drain(..n).collect()
        } else {
            eof_delimited = true;
            while self.fill(deadline)? > 0 {
                first_body_at.get_or_insert_with(Instant::now);
            }
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body,
            chunked,
            eof_delimited,
            started_at,
            head_at,
            first_body_at,
            done_at: Instant::now(),
        })
    }

    /// Waits until the server closes the connection (EOF or reset). `Ok(elapsed)` if closed;
    /// `Err` if bytes arrived instead or `timeout` passed.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected buffered bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        match self.fill(t0 + timeout) {
            Ok(0) => Ok(t0.elapsed()),
            Ok(_) => Err(format!(
                "unexpected bytes instead of close: {:?}",
                String::from_utf8_lossy(&self.buf)
            )),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Err(format!("connection still open after {timeout:?}"))
            }
            // ECONNRESET and friends: closed.
            Err(_) => Ok(t0.elapsed()),
        }
    }

    /// True if the connection is (still) open: nothing, not even EOF, arrives within `wait`.
    pub fn is_open(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() || self.eof {
            return !self.eof;
        }
        matches!(self.fill(Instant::now() + wait), Err(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Bytes received but not consumed by a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(addr).get(path, headers)
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    Client::connect(addr).request(method, path, headers, body)
}

/// One GET on a fresh connection, with the time it took.
pub fn timed_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Response, Duration) {
    timed(|| get(addr, path, headers))
}

/// Sends `raw` on a fresh connection, reads one response, and checks the connection is then
/// closed within 3 s. Returns the response.
pub fn send_raw_expect_close(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    // A write error here can be legitimate (server already answered and closed).
    let _ = c.try_send(raw);
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(raw)));
    if let Err(e) = c.wait_closed(Duration::from_secs(3)) {
        panic!(
            "connection not closed after {} to {:?}: {e}",
            r.status,
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        );
    }
    r
}

// ------------------------------------------------------------------------------------------
// Admin CLI (Varnish's CLI protocol on -T), independent of ringcache's own code
// ------------------------------------------------------------------------------------------

/// The address in a `ringcache: admin on ADDR` line of `text`.
pub fn parse_admin_addr(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.split_once("ringcache: admin on "))
        .find_map(|(_, rest)| rest.trim().parse().ok())
}

impl Server {
    /// The admin address ringcache printed (panics if it printed none).
    pub fn admin_addr(&self) -> SocketAddr {
        let text = self.stderr_text();
        parse_admin_addr(&text)
            .unwrap_or_else(|| panic!("no 'ringcache: admin on ADDR' line; stderr:\n{text}"))
    }
}

/// One CLI response as it came off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliResponse {
    /// The 13-byte status line, e.g. `"200 19      \n"`.
    pub line0: String,
    pub status: u16,
    pub body: String,
}

/// A raw admin CLI connection (std TcpStream, every read bounded by [`IO_TIMEOUT`]).
pub struct AdminConn {
    stream: TcpStream,
}

impl AdminConn {
    pub fn connect(addr: SocketAddr) -> AdminConn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to admin {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        AdminConn { stream }
    }

    /// Connects and reads the first response (banner or challenge); if it is a challenge and
    /// `secret` is given, authenticates. Panics unless the session ends up authenticated.
    pub fn open(addr: SocketAddr, secret: Option<&[u8]>) -> AdminConn {
        let mut c = AdminConn::connect(addr);
        let first = c.read();
        match (first.status, secret) {
            (200, _) => {}
            (107, Some(s)) => {
                let answer = cli_auth_response(first.body.as_bytes(), s);
                let r = c.cmd(&format!("auth {answer}"));
                assert_eq!(r.status, 200, "auth failed: {r:?}");
            }
            _ => panic!("unexpected first response {first:?}"),
        }
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to admin");
    }

    /// Reads one response: status line, body, newline.
    pub fn try_read(&mut self) -> io::Result<CliResponse> {
        let mut line0 = [0u8; 13];
        self.stream.read_exact(&mut line0)?;
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let text = String::from_utf8_lossy(&line0).into_owned();
        if line0[3] != b' ' || line0[12] != b'\n' {
            return Err(bad(format!("bad status line {text:?}")));
        }
        let mut words = text.split_whitespace();
        let status: u16 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad(format!("bad status in {text:?}")))?;
        let len: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad(format!("bad length in {text:?}")))?;
        if len > MAX_LOG {
            return Err(bad(format!("body too long in {text:?}")));
        }
        let mut body = vec![0u8; len + 1];
        self.stream.read_exact(&mut body)?;
        if body.pop() != Some(b'\n') {
            return Err(bad("body not followed by a newline".into()));
        }
        Ok(CliResponse {
            line0: text,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub fn read(&mut self) -> CliResponse {
        self.try_read().expect("read an admin response")
    }

    /// Sends `line` and a newline, reads the answer.
    pub fn cmd(&mut self, line: &str) -> CliResponse {
        self.send(format!("{line}\n").as_bytes());
        self.read()
    }

    /// True if the server closed the connection (EOF or reset) within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        let r = self.stream.read(&mut b);
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

/// Parses `varnishstat -1` style text into (name, value) pairs, in order.
pub fn parse_stat_once(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let value = w.next()?.parse().ok()?;
            Some((name, value))
        })
        .collect()
}

/// Every counter of the server at `admin` (no secret), by name, through `stat -1`.
pub fn admin_stats(admin: SocketAddr) -> std::collections::HashMap<String, u64> {
    let mut c = AdminConn::open(admin, None);
    let r = c.cmd("stat -1");
    assert_eq!(r.status, 200, "stat -1: {r:?}");
    parse_stat_once(&r.body).into_iter().collect()
}

/// Polls the counters until each `(name, value)` in `want` holds (at most 5 s), then returns
/// the last reading; the caller asserts on it (so a miss shows every value).
pub fn wait_stats(
    admin: SocketAddr,
    want: &[(&str, u64)],
) -> std::collections::HashMap<String, u64> {
    let mut last = admin_stats(admin);
    wait_until(Duration::from_secs(5), || {
        last = admin_stats(admin);
        want.iter().all(|(n, v)| last.get(*n) == Some(v))
    });
    last
}

/// The answer to a CLI challenge: lowercase hex SHA-256 of the challenge's first 32 bytes,
/// "\n", the secret file's bytes, the challenge again and "\n" (Varnish's VCLI_AuthResponse).
pub fn cli_auth_response(challenge: &[u8], secret: &[u8]) -> String {
    let ch = &challenge[..challenge.len().min(32)];
    let mut msg = Vec::new();
    msg.extend_from_slice(ch);
    msg.push(b'\n');
    msg.extend_from_slice(secret);
    msg.extend_from_slice(ch);
    msg.push(b'\n');
    sha256(&msg).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (FIPS 180-4), a small independent implementation for the tests.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Output of one run of a program.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` with `stdin` as its standard input; kills it after 20 s.
pub fn run_program(program: &str, args: &[&str], stdin: &[u8]) -> io::Result<RunOutput> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = LogBuf::new();
    let err = LogBuf::new();
    spawn_drain(child.stdout.take().unwrap(), out.clone());
    spawn_drain(child.stderr.take().unwrap(), err.clone());
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(stdin);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{program} {args:?} still running after 20 s"),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    };
    out.wait(Duration::from_secs(2), |_, eof| eof);
    err.wait(Duration::from_secs(2), |_, eof| eof);
    Ok(RunOutput {
        status,
        stdout: out.text(),
        stderr: err.text(),
    })
}

/// Runs the ringcache binary (e.g. `adm ...`, `stat ...`).
pub fn run_ringcache(args: &[&str], stdin: &[u8]) -> RunOutput {
    run_program(env!("CARGO_BIN_EXE_ringcache"), args, stdin).expect("run ringcache")
}

/// A 127.0.0.1 port that refuses connections for as long as this value lives. It is bound but
/// never listening, and bound without SO_REUSEADDR, so the kernel hands it to no other socket
/// (unlike [`dead_port`], whose port a parallel test may be given).
pub struct HeldDeadPort {
    _sock: socket2::Socket,
    pub port: u16,
}

impl HeldDeadPort {
    pub fn new() -> HeldDeadPort {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&addr.into()).expect("bind 127.0.0.1:0");
        let port = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("bound port");
        HeldDeadPort { _sock: sock, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
