//! The Prometheus endpoint (`-p metrics_listen=ADDR:PORT`): `GET /metrics` in the text
//! exposition format 0.0.4.
//!
//! Why a blocking std listener on its own threads: a scrape every few seconds is control-plane
//! work; it reads the same counter readings as `stat` (relaxed loads of the shards' arrays, no
//! message to a shard) and must keep answering when the shards are saturated. One accept
//! thread per address, one short-lived thread per scrape (at most [`MAX_SCRAPES`] at once),
//! every read and write under a timeout, one response per connection.
//!
//! Names: `MAIN.x` is `ringcache_main_x`, `VBE.<vcl>.<backend>.x` is `ringcache_backend_x`
//! with labels `vcl` and `backend`, `SHARD.<n>.x` is `ringcache_shard_x{shard="n"}`,
//! `POLLER.x` is `ringcache_poller_x`; counters end in `_total`, durations in `_seconds`
//! (`ringcache_main_uptime_seconds_total`). A bitmap (`VBE.*.happy`) cannot be a float sample
//! without losing bits, so it is exported as the number of bits set (`ringcache_backend_happy_count`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::view::{Group, Reading, Readings};
use super::{CounterKind, Format};

/// Scrapes served at once; more are answered 503.
pub const MAX_SCRAPES: usize = 8;
/// Largest request head read.
const MAX_HEAD: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family {
    name: String,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, u64)>,
}

/// The metric name of a reading (without labels).
pub fn metric_name(r: &Reading) -> String {
    let group = match r.group {
        Group::Main => "main",
        Group::Vbe { .. } => "backend",
        Group::Shard(_) => "shard",
        Group::Poller => "poller",
    };
    let mut name = format!("ringcache_{group}_{}", r.field);
    if r.format == Format::Duration {
        name.push_str("_seconds");
    }
    match r.kind {
        CounterKind::Counter => name.push_str("_total"),
        CounterKind::Bitmap => name.push_str("_count"),
        CounterKind::Gauge => {}
    }
    name
}

/// The sample value of a reading (a bitmap: its bits set).
pub fn metric_value(r: &Reading) -> u64 {
    match r.kind {
        CounterKind::Bitmap => u64::from(r.value.count_ones()),
        _ => r.value,
    }
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(group: &Group) -> String {
    let mut out = String::new();
    match group {
        Group::Vbe { vcl, backend } => {
            out.push_str("{vcl=\"");
            escape_label(vcl, &mut out);
            out.push_str("\",backend=\"");
            escape_label(backend, &mut out);
            out.push_str("\"}");
        }
        Group::Shard(n) => {
            let _ = write!(out, "{{shard=\"{n}\"}}");
        }
        Group::Main | Group::Poller => {}
    }
    out
}

/// The readings in the text exposition format: each family's `# HELP` and `# TYPE` once, then
/// all its samples together, families in the order they first appear.
pub fn render(readings: &[Reading]) -> String {
    let mut families: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in readings {
        let name = metric_name(r);
        let i = match index.get(&name) {
            Some(&i) => i,
            None => {
                families.push(Family {
                    name: name.clone(),
                    help: r.description,
                    kind: match r.kind {
                        CounterKind::Counter => "counter",
                        CounterKind::Gauge | CounterKind::Bitmap => "gauge",
                    },
                    samples: Vec::new(),
                });
                index.insert(name, families.len() - 1);
                families.len() - 1
            }
        };
        families[i]
            .samples
            .push((labels(&r.group), metric_value(r)));
    }
    let mut out = String::with_capacity(readings.len() * 96);
    for f in &families {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        for c in f.help.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        let _ = writeln!(out, "\n# TYPE {} {}", f.name, f.kind);
        for (l, v) in &f.samples {
            let _ = writeln!(out, "{}{l} {v}", f.name);
        }
    }
    out
}

/// Bound sockets of `-p metrics_listen`, not yet serving.
pub struct MetricsListener {
    sockets: Vec<TcpListener>,
}

/// Binds every address (errors are one line).
pub fn bind(addrs: &[SocketAddr]) -> Result<MetricsListener, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut sockets = Vec::with_capacity(addrs.len());
    let mut port = 0;
    for &want in addrs {
        let mut addr = want;
        if addr.port() == 0 && port != 0 {
            addr.set_port(port);
        }
        let explain = |e: io::Error| {
            let why = if e.kind() == io::ErrorKind::AddrInUse {
                "address already in use".to_string()
            } else {
                e.to_string()
            };
            format!("-p metrics_listen: cannot listen on {addr}: {why}")
        };
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(explain)?;
        if addr.is_ipv6() {
            s.set_only_v6(true).map_err(explain)?;
        }
        s.set_reuse_address(true).map_err(explain)?;
        s.bind(&addr.into()).map_err(explain)?;
        s.listen(64).map_err(explain)?;
        let l: TcpListener = s.into();
        port = l.local_addr().map_err(explain)?.port();
        sockets.push(l);
    }
    Ok(MetricsListener { sockets })
}

