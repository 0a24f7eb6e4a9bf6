//! One probe on the wire: connect, send the probe request, read until the backend closes, judge.
//!
//! Why it is written like Varnish's `vbp_poke` (varnish-cache 7.1,
//! `bin/varnishd/cache/cache_backend_probe.c` :273) rather than with the fetch path: a probe
//! measures the backend alone (always a new connection, never pooled, no VCL), and operators read
//! its verdicts and messages in `Backend_health` lines, so the bits set, the error texts and the
//! status parse (`sscanf("HTTP/%*f %u ")`) are Varnish's. One thing is deliberate and must stay:
//! the probe NEVER half-closes its side (`shutdown(SHUT_WR)`). Varnish 2.0 did, and Zope 2.10
//! drops a connection as soon as it sees the half-close, before answering, so every probe
//! failed (seed 000; Varnish #584, fixed by phk in c4cd7bd01, 2009). The request ends with
//! `Connection: close` and the backend closes.
//!
//! One deadline (`.timeout`) bounds connect, send and the whole receive. A timed-out operation
//! on io_uring may have partly happened in the kernel: the socket is then just closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::window::{
    Poke, ERR_RECV, ERR_XMIT, GOOD_IPV4, GOOD_IPV6, GOOD_RECV, GOOD_UNIX, GOOD_XMIT, HAPPY,
};
use crate::backend::conn::{self, via_preamble, ConnectError, Dest, Stream};
use crate::vcl::program::{BackendDef, Endpoint, ProbeRequest, ProbeSpec};

/// Bytes of the response kept for the verdict and the message (Varnish's `resp_buf[128]`; the
/// last byte is overwritten by the C string's NUL, so 127 are looked at). The rest is discarded.
const RESP_BUF: usize = 128;

/// Size of one read. Varnish reads into `resp_buf`, then 8 KiB at a time; the size of a read
/// changes nothing but the number of reads.
const READ_BUF: usize = 2048;

/// The PROXY v2 header a probe sends: command LOCAL, no addresses (`vbp_proxy_local`, :95).
pub const PROXY_V2_LOCAL: [u8; 16] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00,
];

/// Everything one probe stream needs, owned by the poller.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The backend's VCL name (for `Backend_health`).
    pub name: Box<str>,
    /// Where to connect: the backend's address (with its `.port` override) or Unix socket, or
    /// for a `.via` backend the via backend's.
    pub dest: Dest,
    /// The bytes sent after connecting, in order: `.preamble`, the PROXY v2 header (if
    /// `.proxy_header = 2`), the HTTP request. See [`build_request`].
    pub request: Arc<[u8]>,
    /// With `.proxy_header = 1`: where in `request` the PROXY v1 line goes. It names the probe
    /// socket's own address, known only once connected, so it is inserted then.
    pub proxy_v1_at: Option<usize>,
    /// `.expected_response`.
    pub expected: u16,
    pub timeout: Duration,
    pub interval: Duration,
    pub window: u32,
    pub threshold: u32,
    pub initial: u32,
    /// `.expect_close` (Varnish 7.3+ semantics when false).
    pub expect_close: bool,
}

