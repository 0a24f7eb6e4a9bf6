//! Minimal io_uring HTTP/1.1 responder: the load test's origin and its "physical limit" reference.
//!
//! Every complete request (anything ending in `\r\n\r\n`; GET only, no request bodies) gets the
//! same pre-built `200 OK` response. All responses owed for one read go out in a single write.
//!
//! ```text
//! cargo run --release --example responder -- --listen 127.0.0.1:8081 \
//!     [--body-size 1024] [--max-age 3600] [--cores 1]
//! ```
//!
//! `--max-age -1` omits the `Cache-Control` header. `--stats-file PATH` makes the first thread
//! write the total number of requests served to PATH (atomically, at most every 200 ms, when it
//! changed): the load test reads it before and after a run through a cache to prove that no
//! request reached the origin, i.e. every response was a hit.

use std::net::SocketAddr;
use std::process::exit;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Read buffer per connection; a request longer than this closes the connection.
const READ_BUF: usize = 16 * 1024;
/// Upper bound of the pre-built batch of back-to-back responses (bytes).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound of responses in the pre-built batch.
const BATCH_MAX: usize = 512;

/// Requests answered, all threads together.
static SERVED: AtomicU64 = AtomicU64::new(0);

struct Config {
    listen: SocketAddr,
    body_size: usize,
    max_age: i64,
    cores: usize,
    stats_file: Option<String>,
}

fn usage(msg: &str) -> ! {
    if msg.is_empty() {
        println!(
            "usage: responder --listen 127.0.0.1:PORT [--body-size N] [--max-age S|-1] \
             [--cores N] [--stats-file PATH]"
        );
        exit(0);
    }
    eprintln!("responder: {msg}");
    eprintln!(
        "usage: responder --listen 127.0.0.1:PORT [--body-size N] [--max-age S|-1] [--cores N] \
         [--stats-file PATH]"
    );
    exit(2);
}

fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")))
}

fn parse_args() -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:8081".parse().expect("literal address"),
        body_size: 1024,
        max_age: 3600,
        cores: 1,
        stats_file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            usage("");
        }
        let Some(value) = args.next() else {
            usage(&format!("missing value for {flag}"));
        };
        match flag.as_str() {
            "--listen" => cfg.listen = parse_value(&flag, &value),
            "--body-size" => cfg.body_size = parse_value(&flag, &value),
            "--max-age" => cfg.max_age = parse_value(&flag, &value),
            "--cores" => cfg.cores = parse_value(&flag, &value),
            "--stats-file" => cfg.stats_file = Some(value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if cfg.cores == 0 {
        usage("--cores must be at least 1");
    }
    cfg
}

/// The response bytes, repeated `count` times back to back: `batch.slice(..k * one)` serves `k`
/// pipelined requests with one write and no copy.
struct Responses {
    one: usize,
    count: usize,
    batch: Bytes,
}

impl Responses {
    fn build(cfg: &Config) -> Self {
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n",
            cfg.body_size
        );
        if cfg.max_age >= 0 {
            head.push_str(&format!("Cache-Control: max-age={}\r\n", cfg.max_age));
        }
        head.push_str("\r\n");
        let mut one = head.into_bytes();
        // A printable, position-dependent body so a truncated or shifted body is noticeable.
        one.extend((0..cfg.body_size).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37]));
        let count = (BATCH_BYTES / one.len()).clamp(1, BATCH_MAX);
        let batch = Bytes::from(one.repeat(count));
        Responses {
            one: one.len(),
            count,
            batch,
        }
    }
}

/// Counts the complete requests in `buf` whose bytes from `start` on are new, and how many
/// bytes they span. The kept tail never holds a full `\r\n\r\n`, so scanning from three bytes
/// before the new data is enough to find a terminator split across two reads.
fn count_requests(finder: &memchr::memmem::Finder<'_>, buf: &[u8], start: usize) -> (usize, usize) {
    let mut pos = start.saturating_sub(3);
    let mut consumed = 0;
    let mut pending = 0usize;
    while let Some(i) = finder.find(&buf[pos..]) {
        pos += i + 4;
        consumed = pos;
        pending += 1;
    }
    (pending, consumed)
}

