//! The access log (`-p access_log=PATH`): one NCSA "combined" line per client request, as
//! `varnishncsa -F '%h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i" %{Varnish:handling}x'`
//! prints it, plus a grace marker.
//!
//! Why records and a writer thread: a shard only copies the few request fields a line needs
//! into one small buffer when the request ends and hands it over with a non-blocking
//! `try_send`; formatting (dates, escaping) and the file I/O happen on the writer thread. A
//! full queue drops the record and counts it (`MAIN.access_log_dropped`): the request path
//! never waits for the disk.
//!
//! A line:
//!
//! ```text
//! 192.0.2.7 - - [21/Nov/2026:13:36:38 +0100] "GET http://example.com/a?b=1 HTTP/1.1" 200 1234 "https://ref/" "curl/8.5" hit grace
//! ```
//!
//! `%h` client address, `%l` and `%u` always `-`, `%t` when the request arrived (local time),
//! `%r` method, `http://` + Host (`localhost` without one) + URL, protocol, as varnishncsa
//! rebuilds it; `%s` status sent (`-` for a pipe), `%b` body bytes sent (`-` for a pipe), the
//! Referer and User-Agent (`-` when absent), the handling (`hit`, `miss`, `pass`, `pipe`,
//! `synth`: the last of `vcl_hit`, `vcl_miss`, `vcl_pass`, `vcl_synth` the request ran, or
//! `pipe`), then `grace` for a stale object delivered in grace, `-` otherwise. Bytes outside
//! printable ASCII, `"` and `\` in the quoted fields are written as `\xHH`, `\"` and `\\`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::Duration;

use super::{Msg, Output, Sink};

/// Records waiting for the writer at most; more are dropped (and counted).
pub const QUEUE: usize = 65_536;

/// Longest field copied into a record (longer ones are cut).
const FIELD_MAX: usize = 8192;

/// What the request did (`%{Varnish:handling}x`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Handling {
    /// Nothing yet (a request that never reached a decision).
    #[default]
    None,
    Hit,
    Miss,
    Pass,
    Pipe,
    Synth,
}

impl Handling {
    pub fn word(self) -> &'static str {
        match self {
            Handling::None => "-",
            Handling::Hit => "hit",
            Handling::Miss => "miss",
            Handling::Pass => "pass",
            Handling::Pipe => "pipe",
            Handling::Synth => "synth",
        }
    }
}

/// The request's own fields, as received.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub url: &'a [u8],
    pub proto: &'a [u8],
    pub host: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// One access log line to write: a few numbers and the request's fields in one buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the request arrived (seconds since the epoch).
    pub start: f64,
    pub peer: IpAddr,
    /// `None`: no response (pipe).
    pub status: Option<u16>,
    pub body_bytes: Option<u64>,
    pub handling: Handling,
    pub grace: bool,
    buf: Vec<u8>,
    /// Lengths of method, url, proto, host, referer, user agent in `buf`; `u32::MAX`: absent.
    lens: [u32; 6],
}

impl Record {
    /// Copies what the line needs from the request.
    pub fn new(start: f64, peer: IpAddr, req: &Request<'_>) -> Record {
        let fields = [
            Some(req.method),
            Some(req.url),
            Some(req.proto),
            req.host,
            req.referer,
            req.user_agent,
        ];
        let total: usize = fields
            .iter()
            .map(|f| f.map_or(0, |f| f.len().min(FIELD_MAX)))
            .sum();
        let mut buf = Vec::with_capacity(total);
        let mut lens = [u32::MAX; 6];
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                let f = &f[..f.len().min(FIELD_MAX)];
                buf.extend_from_slice(f);
                lens[i] = f.len() as u32;
            }
        }
        Record {
            start,
            peer,
            status: None,
            body_bytes: None,
            handling: Handling::None,
            grace: false,
            buf,
            lens,
        }
    }

    fn field(&self, i: usize) -> Option<&[u8]> {
        let mut at = 0usize;
        for (j, &l) in self.lens.iter().enumerate() {
            let len = if l == u32::MAX { 0 } else { l as usize };
            if j == i {
                return (l != u32::MAX).then(|| &self.buf[at..at + len]);
            }
            at += len;
        }
        None
    }
}

static QUEUE_TX: OnceLock<SyncSender<Msg<Box<Record>>>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Is the access log on? (One atomic load: the request path checks it per request.)
#[inline]
pub fn enabled() -> bool {
    QUEUE_TX.get().is_some()
}

