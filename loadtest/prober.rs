//! Minimal io_uring prober: the health load test's "physical limit" for the poller.
//!
//! It does what the poller does for every probed backend and nothing else: on one thread and
//! one io_uring, N backends each get a probe exchange (a new TCP connection, the request a
//! probe writes, reads until the backend closes, close) due `--interval-ms` after the previous
//! one completed. No VCL, no health window, no log line, no timeout, no error handling beyond
//! counting: what is left is the kernel's work for the exchanges plus the least user-space
//! work io_uring allows, so the poller's CPU per probe divided by this one's is what the
//! poller's own machinery costs (`loadtest/probes.sh` runs both in one run).
//!
//! ```text
//! cargo run --release --example prober -- --target 127.0.0.1:PORT [--backends 10000]
//!     [--interval-ms 1000] [--warmup 10] [--duration 60] [--mode steps|linked]
//!     [--ring defer|plain] [--tick-us 1000]
//! ```
//!
//! `--tick-us 1000` (default): wake-ups are rounded up to the next millisecond, as the timer
//! wheel of monoio (the poller's runtime) does, so both batch the same; 0 wakes at each due time.
//! `--ring defer` (default): the ring is set up with `SINGLE_ISSUER | DEFER_TASKRUN`, as the
//! poller's: completions are posted when the thread waits for them, not by interrupting it.
//!
//! `--mode steps` (default): `socket(2)` then one operation at a time (`CONNECT`, `SEND`,
//! `RECV`..., `CLOSE`), each submitted when the previous completed, as an async runtime does it.
//! `--mode linked`: each exchange is one linked chain submitted at once, `SOCKET`
//! into a registered file slot → `CONNECT` → `SEND` → `RECV`, then `RECV` until EOF and a
//! `CLOSE` of the slot: no file-table updates, no syscall outside `io_uring_enter`.
//! On this machine `steps` costs less CPU than `linked` (docs/benchmarks.md), so it is the
//! default: the limit is the cheapest way found, not the cleverest.
//!
//! The first round is spread evenly over one interval. After `--warmup` s it measures for
//! `--duration` s and prints `key=value` lines: exchanges completed and failed, the thread's
//! CPU (`getrusage(RUSAGE_THREAD)`: user and system) in % of one core and µs per exchange, and
//! the lateness of exchange starts (start − due time, p50/p99/max, µs): the timer is the
//! `io_uring_enter` timeout, rounded up to the tick. Also the exchanges' durations and the
//! longest `io_uring_enter`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::process::exit;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

/// Bytes read at a time (as the poller).
const READ_BUF: usize = 2048;
/// Registered file slots: exchanges in flight at most (more wait for a free slot).
const SLOTS: u32 = 4096;
/// Ring size.
const ENTRIES: u32 = 8192;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Linked,
    Steps,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Idle,
    Socket,
    Connect,
    Send,
    Recv,
    Close,
}

struct Backend {
    request: Vec<u8>,
    phase: Phase,
    /// Registered slot (linked) or fd (steps) while an exchange is in flight.
    fd: i32,
    ok: bool,
    /// When the exchange in flight started.
    started: Instant,
    buf: Box<[u8; READ_BUF]>,
}

struct Args {
    target: SocketAddr,
    backends: usize,
    interval: Duration,
    warmup: Duration,
    duration: Duration,
    mode: Mode,
    /// `IORING_SETUP_DEFER_TASKRUN` (`--ring defer`, the default) or the kernel's defaults.
    defer: bool,
    tick: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("prober: {msg}");
    eprintln!(
        "usage: prober --target 127.0.0.1:PORT [--backends N] [--interval-ms MS] \
         [--warmup S] [--duration S] [--mode steps|linked] [--ring defer|plain] [--tick-us 1000]"
    );
    exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        backends: 10_000,
        interval: Duration::from_secs(1),
        warmup: Duration::from_secs(10),
        duration: Duration::from_secs(60),
        mode: Mode::Steps,
        defer: true,
        tick: Duration::from_millis(1),
    };
    let mut have_target = false;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(&format!("bad {k}"))) };
        match k.as_str() {
            "--target" => {
                a.target = v.parse().unwrap_or_else(|_| usage("bad --target"));
                have_target = true;
            }
            "--backends" => a.backends = num(&v) as usize,
            "--interval-ms" => a.interval = Duration::from_millis(num(&v)),
            "--warmup" => a.warmup = Duration::from_secs(num(&v)),
            "--duration" => a.duration = Duration::from_secs(num(&v)),
            "--mode" => {
                a.mode = match v.as_str() {
                    "linked" => Mode::Linked,
                    "steps" => Mode::Steps,
                    _ => usage("--mode is linked or steps"),
                }
            }
            "--tick-us" => a.tick = Duration::from_micros(num(&v)),
            "--ring" => {
                a.defer = match v.as_str() {
                    "defer" => true,
                    "plain" => false,
                    _ => usage("--ring is defer or plain"),
                }
            }
            _ => usage(&format!("unknown option {k}")),
        }
    }
    if !have_target || a.backends == 0 || a.interval.is_zero() {
        usage("--target is required; --backends and --interval-ms must be > 0");
    }
    a
}