impl Target {
    /// The probe target of backend `def` with probe `spec`: its IPv4 address unless
    /// `prefer_ipv6` (and it has one), with the probe's `.port` if set, or its Unix socket.
    /// A `.via` backend (`via`: the backend it goes through) is probed as it is fetched from:
    /// through the via backend's address, the PROXY v2 header naming this backend's address
    /// and authority first (Varnish probes through the backend's connection pool). `None` for
    /// `none` backends.
    ///
    /// Varnish tries the other address family when the first fails to connect; a probe here
    /// uses one address.
    pub fn for_backend(
        def: &BackendDef,
        via: Option<&BackendDef>,
        spec: &ProbeSpec,
        prefer_ipv6: bool,
    ) -> Option<Target> {
        let tcp = |e: &Endpoint| match e {
            Endpoint::Tcp { ipv4, ipv6 } => {
                if prefer_ipv6 {
                    ipv6.or(*ipv4)
                } else {
                    ipv4.or(*ipv6)
                }
            }
            Endpoint::None | Endpoint::Uds(_) => None,
        };
        let own = match &def.endpoint {
            Endpoint::Uds(p) => Dest::Uds(Arc::from(p.as_path())),
            e => {
                let mut addr = tcp(e)?;
                if let Some(p) = spec.port {
                    addr.set_port(p);
                }
                Dest::Tcp(addr)
            }
        };
        let (dest, preamble) = match (via, &own) {
            (Some(v), Dest::Tcp(addr)) => {
                let vd = match &v.endpoint {
                    Endpoint::Uds(p) => Dest::Uds(Arc::from(p.as_path())),
                    e => Dest::Tcp(tcp(e)?),
                };
                (
                    vd,
                    Some(via_preamble(*addr, def.authority.as_deref()).to_vec()),
                )
            }
            _ => (own, def.preamble.as_deref().map(<[u8]>::to_vec)),
        };
        let preamble = preamble.as_deref();
        let request = build_request(spec, &def.host_header, preamble, def.proxy_header, None);
        let proxy_v1_at = (def.proxy_header == 1).then(|| preamble.map_or(0, <[u8]>::len));
        Some(Target {
            name: def.name.clone(),
            dest,
            request: request.into(),
            proxy_v1_at,
            expected: spec.expected_response,
            timeout: secs(spec.timeout),
            interval: secs(spec.interval),
            window: spec.window,
            threshold: spec.threshold,
            initial: spec.initial,
            expect_close: spec.expect_close,
        })
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(2))
}

/// The HTTP request of a probe (`vbp_build_req`, :581): the `.request` lines, or exactly
/// `GET <url> HTTP/1.1\r\nHost: <host_header>\r\nConnection: close\r\n\r\n`.
pub fn http_request(spec: &ProbeSpec, host_header: &str) -> Vec<u8> {
    match &spec.request {
        ProbeRequest::Raw(raw) => raw.to_vec(),
        ProbeRequest::Url(url) => {
            format!("GET {url} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n")
                .into_bytes()
        }
    }
}

/// The PROXY v1 line a probe sends (`vbp_write_proxy_v1`, :243): the probe socket's own
/// address as both source and destination.
pub fn proxy_v1_line(local: SocketAddr) -> String {
    let proto = if local.is_ipv4() { "TCP4" } else { "TCP6" };
    let (ip, port) = (local.ip(), local.port());
    format!("PROXY {proto} {ip} {ip} {port} {port}\r\n")
}

/// Every byte a probe sends after connecting, in Varnish's order: `.preamble` (written by
/// `VCP_Open`), the PROXY header (v1: needs the probe socket's `local` address, left out when
/// `None`; v2: [`PROXY_V2_LOCAL`]), then the request.
pub fn build_request(
    spec: &ProbeSpec,
    host_header: &str,
    preamble: Option<&[u8]>,
    proxy_header: u8,
    local: Option<SocketAddr>,
) -> Vec<u8> {
    let mut out = preamble.map(<[u8]>::to_vec).unwrap_or_default();
    match (proxy_header, local) {
        (1, Some(l)) => out.extend_from_slice(proxy_v1_line(l).as_bytes()),
        (2, _) => out.extend_from_slice(&PROXY_V2_LOCAL),
        _ => {}
    }
    out.extend_from_slice(&http_request(spec, host_header));
    out
}