/// Hands a record to the writer without blocking; a full queue drops it (counted).
pub fn push(r: Record) {
    if let Some(tx) = QUEUE_TX.get() {
        if tx.try_send(Msg::Item(Box::new(r))).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Records dropped because the queue was full (`MAIN.access_log_dropped`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits (at most `timeout`) until every record queued before the call is written.
pub fn flush(timeout: Duration) -> bool {
    super::flush_queue(QUEUE_TX.get(), timeout)
}

/// Opens `path` and starts the writer thread (once, at boot).
pub fn start(path: &str) -> Result<(), String> {
    let out = Output::open(&Sink::File(path.into()), "access_log")?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    if QUEUE_TX.set(tx).is_err() {
        return Err("the access log writer is already running".into());
    }
    std::thread::Builder::new()
        .name("ringcache-access".into())
        .spawn(move || writer(rx, out))
        .map(drop)
        .map_err(|e| format!("cannot start the access log thread: {e}"))
}

fn writer(rx: Receiver<Msg<Box<Record>>>, out: Output) {
    let mut clock = Clf::default();
    super::write_batches(rx, out, 64 << 10, |r, _, buf| {
        format_line(&r, &mut clock, buf)
    });
}

/// `[%d/%b/%Y:%T %z]` of a second, cached (most lines of a burst share their second).
#[derive(Default)]
pub struct Clf {
    secs: i64,
    text: String,
}

impl Clf {
    pub fn get(&mut self, secs: i64) -> &str {
        if self.text.is_empty() || self.secs != secs {
            self.secs = secs;
            self.text = clf_time(secs);
        }
        &self.text
    }
}

/// `[21/Nov/2026:13:36:38 +0100]` for `unix_secs`, in local time.
pub fn clf_time(unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tm = super::local_tm(unix_secs);
    let Some(tm) = tm else {
        return "[01/Jan/1970:00:00:00 +0000]".to_string();
    };
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "[{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        tm.tm_mday,
        MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan"),
        tm.tm_year as i64 + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 60,
        off % 60
    )
}

/// Appends `b` with `"`, `\` and bytes outside printable ASCII escaped (Apache's rules).
fn escaped(b: &[u8], out: &mut Vec<u8>) {
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(c),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 15) as usize],
                ]);
            }
        }
    }
}

/// Appends the record's line (with its newline) to `out`.
pub fn format_line(r: &Record, clock: &mut Clf, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let dash: &[u8] = b"-";
    let _ = write!(
        out,
        "{} - - {} \"",
        r.peer,
        clock.get(r.start.floor() as i64)
    );
    escaped(r.field(0).unwrap_or(dash), out);
    out.push(b' ');
    let url = r.field(1).unwrap_or(b"/");
    if !(url.starts_with(b"http://") || url.starts_with(b"https://")) {
        match r.field(3) {
            Some(h) => {
                if !h.starts_with(b"http://") {
                    out.extend_from_slice(b"http://");
                }
                escaped(h, out);
            }
            None => out.extend_from_slice(b"http://localhost"),
        }
    }
    escaped(url, out);
    out.push(b' ');
    escaped(r.field(2).unwrap_or(b"HTTP/1.0"), out);
    out.extend_from_slice(b"\" ");
    match r.status {
        Some(s) => {
            let _ = write!(out, "{s}");
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    match r.body_bytes {
        Some(b) => {
            let _ = write!(out, "{b}");
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" \"");
    escaped(r.field(4).unwrap_or(dash), out);
    out.extend_from_slice(b"\" \"");
    escaped(r.field(5).unwrap_or(dash), out);
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(r.handling.word().as_bytes());
    out.extend_from_slice(if r.grace { b" grace\n" } else { b" -\n" });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(host: Option<&'a [u8]>, ua: Option<&'a [u8]>) -> Request<'a> {
        Request {
            method: b"GET",
            url: b"/a?b=1",
            proto: b"HTTP/1.1",
            host,
            referer: None,
            user_agent: ua,
        }
    }

    fn line(r: &Record) -> String {
        let mut out = Vec::new();
        format_line(r, &mut Clf::default(), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn combined_format_with_handling_and_grace() {
        let mut r = Record::new(
            1_700_000_000.7,
            "192.0.2.7".parse().unwrap(),
            &req(Some(b"example.com"), Some(b"curl/8.5")),
        );
        r.status = Some(200);
        r.body_bytes = Some(1234);
        r.handling = Handling::Hit;
        r.grace = true;
        let l = line(&r);
        let date = clf_time(1_700_000_000);
        assert_eq!(
            l,
            format!(
                "192.0.2.7 - - {date} \"GET http://example.com/a?b=1 HTTP/1.1\" 200 1234 \"-\" \"curl/8.5\" hit grace\n"
            )
        );
        assert!(
            date.starts_with('[') && date.ends_with(']') && date.len() == 28,
            "{date}"
        );
    }

    #[test]
    fn pipe_missing_fields_and_escapes() {
        let mut r = Record::new(
            1_700_000_000.0,
            "2001:db8::1".parse().unwrap(),
            &Request {
                method: b"GET",
                url: b"http://abs.example/x",
                proto: b"HTTP/1.0",
                host: None,
                referer: Some(b"a\"b\\c\x01"),
                user_agent: None,
            },
        );
        r.handling = Handling::Pipe;
        let l = line(&r);
        assert!(
            l.ends_with(
                "\"GET http://abs.example/x HTTP/1.0\" - - \"a\\\"b\\\\c\\x01\" \"-\" pipe -\n"
            ),
            "{l}"
        );
        assert!(l.starts_with("2001:db8::1 - - ["));
        let r = Record::new(1.0, "10.0.0.1".parse().unwrap(), &req(None, None));
        assert!(line(&r).contains("\"GET http://localhost/a?b=1 HTTP/1.1\" - - \"-\" \"-\" - -\n"));
    }

    #[test]
    fn fields_are_cut_and_the_clock_caches() {
        let long = vec![b'x'; FIELD_MAX + 100];
        let r = Record::new(
            1.0,
            "10.0.0.1".parse().unwrap(),
            &Request {
                url: &long,
                ..req(Some(b"h"), None)
            },
        );
        assert_eq!(r.field(1).map(<[u8]>::len), Some(FIELD_MAX));
        assert_eq!(r.field(3), Some(&b"h"[..]));
        assert_eq!(r.field(4), None);
        let mut c = Clf::default();
        let a = c.get(1_700_000_000).to_string();
        assert_eq!(c.get(1_700_000_000), a);
        assert_ne!(c.get(1_700_000_001), a);
    }
}