impl MetricsListener {
    /// The bound addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts serving, one accept thread per address.
    pub fn start(self, readings: Readings) -> io::Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        for sock in self.sockets {
            let readings = readings.clone();
            let active = active.clone();
            std::thread::Builder::new()
                .name("ringcache-metrics".into())
                .spawn(move || accept_loop(sock, readings, active))?;
        }
        Ok(())
    }
}

/// Gives the scrape slot back however the scrape thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: TcpListener, readings: Readings, active: Arc<AtomicUsize>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_SCRAPES {
            let _ = answer(
                &stream,
                503,
                "Service Unavailable",
                "too many scrapes\n",
                false,
            );
            active.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let slot = Slot(active.clone());
        let readings = readings.clone();
        let spawned = std::thread::Builder::new()
            .name("ringcache-scrape".into())
            .spawn(move || {
                let _slot = slot;
                serve(stream, &readings);
            });
        if spawned.is_err() {
            // The closure (and its slot) was dropped with the error.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics { head: bool },
    NotFound,
    BadMethod,
    BadRequest,
}

/// Routes a request head (the bytes up to the blank line).
pub fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if words.next().is_some() || !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_req = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::BadMethod,
    };
    if path == "/metrics" {
        Route::Metrics { head: head_req }
    } else {
        Route::NotFound
    }
}

fn serve(mut stream: TcpStream, readings: &Readings) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_HEAD {
            let _ = answer(&stream, 431, "Request Header Fields Too Large", "", false);
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = match route(&buf) {
        Route::Metrics { head } => {
            let body = render(&readings());
            answer(&stream, 200, "OK", &body, head)
        }
        Route::NotFound => answer(
            &stream,
            404,
            "Not Found",
            "not found: try /metrics\n",
            false,
        ),
        Route::BadMethod => answer(&stream, 405, "Method Not Allowed", "", false),
        Route::BadRequest => answer(&stream, 400, "Bad Request", "", false),
    };
    let _ = stream.flush();
}

fn answer(
    mut stream: &TcpStream,
    status: u16,
    reason: &str,
    body: &str,
    head: bool,
) -> io::Result<()> {
    let ctype = if status == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::view::{collect, Plane, PlaneBackend};
    use crate::stats::{Stats, Vbe, C};

    #[test]
    fn names_types_labels_and_grouping() {
        let s = Stats::new(2);
        s.shard(0).add(C::cache_hit, 3);
        s.shard(1).set(C::n_object, 2);
        s.vbe_shard(0).slot(1).add(Vbe::req, 4);
        let plane = Plane {
            uptime: 5,
            n_vcl: 1,
            backends: vec![
                PlaneBackend {
                    vcl: "boot".into(),
                    name: "b1".into(),
                    slot: 1,
                    happy: 0b111,
                    conn: 0,
                },
                PlaneBackend {
                    vcl: "boot".into(),
                    name: "we\"ird".into(),
                    slot: 2,
                    happy: 0,
                    conn: 0,
                },
            ],
            ..Plane::default()
        };
        let text = render(&collect(&s, &plane));
        assert!(text.starts_with(
            "# HELP ringcache_main_uptime_seconds_total Process uptime\n\
             # TYPE ringcache_main_uptime_seconds_total counter\n\
             ringcache_main_uptime_seconds_total 5\n"
        ));
        assert!(text.contains(
            "\n# TYPE ringcache_main_cache_hit_total counter\nringcache_main_cache_hit_total 3\n"
        ));
        assert!(
            text.contains("\n# TYPE ringcache_main_n_object gauge\nringcache_main_n_object 2\n")
        );
        assert!(text.contains(
            "\n# TYPE ringcache_backend_req_total counter\n\
             ringcache_backend_req_total{vcl=\"boot\",backend=\"b1\"} 4\n\
             ringcache_backend_req_total{vcl=\"boot\",backend=\"we\\\"ird\"} 0\n"
        ));
        assert!(text.contains("ringcache_backend_happy_count{vcl=\"boot\",backend=\"b1\"} 3\n"));
        assert!(text.contains(
            "ringcache_shard_cache_hit_total{shard=\"0\"} 3\nringcache_shard_cache_hit_total{shard=\"1\"} 0\n"
        ));
        // Each family's HELP and TYPE appear once.
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE ringcache_backend_req_total "))
            .count();
        assert_eq!(types, 1);
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1"),
            Route::Metrics { head: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::BadMethod);
        assert_eq!(route(b"GET /metrics"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }
}