/// Probes `t` once, on a new connection, and reports what happened.
pub async fn poke(t: &Target) -> Poke {
    let start = Instant::now();
    let deadline = start + t.timeout;
    let mut p = Poke::default();

    let connected = conn::connect(
        &t.dest,
        deadline.saturating_duration_since(start),
        conn::Purpose::Probe,
    )
    .await;
    let mut stream = match connected {
        Ok(s) => s,
        Err(ConnectError::Failed(e)) => {
            p.message = format!("Open error {}", errno_text(&e));
            return p;
        }
        Err(ConnectError::TimedOut) => {
            p.message = format!("Open error {}", errno_text(&timed_out()));
            return p;
        }
    };
    p.bits |= match &t.dest {
        Dest::Tcp(a) if a.is_ipv4() => GOOD_IPV4,
        Dest::Tcp(_) => GOOD_IPV6,
        Dest::Uds(_) => GOOD_UNIX,
    };
    let now = Instant::now();
    if remaining_ms(deadline, now) <= 0 {
        p.message = format!(
            "Open timeout {:.3}s exceeded by {:.3}s",
            t.timeout.as_secs_f64(),
            past(now, deadline)
        );
        return p;
    }

    if let Err(e) = send(&mut stream, t, deadline).await {
        p.bits |= ERR_XMIT;
        p.message = format!("Write error {}", errno_text(&e));
        return p;
    }
    p.bits |= GOOD_XMIT;

    let mut kept = [0u8; RESP_BUF];
    let mut rlen = 0usize;
    let received = receive(&mut stream, t, deadline, &mut kept, &mut rlen).await;
    drop(stream);
    if let Err(message) = received {
        p.bits |= ERR_RECV;
        p.message = message;
        return p;
    }
    if rlen == 0 {
        p.message = "Empty response".into();
        return p;
    }
    p.last = start.elapsed().as_secs_f64();
    p.bits |= GOOD_RECV;
    let line = first_line(&kept[..rlen.min(RESP_BUF)]);
    p.message = String::from_utf8_lossy(line).into_owned();
    if scan_status(line) == Some(u32::from(t.expected)) {
        p.bits |= HAPPY;
    }
    p
}

/// Writes the probe's bytes (inserting the PROXY v1 line if needed) before `deadline`. The
/// write side is never shut down (see the module comment).
async fn send(stream: &mut Stream, t: &Target, deadline: Instant) -> io::Result<()> {
    let limit = monoio::time::Instant::from_std(deadline);
    let res = match t.proxy_v1_at {
        None => monoio::time::timeout_at(limit, stream.write_all(Shared(t.request.clone())))
            .await
            .map(|(r, _)| r),
        Some(at) => {
            // Over a Unix socket there is no address to name (Varnish: `PROXY UNKNOWN`).
            let line = match stream {
                Stream::Tcp(s) => proxy_v1_line(s.local_addr()?),
                Stream::Unix(_) => "PROXY UNKNOWN\r\n".to_string(),
            };
            let at = at.min(t.request.len());
            let mut bytes = Vec::with_capacity(t.request.len() + 108);
            bytes.extend_from_slice(&t.request[..at]);
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(&t.request[at..]);
            monoio::time::timeout_at(limit, stream.write_all(bytes))
                .await
                .map(|(r, _)| r)
        }
    };
    match res {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(timed_out()),
    }
}

/// Reads until EOF (or, with `expect_close = false`, until the deadline), keeping the first
/// [`RESP_BUF`] bytes. `Err` is the message of a receive error (Varnish's loop at :345).
async fn receive(
    stream: &mut Stream,
    t: &Target,
    deadline: Instant,
    kept: &mut [u8; RESP_BUF],
    rlen: &mut usize,
) -> Result<(), String> {
    // A fresh buffer per read would do too; one is reused, and lost only with a timed-out read
    // (io_uring keeps it until the cancelled operation completes), after which nothing is read.
    let mut buf = Vec::with_capacity(READ_BUF);
    loop {
        let now = Instant::now();
        let tmo = remaining_ms(deadline, now);
        if tmo <= 0 {
            return Err(format!(
                "Poll timeout {:.3}s exceeded by {:.3}s",
                t.timeout.as_secs_f64(),
                past(now, deadline)
            ));
        }
        // poll(2) with the rounded milliseconds, as Varnish waits.
        let limit = monoio::time::Instant::from_std(now + Duration::from_millis(tmo as u64));
        match monoio::time::timeout_at(limit, stream.read(buf)).await {
            Err(_) if !t.expect_close => return Ok(()),
            Err(_) => return Err(format!("Poll error {}", errno_text(&timed_out()))),
            Ok((Ok(0), _)) => return Ok(()),
            Ok((Ok(n), b)) => {
                if *rlen < RESP_BUF {
                    let take = (RESP_BUF - *rlen).min(n).min(b.len());
                    kept[*rlen..*rlen + take].copy_from_slice(&b[..take]);
                }
                *rlen = rlen.saturating_add(n);
                buf = b;
            }
            Ok((Err(e), _)) => return Err(format!("Read error {}", errno_text(&e))),
        }
    }
}