async fn serve_conn(mut stream: TcpStream, resp: Rc<Responses>) {
    let _ = stream.set_nodelay(true);
    let finder = memchr::memmem::Finder::new(b"\r\n\r\n");
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        let start = buf.len();
        if start == buf.capacity() {
            return; // request head larger than the buffer: give up on this client
        }
        let (res, slice) = stream.read(buf.slice_mut(start..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (mut pending, consumed) = count_requests(&finder, &buf, start);
        if pending > 0 {
            SERVED.fetch_add(pending as u64, Ordering::Relaxed);
        }
        if consumed > 0 {
            buf.copy_within(consumed.., 0);
            buf.truncate(buf.len() - consumed);
        }
        while pending > 0 {
            let k = pending.min(resp.count);
            let (res, _) = stream.write_all(resp.batch.slice(..k * resp.one)).await;
            if res.is_err() {
                return;
            }
            pending -= k;
        }
    }
}

/// Publishes `SERVED` to `path` (write to a temporary file, then rename) whenever it changed.
async fn publish_stats(path: String) {
    let tmp = format!("{path}.tmp");
    let mut last = u64::MAX;
    loop {
        let now = SERVED.load(Ordering::Relaxed);
        if now != last {
            match std::fs::write(&tmp, format!("{now}\n"))
                .and_then(|_| std::fs::rename(&tmp, &path))
            {
                Ok(()) => last = now,
                Err(e) => eprintln!("responder: cannot write {path}: {e}"),
            }
        }
        monoio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn serve(listener: TcpListener, resp: Rc<Responses>) {
    loop {
        // The accept future is always awaited to completion (never raced, never dropped).
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(serve_conn(stream, resp.clone()));
            }
            Err(e) => {
                eprintln!("responder: accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn run_thread(cfg: &Config, listener: std::net::TcpListener, first: bool) {
    let resp = Rc::new(Responses::build(cfg));
    let stats = if first { cfg.stats_file.clone() } else { None };
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => {
            if first {
                eprintln!("responder: driver io_uring");
            }
            rt.block_on(async move {
                if let Some(path) = stats {
                    monoio::spawn(publish_stats(path));
                }
                let l = TcpListener::from_std(listener).expect("register listener");
                serve(l, resp).await
            });
        }
        Err(e) => {
            if first {
                eprintln!("responder: io_uring unavailable ({e}), driver legacy (epoll)");
            }
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .unwrap_or_else(|e| {
                    eprintln!("responder: cannot build runtime: {e}");
                    exit(1);
                });
            rt.block_on(async move {
                if let Some(path) = stats {
                    monoio::spawn(publish_stats(path));
                }
                let l = TcpListener::from_std(listener).expect("register listener");
                serve(l, resp).await
            });
        }
    }
}

/// Binds one SO_REUSEPORT listener, non-blocking as monoio's own `bind_with_config` makes it
/// (needed by the legacy driver, harmless for io_uring); the runtime registers it later.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    Ok(sock.into())
}

fn main() {
    let cfg = parse_args();
    // Bind every listener before announcing, so "listening" means connections will be accepted.
    let listeners: Vec<_> = (0..cfg.cores)
        .map(|_| {
            bind(cfg.listen).unwrap_or_else(|e| {
                eprintln!("responder: cannot listen on {}: {e}", cfg.listen);
                exit(1);
            })
        })
        .collect();
    eprintln!(
        "responder: listening on {} (body {} bytes, max-age {}, {} thread(s))",
        cfg.listen, cfg.body_size, cfg.max_age, cfg.cores
    );
    let cfg = std::sync::Arc::new(cfg);
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name(format!("responder-{i}"))
                .spawn(move || run_thread(&cfg, l, i == 0))
                .expect("spawn thread")
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::count_requests;

    #[test]
    fn counts_pipelined_requests_and_keeps_the_tail() {
        let f = memchr::memmem::Finder::new(b"\r\n\r\n");
        let buf = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HT";
        let (n, used) = count_requests(&f, buf, 0);
        assert_eq!(n, 2);
        assert_eq!(&buf[used..], b"GET /c HT");
    }

    #[test]
    fn finds_a_terminator_split_across_reads() {
        let f = memchr::memmem::Finder::new(b"\r\n\r\n");
        let whole = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        // Every split point: the first read leaves a tail without a full terminator, the second
        // read's bytes start at `cut`.
        for cut in 1..whole.len() {
            let (n0, _) = count_requests(&f, &whole[..cut], 0);
            assert_eq!(n0, 0, "cut {cut}");
            let (n, used) = count_requests(&f, whole, cut);
            assert_eq!((n, used), (1, whole.len()), "cut {cut}");
        }
    }
}