/// The socket address as the kernel wants it.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
    family: i32,
}

fn raw_addr(a: SocketAddr) -> RawAddr {
    // SAFETY: an all-zero sockaddr_storage is a valid value of that plain C struct.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let (len, family) = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (std::mem::size_of::<libc::sockaddr_in>(), libc::AF_INET)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (std::mem::size_of::<libc::sockaddr_in6>(), libc::AF_INET6)
        }
    };
    RawAddr {
        storage,
        len: len as libc::socklen_t,
        family,
    }
}

/// user and system CPU of this thread, µs.
fn thread_cpu_us() -> (u64, u64) {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// user and system CPU of the whole process (io_uring workers included), µs.
fn process_cpu_us() -> (u64, u64) {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// user_data: backend index << 8 | phase tag.
fn ud(i: usize, p: Phase) -> u64 {
    ((i as u64) << 8) | p as u64
}

struct Prober {
    ring: IoUring,
    addr: RawAddr,
    mode: Mode,
    backends: Vec<Backend>,
    free_slots: Vec<u32>,
    /// Backends due but waiting for a free slot, oldest first.
    waiting: VecDeque<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    interval: Duration,
    /// Timer resolution: wake-ups are rounded up to a multiple of it (zero: exact).
    tick: Duration,
    ok: u64,
    failed: u64,
    lateness_us: Vec<u64>,
    /// Exchange durations (start to close completed), µs.
    exchange_us: Vec<u64>,
    measuring: bool,
    /// Completions taken from the ring in one iteration (kept for its capacity).
    done: Vec<(u64, i32)>,
    iterations: u64,
    enter_max: Duration,
    enter_over: u64,
}

impl Prober {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer and address an entry points to lives in `self` (the backends'
        // boxed buffers and requests, the target address), which outlives the ring's use of
        // it: the prober never drops a backend while an exchange is in flight.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            if let Err(e) = self.ring.submit() {
                eprintln!("prober: submit: {e}");
                exit(1);
            }
        }
    }

    fn start(&mut self, i: usize) {
        self.backends[i].started = Instant::now();
        let fam = self.addr.family;
        let addr_ptr = (&self.addr.storage as *const libc::sockaddr_storage).cast();
        let addr_len = self.addr.len;
        match self.mode {
            Mode::Linked => {
                let Some(slot) = self.free_slots.pop() else {
                    self.waiting.push_back(i);
                    return;
                };
                let b = &mut self.backends[i];
                b.fd = slot as i32;
                b.phase = Phase::Recv;
                b.ok = false;
                let dest = types::DestinationSlot::try_from_slot_target(slot)
                    .unwrap_or_else(|_| usage("slot out of range"));
                let f = types::Fixed(slot);
                let (req_ptr, req_len) = (b.request.as_ptr(), b.request.len() as u32);
                let buf_ptr = b.buf.as_mut_ptr();
                let chain = [
                    opcode::Socket::new(fam, libc::SOCK_STREAM, 0)
                        .file_index(Some(dest))
                        .build()
                        .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
                        .user_data(ud(i, Phase::Socket)),
                    opcode::Connect::new(f, addr_ptr, addr_len)
                        .build()
                        .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
                        .user_data(ud(i, Phase::Connect)),
                    opcode::Send::new(f, req_ptr, req_len)
                        .build()
                        .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
                        .user_data(ud(i, Phase::Send)),
                    opcode::Recv::new(f, buf_ptr, READ_BUF as u32)
                        .build()
                        .user_data(ud(i, Phase::Recv)),
                ];
                for e in chain {
                    self.push(e);
                }
            }
            Mode::Steps => {
                // SAFETY: plain socket(2) call.
                let fd = unsafe {
                    libc::socket(
                        fam,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        0,
                    )
                };
                if fd < 0 {
                    self.failed += u64::from(self.measuring);
                    self.schedule(i);
                    return;
                }
                let b = &mut self.backends[i];
                b.fd = fd;
                b.phase = Phase::Connect;
                b.ok = false;
                let e = opcode::Connect::new(types::Fd(fd), addr_ptr, addr_len)
                    .build()
                    .user_data(ud(i, Phase::Connect));
                self.push(e);
            }
        }
    }

    fn schedule(&mut self, i: usize) {
        self.timers
            .push(Reverse((Instant::now() + self.interval, i)));
    }

    fn close(&mut self, i: usize) {
        let b = &mut self.backends[i];
        b.phase = Phase::Close;
        let e = match self.mode {
            Mode::Linked => opcode::Close::new(types::Fixed(b.fd as u32)),
            Mode::Steps => opcode::Close::new(types::Fd(b.fd)),
        };
        let e = e.build().user_data(ud(i, Phase::Close));
        self.push(e);
    }

    fn recv(&mut self, i: usize) {
        let b = &mut self.backends[i];
        b.phase = Phase::Recv;
        let buf_ptr = b.buf.as_mut_ptr();
        let e = match self.mode {
            Mode::Linked => opcode::Recv::new(types::Fixed(b.fd as u32), buf_ptr, READ_BUF as u32),
            Mode::Steps => opcode::Recv::new(types::Fd(b.fd), buf_ptr, READ_BUF as u32),
        };
        let e = e.build().user_data(ud(i, Phase::Recv));
        self.push(e);
    }

    fn complete(&mut self, user_data: u64, res: i32) {
        let i = (user_data >> 8) as usize;
        let tag = (user_data & 0xff) as u8;
        let Some(b) = self.backends.get_mut(i) else {
            return;
        };
        match (tag, b.phase) {
            // A failed link of the chain (the later ones complete with ECANCELED): close the
            // slot once the chain's last entry (the RECV) reports.
            (t, Phase::Recv) if t != Phase::Recv as u8 => {
                debug_assert!(res < 0);
            }
            (t, Phase::Connect) if t == Phase::Connect as u8 => {
                if res < 0 {
                    self.close(i);
                } else {
                    b.phase = Phase::Send;
                    let e = opcode::Send::new(
                        types::Fd(b.fd),
                        b.request.as_ptr(),
                        b.request.len() as u32,
                    )
                    .build()
                    .user_data(ud(i, Phase::Send));
                    self.push(e);
                }
            }
            (t, Phase::Send) if t == Phase::Send as u8 => {
                if res < 0 {
                    self.close(i);
                } else {
                    self.recv(i);
                }
            }
            (t, Phase::Recv) if t == Phase::Recv as u8 => {
                if res > 0 {
                    b.ok = true;
                    self.recv(i);
                } else {
                    if res < 0 {
                        b.ok = false;
                    }
                    self.close(i);
                }
            }
            (t, Phase::Close) if t == Phase::Close as u8 => {
                let ok = b.ok;
                b.phase = Phase::Idle;
                let fd = b.fd;
                if self.measuring {
                    let took = b.started.elapsed().as_micros() as u64;
                    self.exchange_us.push(took);
                    if ok {
                        self.ok += 1;
                    } else {
                        self.failed += 1;
                    }
                }
                if self.mode == Mode::Linked {
                    self.free_slots.push(fd as u32);
                    if let Some(w) = self.waiting.pop_front() {
                        self.start(w);
                    }
                }
                self.schedule(i);
            }
            (t, p) => {
                eprintln!("prober: unexpected completion {t} in {p:?} ({res})");
                exit(1);
            }
        }
    }

    fn run(&mut self, warmup: Duration, duration: Duration) -> io::Result<(Duration, (u64, u64))> {
        let t0 = Instant::now();
        let measure_from = t0 + warmup;
        let end = measure_from + duration;
        let mut cpu0 = (0, 0);
        loop {
            let now = Instant::now();
            if !self.measuring && now >= measure_from {
                self.measuring = true;
                cpu0 = thread_cpu_us();
            }
            if now >= end {
                let cpu1 = thread_cpu_us();
                return Ok((now - measure_from, (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1)));
            }
            while let Some(&Reverse((due, i))) = self.timers.peek() {
                if due > now {
                    break;
                }
                self.timers.pop();
                if self.measuring {
                    self.lateness_us
                        .push(now.saturating_duration_since(due).as_micros() as u64);
                }
                self.start(i);
            }
            let mut next = self
                .timers
                .peek()
                .map_or(end, |Reverse((d, _))| *d)
                .min(end);
            if !self.tick.is_zero() {
                // Coalesce wake-ups: sleep to the next tick boundary (from `t0`) at or after
                // the earliest due time, and start everything due by then.
                let since = next.saturating_duration_since(t0).as_nanos();
                let tick = self.tick.as_nanos();
                let up = since.div_ceil(tick) * tick;
                next = t0 + Duration::from_nanos(u64::try_from(up).unwrap_or(u64::MAX));
            }
            let wait = next.saturating_duration_since(Instant::now());
            let ts = types::Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            let t_enter = Instant::now();
            let r = self.ring.submitter().submit_with_args(1, &args);
            let spent = t_enter.elapsed();
            if self.measuring {
                self.iterations += 1;
                self.enter_max = self.enter_max.max(spent);
                if spent > wait + Duration::from_millis(2) {
                    self.enter_over += 1;
                }
            }
            match r {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            let mut done = std::mem::take(&mut self.done);
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(u, r) in &done {
                self.complete(u, r);
            }
            done.clear();
            self.done = done;
        }
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let a = parse_args();
    let mut builder = IoUring::builder();
    builder.setup_cqsize(ENTRIES * 2);
    if a.defer {
        builder.setup_single_issuer().setup_defer_taskrun();
    }
    let ring = builder
        .build(ENTRIES)
        .unwrap_or_else(|e| usage(&format!("io_uring: {e}")));
    if a.mode == Mode::Linked {
        if let Err(e) = ring.submitter().register_files_sparse(SLOTS) {
            usage(&format!("register_files_sparse: {e}"));
        }
    }
    let start = Instant::now();
    let mut timers = BinaryHeap::with_capacity(a.backends);
    let backends = (0..a.backends)
        .map(|i| {
            let first = start + a.interval.mul_f64(i as f64 / a.backends as f64);
            timers.push(Reverse((first, i)));
            Backend {
                request: format!("GET / HTTP/1.1\r\nHost: b{i}\r\nConnection: close\r\n\r\n")
                    .into_bytes(),
                phase: Phase::Idle,
                fd: -1,
                ok: false,
                started: start,
                buf: Box::new([0u8; READ_BUF]),
            }
        })
        .collect();
    let mut p = Prober {
        ring,
        addr: raw_addr(a.target),
        mode: a.mode,
        backends,
        free_slots: (0..SLOTS).rev().collect(),
        waiting: VecDeque::new(),
        timers,
        interval: a.interval,
        tick: a.tick,
        ok: 0,
        failed: 0,
        lateness_us: Vec::new(),
        exchange_us: Vec::new(),
        done: Vec::new(),
        iterations: 0,
        enter_max: Duration::ZERO,
        enter_over: 0,
        measuring: false,
    };
    let (window, (user, sys)) = p
        .run(a.warmup, a.duration)
        .unwrap_or_else(|e| usage(&format!("io_uring_enter: {e}")));
    let mut late = std::mem::take(&mut p.lateness_us);
    late.sort_unstable();
    let secs = window.as_secs_f64();
    let cpu = (user + sys) as f64;
    println!(
        "prober_mode={}",
        if a.mode == Mode::Linked {
            "linked"
        } else {
            "steps"
        }
    );
    println!("prober_ring={}", if a.defer { "defer" } else { "plain" });
    println!("prober_tick_us={}", a.tick.as_micros());
    println!("prober_window_s={secs:.3}");
    println!("prober_exchanges={}", p.ok);
    println!("prober_failures={}", p.failed);
    println!("prober_per_s={:.1}", p.ok as f64 / secs);
    println!("prober_cpu_pct={:.2}", cpu / 1e4 / secs);
    println!("prober_sys_pct={:.2}", sys as f64 / 1e4 / secs);
    println!("prober_cpu_us_per_exchange={:.2}", cpu / p.ok.max(1) as f64);
    println!("prober_late_p50_us={}", quantile(&late, 0.5));
    println!("prober_late_p99_us={}", quantile(&late, 0.99));
    println!("prober_late_max_us={}", late.last().copied().unwrap_or(0));
    let mut took = std::mem::take(&mut p.exchange_us);
    took.sort_unstable();
    println!("prober_exchange_p50_us={}", quantile(&took, 0.5));
    println!("prober_exchange_p99_us={}", quantile(&took, 0.99));
    println!("prober_iterations={}", p.iterations);
    println!("prober_enter_max_us={}", p.enter_max.as_micros());
    println!("prober_enter_over_wait={}", p.enter_over);
    let (pu, ps) = process_cpu_us();
    println!("prober_process_cpu_us_total={}", pu + ps);
    println!("prober_thread_cpu_us_total={}", {
        let (u, s) = thread_cpu_us();
        u + s
    });
}