/// The request bytes shared with the target, written without a copy.
struct Shared(Arc<[u8]>);

// SAFETY: the pointer is into the Arc's heap allocation, which does not move when the Arc (or
// this wrapper) moves, is never mutated (an `Arc<[u8]>` gives no `&mut`), and lives as long as
// this value, which the runtime owns while the write is in flight.
unsafe impl IoBuf for Shared {
    fn read_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.0.len()
    }
}

fn timed_out() -> io::Error {
    io::Error::from_raw_os_error(libc::ETIMEDOUT)
}

/// `"<errno> (<strerror>)"`, as Varnish's `"%d (%s)", errno, VAS_errtxt(errno)`.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let s = io::Error::from_raw_os_error(code).to_string();
            let suffix = format!(" (os error {code})");
            let text = s.strip_suffix(&suffix).unwrap_or(&s);
            format!("{code} ({text})")
        }
        None => format!("0 ({e})"),
    }
}

/// Varnish's `round((t_end - t_now) * 1e3)`: milliseconds left, negative when past.
fn remaining_ms(deadline: Instant, now: Instant) -> i64 {
    let left = if deadline >= now {
        (deadline - now).as_secs_f64()
    } else {
        -(now - deadline).as_secs_f64()
    };
    (left * 1e3).round() as i64
}

/// Seconds `now` is past `deadline` (negative if before).
fn past(now: Instant, deadline: Instant) -> f64 {
    if now >= deadline {
        (now - deadline).as_secs_f64()
    } else {
        -(deadline - now).as_secs_f64()
    }
}

/// The first line of a response as Varnish's C string sees it: the first 127 bytes, cut at the
/// first NUL, CR or LF.
pub fn first_line(resp: &[u8]) -> &[u8] {
    let resp = &resp[..resp.len().min(RESP_BUF - 1)];
    let end = resp
        .iter()
        .position(|&c| c == 0 || c == b'\r' || c == b'\n')
        .unwrap_or(resp.len());
    &resp[..end]
}

/// `sscanf(line, "HTTP/%*f %u ", &status) == 1`, with glibc's semantics: `HTTP/` literally, a
/// float (leading white space, sign, decimal or hex digits, exponent, `inf`/`nan`), white space,
/// then an unsigned number (sign allowed, strtoul wrap-around, truncated to 32 bits). The
/// reason phrase is not needed (`HTTP/1.1 200`), and `FROBOZ 200` has no status.
pub fn scan_status(line: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let i = skip_space(rest, 0);
    let i = scan_float(rest, i)?;
    let i = skip_space(rest, i);
    scan_unsigned(rest, i)
}

/// C's `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&c| is_space(c)) {
        i += 1;
    }
    i
}

fn digits(s: &[u8], mut i: usize, hex: bool) -> (usize, usize) {
    let start = i;
    while s.get(i).is_some_and(|c| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    }) {
        i += 1;
    }
    (i, i - start)
}

fn starts_with_ci(s: &[u8], i: usize, word: &[u8]) -> bool {
    s.get(i..i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// `%f` (value discarded): the index after the number, `None` on a matching failure.
fn scan_float(s: &[u8], mut i: usize) -> Option<usize> {
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    if starts_with_ci(s, i, b"inf") {
        i += 3;
        // glibc cannot push back a partial "inity": a partial match fails the conversion.
        if s.get(i).is_some_and(|c| c.eq_ignore_ascii_case(&b'i')) {
            return starts_with_ci(s, i, b"inity").then_some(i + 5);
        }
        return Some(i);
    }
    if starts_with_ci(s, i, b"nan") {
        i += 3;
        if s.get(i) == Some(&b'(') {
            let close = s[i..].iter().position(|&c| c == b')')?;
            return Some(i + close + 1);
        }
        return Some(i);
    }
    let hex = s.get(i) == Some(&b'0') && matches!(s.get(i + 1), Some(b'x' | b'X'));
    if hex {
        i += 2;
    }
    let (j, int_digits) = digits(s, i, hex);
    i = j;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        let (j, n) = digits(s, i + 1, hex);
        i = j;
        frac_digits = n;
    }
    if int_digits + frac_digits == 0 {
        // "0x" alone is the number 0 followed by 'x'.
        return if hex { Some(i - 1) } else { None };
    }
    let exp = if hex { b'p' } else { b'e' };
    if s.get(i).is_some_and(|c| c.eq_ignore_ascii_case(&exp)) {
        let mut k = i + 1;
        if matches!(s.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let (k, n) = digits(s, k, false);
        if n == 0 {
            return None;
        }
        i = k;
    }
    Some(i)
}

/// `%u`: optional sign, decimal digits; strtoul's value (saturating on overflow, negated for a
/// `-`), stored in an `unsigned int`.
fn scan_unsigned(s: &[u8], mut i: usize) -> Option<u32> {
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (end, n) = digits(s, i, false);
    if n == 0 {
        return None;
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &c in &s[i..end] {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(c - b'0')))
        {
            Some(x) => v = x,
            None => {
                overflow = true;
                break;
            }
        }
    }
    let v = if overflow {
        u64::MAX
    } else if neg {
        v.wrapping_neg()
    } else {
        v
    };
    Some(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream as StdStream};
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    /// Runs `f` on an io_uring runtime (when this machine has io_uring) and on an epoll one.
    fn on_both<F, Fut>(f: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            rt.block_on(f());
        }
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime");
        rt.block_on(f());
    }

    /// A fake backend on 127.0.0.1: accepts up to `n` connections (for at most 10 s) and hands
    /// each to `serve` on the accepting thread.
    fn backend<F>(n: usize, serve: F) -> (SocketAddr, JoinHandle<()>)
    where
        F: Fn(StdStream) + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        l.set_nonblocking(true).expect("nonblocking");
        let h = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(10);
            let mut done = 0;
            while done < n && Instant::now() < end {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                        serve(s);
                        done += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        (addr, h)
    }

    /// Waits for a fake backend's thread while letting the runtime run: on io_uring the Close of
    /// a dropped socket is only submitted when the runtime next enters the kernel, so a blocking
    /// join could keep the backend waiting for our close.
    async fn join(h: JoinHandle<()>) {
        let end = Instant::now() + Duration::from_secs(10);
        while !h.is_finished() && Instant::now() < end {
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
        h.join().expect("fake backend");
    }

    /// Reads a request head (to the empty line), bounded by the socket's read timeout.
    fn read_head(s: &mut StdStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut b = [0u8; 512];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        got
    }

    /// Reads the request, answers `resp`, closes.
    fn answer(resp: &'static [u8]) -> impl Fn(StdStream) + Send + 'static {
        move |mut s| {
            read_head(&mut s);
            let _ = s.write_all(resp);
        }
    }

    fn spec(url: &str) -> ProbeSpec {
        ProbeSpec {
            name: None,
            request: ProbeRequest::Url(url.into()),
            expected_response: 200,
            timeout: 2.0,
            interval: 5.0,
            window: 8,
            threshold: 3,
            initial: 2,
            expect_close: true,
            port: None,
        }
    }

    fn target(addr: SocketAddr) -> Target {
        Target {
            name: "b".into(),
            dest: crate::backend::Dest::Tcp(addr),
            request: http_request(&spec("/health"), "example.test").into(),
            proxy_v1_at: None,
            expected: 200,
            timeout: Duration::from_secs(2),
            interval: Duration::from_secs(5),
            window: 8,
            threshold: 3,
            initial: 2,
            expect_close: true,
        }
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

    #[test]
    fn sends_exactly_the_varnish_request_and_is_happy() {
        on_both(|| async {
            let (tx, rx) = mpsc::channel();
            let (addr, h) = backend(1, move |mut s| {
                let head = read_head(&mut s);
                let _ = s.write_all(OK);
                let _ = tx.send(head);
            });
            let p = poke(&target(addr)).await;
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | GOOD_RECV | HAPPY, "{p:?}");
            assert_eq!(p.message, "HTTP/1.1 200 OK");
            assert!(p.last > 0.0 && p.last < 2.0);
            let sent = rx.recv_timeout(Duration::from_secs(5)).expect("request");
            assert_eq!(
                sent,
                b"GET /health HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
            );
            join(h).await;
        });
    }

    /// Zope 2.10: after the request, a read that returns 0 (the client half-closed) makes it
    /// drop the connection without answering. Our probe never half-closes, so it stays happy.
    fn zope(mut s: StdStream) {
        read_head(&mut s);
        s.set_read_timeout(Some(Duration::from_millis(300))).ok();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {
                // Half-close seen: abort, no answer.
                let _ = s.shutdown(Shutdown::Both);
            }
            _ => {
                let _ = s.write_all(OK);
            }
        }
    }

    #[test]
    fn zope_half_close_backend_stays_healthy() {
        // The fake really is Zope-like: a client that half-closes gets nothing.
        let (addr, h) = backend(1, zope);
        let mut c = StdStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty(), "{got:?}");
        h.join().expect("fake backend");

        on_both(|| async {
            let (addr, h) = backend(3, zope);
            let t = target(addr);
            let mut w = crate::health::window::Window::new(8, 3, 2);
            for _ in 0..3 {
                let p = poke(&t).await;
                assert!(p.happy(), "{p:?}");
                assert_eq!(p.message, "HTTP/1.1 200 OK");
                assert!(w.poke(&p, 0.0).healthy());
            }
            join(h).await;
        });
    }

    #[test]
    fn status_without_reason_phrase_is_happy() {
        on_both(|| async {
            let (addr, h) = backend(1, answer(b"HTTP/1.1 200\r\n\r\n"));
            let p = poke(&target(addr)).await;
            assert!(p.happy(), "{p:?}");
            assert_eq!(p.message, "HTTP/1.1 200");
            join(h).await;
        });
    }

    #[test]
    fn expected_response_404() {
        on_both(|| async {
            let (addr, h) = backend(2, answer(b"HTTP/1.1 404 Not Found\r\n\r\n"));
            let mut t = target(addr);
            t.expected = 404;
            let p = poke(&t).await;
            assert!(p.happy(), "{p:?}");
            t.expected = 200;
            let p = poke(&t).await;
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | GOOD_RECV, "{p:?}");
            assert_eq!(p.message, "HTTP/1.1 404 Not Found");
            join(h).await;
        });
    }

    #[test]
    fn garbage_is_not_happy() {
        on_both(|| async {
            let (addr, h) = backend(1, answer(b"FROBOZ 200 OK\r\n\r\n"));
            let p = poke(&target(addr)).await;
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | GOOD_RECV, "{p:?}");
            assert_eq!(p.message, "FROBOZ 200 OK");
            join(h).await;
        });
    }

    #[test]
    fn long_response_keeps_the_first_line_and_reads_to_the_end() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let mut v = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 100_000));
            v.extend_from_slice(b"\r\n\r\n");
            v
        });
        on_both(|| async {
            let (addr, h) = backend(1, move |mut s| {
                read_head(&mut s);
                let _ = s.write_all(big);
            });
            let p = poke(&target(addr)).await;
            assert!(p.happy(), "{p:?}");
            assert_eq!(p.message, "HTTP/1.1 200 OK");
            join(h).await;
        });
        // A first line longer than 127 bytes is cut there.
        assert_eq!(first_line(&[b'x'; 128]).len(), 127);
        assert_eq!(first_line(b"HTTP/1.1 200\0 OK"), b"HTTP/1.1 200");
        assert_eq!(first_line(b"HTTP/1.1 200 OK\nX"), b"HTTP/1.1 200 OK");
    }

    #[test]
    fn empty_response() {
        on_both(|| async {
            let (addr, h) = backend(1, |mut s| {
                read_head(&mut s);
            });
            let p = poke(&target(addr)).await;
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT, "{p:?}");
            assert_eq!(p.message, "Empty response");
            assert_eq!(p.last, 0.0);
            join(h).await;
        });
    }

    /// Accepts, reads the request, then holds the connection until the client closes it
    /// (bounded).
    fn hold(answer_first: Option<&'static [u8]>) -> impl Fn(StdStream) + Send + 'static {
        move |mut s| {
            read_head(&mut s);
            if let Some(a) = answer_first {
                let _ = s.write_all(a);
            }
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b);
        }
    }

    #[test]
    fn frozen_backend_times_out() {
        on_both(|| async {
            for expect_close in [true, false] {
                let (addr, h) = backend(1, hold(None));
                let mut t = target(addr);
                t.timeout = Duration::from_millis(300);
                t.expect_close = expect_close;
                let t0 = Instant::now();
                let p = poke(&t).await;
                let took = t0.elapsed();
                assert!(!p.happy(), "{p:?}");
                assert!(
                    took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
                    "{took:?}"
                );
                if expect_close {
                    assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | ERR_RECV, "{p:?}");
                    assert!(
                        p.message == "Poll error 110 (Connection timed out)"
                            || p.message.starts_with("Poll timeout 0.300s exceeded by "),
                        "{p:?}"
                    );
                } else {
                    // 7.3+: nothing by the deadline is an empty response.
                    assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT, "{p:?}");
                    assert_eq!(p.message, "Empty response");
                }
                join(h).await;
            }
        });
    }

    #[test]
    fn answer_without_close_needs_expect_close_false() {
        on_both(|| async {
            let (addr, h) = backend(2, hold(Some(OK)));
            let mut t = target(addr);
            t.timeout = Duration::from_millis(300);
            let p = poke(&t).await;
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | ERR_RECV, "{p:?}");
            assert!(p.message.starts_with("Poll "), "{p:?}");
            t.expect_close = false;
            let t0 = Instant::now();
            let p = poke(&t).await;
            assert!(t0.elapsed() >= Duration::from_millis(290));
            assert_eq!(p.bits, GOOD_IPV4 | GOOD_XMIT | GOOD_RECV | HAPPY, "{p:?}");
            assert_eq!(p.message, "HTTP/1.1 200 OK");
            assert!(p.last >= 0.29, "{p:?}");
            join(h).await;
        });
    }

    #[test]
    fn connection_refused() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        on_both(|| async move {
            let p = poke(&target(addr)).await;
            assert_eq!(p.bits, 0, "{p:?}");
            assert_eq!(p.message, "Open error 111 (Connection refused)");
        });
    }

    #[test]
    fn connect_timeout() {
        use socket2::{Domain, Socket, Type};
        // A listener that never accepts, its accept queue filled: further SYNs are dropped and
        // a connect hangs until our deadline.
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            fillers.push(s);
        }
        std::thread::sleep(Duration::from_millis(50));
        on_both(|| async {
            let mut t = target(addr);
            t.timeout = Duration::from_millis(300);
            let t0 = Instant::now();
            let p = poke(&t).await;
            let took = t0.elapsed();
            assert!(took < Duration::from_millis(1000), "{took:?}");
            assert_eq!(p.bits, 0, "{p:?}");
            assert_eq!(p.message, "Open error 110 (Connection timed out)");
        });
        drop(fillers);
    }

    #[test]
    fn reset_while_reading_is_a_read_error() {
        on_both(|| async {
            let (addr, h) = backend(1, |mut s| {
                read_head(&mut s);
                // Unread data in the receive buffer makes close() send a RST.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            });
            let p = poke(&target(addr)).await;
            // Either the data then the reset, or the reset first.
            if p.bits & ERR_RECV != 0 {
                assert_eq!(p.message, "Read error 104 (Connection reset by peer)");
            } else {
                assert!(p.happy(), "{p:?}");
            }
            join(h).await;
        });
    }

    #[test]
    fn proxy_headers_come_first() {
        on_both(|| async {
            let (tx, rx) = mpsc::channel();
            let (addr, h) = backend(2, move |mut s| {
                let peer = s.peer_addr().unwrap();
                let head = read_head(&mut s);
                let _ = s.write_all(OK);
                let _ = tx.send((peer, head));
            });
            let req = http_request(&spec("/"), "h");
            // v2: fixed LOCAL header, after the preamble.
            let mut t = target(addr);
            let s = spec("/");
            t.request = build_request(&s, "h", Some(b"PRE"), 2, None).into();
            assert!(poke(&t).await.happy());
            let (_, got) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let mut want = b"PRE".to_vec();
            want.extend_from_slice(&PROXY_V2_LOCAL);
            want.extend_from_slice(&req);
            assert_eq!(got, want);
            // v1: the probe socket's own address, twice.
            t.request = build_request(&s, "h", Some(b"PRE"), 1, None).into();
            t.proxy_v1_at = Some(3);
            assert!(poke(&t).await.happy());
            let (peer, got) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let mut want = b"PRE".to_vec();
            want.extend_from_slice(
                format!("PROXY TCP4 127.0.0.1 127.0.0.1 {0} {0}\r\n", peer.port()).as_bytes(),
            );
            want.extend_from_slice(&req);
            assert_eq!(got, want);
            join(h).await;
        });
    }

    #[test]
    fn target_from_backend_and_probe() {
        let mut s = spec("/hc");
        s.port = Some(8081);
        s.expect_close = false;
        s.timeout = 0.5;
        let def = BackendDef {
            name: "app".into(),
            endpoint: Endpoint::Tcp {
                ipv4: Some("192.0.2.1:8080".parse().unwrap()),
                ipv6: Some("[2001:db8::1]:8080".parse().unwrap()),
            },
            host: Some("app.test".into()),
            port: "8080".into(),
            host_header: "app.test".into(),
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
            max_connections: 0,
            proxy_header: 1,
            preamble: None,
            via: None,
            authority: None,
            wait_limit: None,
            wait_timeout: None,
            probe: Some(0),
        };
        let t = Target::for_backend(&def, None, &s, false).unwrap();
        assert_eq!(t.dest, Dest::Tcp("192.0.2.1:8081".parse().unwrap()));
        assert_eq!(
            &*t.request,
            b"GET /hc HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(t.proxy_v1_at, Some(0));
        assert_eq!(
            (t.timeout, t.expect_close),
            (Duration::from_millis(500), false)
        );
        let t = Target::for_backend(&def, None, &s, true).unwrap();
        assert_eq!(t.dest, Dest::Tcp("[2001:db8::1]:8081".parse().unwrap()));
        let raw = ProbeSpec {
            request: ProbeRequest::Raw(Arc::from(&b"OPTIONS * HTTP/1.1\r\n\r\n"[..])),
            ..s
        };
        let def = BackendDef {
            proxy_header: 0,
            ..def
        };
        let t = Target::for_backend(&def, None, &raw, false).unwrap();
        assert_eq!(&*t.request, b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(t.proxy_v1_at, None);
        let none = BackendDef {
            endpoint: Endpoint::None,
            ..def
        };
        assert!(Target::for_backend(&none, None, &raw, false).is_none());
    }

    #[test]
    fn status_parse_is_sscanf() {
        for (line, want) in [
            (&b"HTTP/1.1 200 OK"[..], Some(200)),
            (b"HTTP/1.1 200", Some(200)),
            (b"HTTP/1.0 404 Not Found", Some(404)),
            (b"HTTP/1 200", Some(200)),
            (b"HTTP/2 200", Some(200)),
            (b"HTTP/ 1.1\t200 x", Some(200)),
            (b"HTTP/1.1 200OK", Some(200)),
            (b"HTTP/1.1 +200", Some(200)),
            (b"HTTP/1.1 -200", Some(200u32.wrapping_neg())),
            (b"HTTP/1.1 -4294967096", Some(200)),
            (b"HTTP/1.1 99999999999999999999999", Some(u32::MAX)),
            (b"HTTP/1.1 2000", Some(2000)),
            (b"HTTP/1e1 200", Some(200)),
            (b"HTTP/.5 200", Some(200)),
            (b"HTTP/inf 200", Some(200)),
            (b"HTTP/0x1.8p1 200", Some(200)),
            (b"HTTP/1.1200", None),
            (b"HTTP/1e 200", None),
            (b"HTTP/x 200", None),
            (b"HTTP/1.1", None),
            (b"HTTP/1.1 OK", None),
            (b"http/1.1 200", None),
            (b"FROBOZ 200", None),
            (b" HTTP/1.1 200", None),
            (b"", None),
        ] {
            assert_eq!(
                scan_status(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_texts() {
        assert_eq!(errno_text(&timed_out()), "110 (Connection timed out)");
        assert_eq!(
            errno_text(&io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            "111 (Connection refused)"
        );
        let now = Instant::now();
        assert_eq!(remaining_ms(now + Duration::from_micros(400), now), 0);
        assert_eq!(remaining_ms(now + Duration::from_micros(600), now), 1);
        assert_eq!(remaining_ms(now, now + Duration::from_millis(3)), -3);
    }
}
