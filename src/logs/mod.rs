//! Event lines (`Backend_health`, `VCL_Event`, `FetchError`, `VCL_Error`, `VCL_Log`...) off the
//! shards and the poller: one writer thread fed by a bounded queue.
//!
//! Why a writer thread: writing to stderr or a file can block (a full pipe, a slow disk), and a
//! shard or the poller must never wait on that. A producer formats its line and hands it over
//! with a non-blocking `try_send`; when the queue is full the line is counted in
//! `MAIN.log_dropped` and dropped, never waited for. The writer (control plane) keeps the
//! lines the control plane did not keep already in the event ring `log.read` serves
//! (`health::Events`), then writes them to stderr (default) or to `-p log_file=PATH`, flushing
//! whenever the queue runs empty.
//!
//! A log file is opened for appending at boot; once a second the writer checks that the path
//! still names the file it writes (logrotate renamed or removed it) and opens it again if not,
//! so rotation needs no signal. `access` is the NCSA access log, with its own queue and writer.

pub mod access;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::health::Health;

/// Lines waiting for the writer at most; more are dropped (and counted).
pub const QUEUE: usize = 16_384;

/// How long a log writer sleeps when its queue is empty: the most a line waits before it is
/// written, and what the queue must hold at the highest line rate.
pub const WRITER_NAP: Duration = Duration::from_millis(10);

/// How often a log file's path is checked for rotation.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

/// One event line.
struct Line {
    tag: &'static str,
    text: String,
    /// Seconds since the epoch when it was emitted (file lines carry it).
    t: f64,
    /// Already in the event ring (the control plane pushed it there itself).
    kept: bool,
}

/// What a log writer's queue carries: items to write, or a flush request.
enum Msg<T> {
    Item(T),
    /// Everything queued before this has been written when the writer answers.
    Flush(mpsc::Sender<()>),
}

static QUEUE_TX: OnceLock<SyncSender<Msg<Line>>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn now() -> f64 {
    crate::health::epoch_now()
}

fn send(line: Line) {
    match QUEUE_TX.get() {
        Some(tx) => {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send(Msg::Item(line))
            {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
        // No writer (unit tests, `-C`, before boot): straight to stderr.
        None => eprintln!("{}", line.text),
    }
}

/// Logs `text` (a line starting with `tag`) from any thread without blocking: it goes to the
/// log (stderr or `log_file`) and to the event ring `log.read` serves.
pub fn emit(tag: &'static str, text: String) {
    send(Line {
        tag,
        text,
        t: now(),
        kept: false,
    });
}

/// Like [`emit`], for a line the caller has already put in the event ring.
pub fn emit_kept(tag: &'static str, text: String) {
    send(Line {
        tag,
        text,
        t: now(),
        kept: true,
    });
}

/// Lines dropped because the queue was full (`MAIN.log_dropped`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits (at most `timeout`) until every line queued before the call is written; for a clean
/// exit. False if the writer did not answer in time (or none runs).
pub fn flush(timeout: Duration) -> bool {
    flush_queue(QUEUE_TX.get(), timeout)
}

fn flush_queue<T>(tx: Option<&SyncSender<Msg<T>>>, timeout: Duration) -> bool {
    let Some(tx) = tx else {
        return false;
    };
    let (ack_tx, ack_rx) = mpsc::channel();
    let deadline = Instant::now() + timeout;
    let mut msg = Msg::Flush(ack_tx);
    loop {
        match tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
    ack_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

/// Where lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    /// Appended to; reopened when the path stops naming the open file.
    File(PathBuf),
}

impl Sink {
    /// A parameter's value: empty is stderr, anything else a file path.
    pub fn from_param(path: &str) -> Sink {
        if path.is_empty() {
            Sink::Stderr
        } else {
            Sink::File(PathBuf::from(path))
        }
    }
}

/// An open sink: stderr, or a file with what identifies it on disk.
pub(crate) enum Output {
    Stderr(io::Stderr),
    File {
        path: PathBuf,
        w: BufWriter<File>,
        id: (u64, u64),
        checked: Instant,
    },
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

fn open_append(path: &Path) -> io::Result<(BufWriter<File>, (u64, u64))> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let id = file_id(&f.metadata()?);
    Ok((BufWriter::with_capacity(64 << 10, f), id))
}

impl Output {
    /// Opens `sink` (errors name the file: a bad path is a startup error).
    pub(crate) fn open(sink: &Sink, what: &str) -> Result<Output, String> {
        match sink {
            Sink::Stderr => Ok(Output::Stderr(io::stderr())),
            Sink::File(path) => {
                let (w, id) = open_append(path)
                    .map_err(|e| format!("-p {what}={}: cannot open: {e}", path.display()))?;
                Ok(Output::File {
                    path: path.clone(),
                    w,
                    id,
                    checked: Instant::now(),
                })
            }
        }
    }

    pub(crate) fn is_file(&self) -> bool {
        matches!(self, Output::File { .. })
    }

    /// Writes `bytes` (one or more whole lines). A failed write is reported once per burst on
    /// stderr, never retried: logging must not stall.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let r = match self {
            Output::Stderr(e) => e.lock().write_all(bytes),
            Output::File { w, .. } => w.write_all(bytes),
        };
        if let Err(e) = r {
            eprintln!("ringcache: log write failed: {e}");
        }
    }

    pub(crate) fn flush(&mut self) {
        if let Output::File { w, .. } = self {
            let _ = w.flush();
        }
    }

    /// Once a second: if the path no longer names the open file (rotated), open it again.
    pub(crate) fn reopen_if_moved(&mut self) {
        let Output::File {
            path,
            w,
            id,
            checked,
        } = self
        else {
            return;
        };
        if checked.elapsed() < REOPEN_CHECK {
            return;
        }
        *checked = Instant::now();
        let same = std::fs::metadata(&*path).is_ok_and(|m| file_id(&m) == *id);
        if same {
            return;
        }
        let _ = w.flush();
        match open_append(path) {
            Ok((nw, nid)) => {
                *w = nw;
                *id = nid;
            }
            Err(e) => eprintln!("ringcache: cannot reopen {}: {e}", path.display()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmmmm` in local time: the stamp of a log file line.
pub fn file_stamp(t: f64) -> String {
    let secs = t.floor();
    let micros = ((t - secs) * 1e6) as u64;
    format!(
        "{}.{:06}",
        crate::admin::stat::local_timestamp(secs as i64),
        micros.min(999_999)
    )
}

/// Starts the writer thread for `sink`; lines not already kept also go into `events`.
/// Call once, at boot (a second call is refused).
pub fn start(sink: &Sink, events: Arc<dyn Keep>) -> Result<(), String> {
    let out = Output::open(sink, "log_file")?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    if QUEUE_TX.set(tx).is_err() {
        return Err("the log writer is already running".into());
    }
    std::thread::Builder::new()
        .name("ringcache-log".into())
        .spawn(move || writer(rx, out, events))
        .map(drop)
        .map_err(|e| format!("cannot start the log writer thread: {e}"))
}

/// Where the writer keeps the lines the producers did not (the event ring).
pub trait Keep: Send + Sync {
    fn keep(&self, tag: &'static str, line: String);
}

impl Keep for Health {
    fn keep(&self, tag: &'static str, line: String) {
        self.events.keep(tag, line);
    }
}

/// A writer's next message: polled, never parked in `recv`, so a sender never has a sleeping
/// receiver to wake (a futex call and a context switch per line on the sender's core: ~6 µs per
/// request measured with the access log). While the queue is empty the writer sleeps
/// [`WRITER_NAP`] and checks every [`REOPEN_CHECK`] whether its file was rotated away. `None`:
/// every sender is gone.
fn next_polled<T>(rx: &Receiver<T>, out: &mut Output, checked: &mut Instant) -> Option<T> {
    loop {
        match rx.try_recv() {
            Ok(m) => return Some(m),
            Err(TryRecvError::Empty) => {
                if checked.elapsed() >= REOPEN_CHECK {
                    out.reopen_if_moved();
                    *checked = Instant::now();
                }
                std::thread::sleep(WRITER_NAP);
            }
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}

fn writer(rx: Receiver<Msg<Line>>, out: Output, events: Arc<dyn Keep>) {
    write_batches(rx, out, 16 << 10, |l, out, buf| {
        if out.is_file() {
            buf.extend_from_slice(file_stamp(l.t).as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(l.text.as_bytes());
        buf.push(b'\n');
        if !l.kept {
            events.keep(l.tag, l.text);
        }
    });
}

/// A writer thread's loop: everything queued now is formatted by `put` into one buffer, then
/// one write (per 64 KiB) and one flush; flush requests are answered after that write. Ends
/// when every sender is gone.
fn write_batches<T>(
    rx: Receiver<Msg<T>>,
    mut out: Output,
    capacity: usize,
    mut put: impl FnMut(T, &Output, &mut Vec<u8>),
) {
    let mut buf = Vec::with_capacity(capacity);
    let mut checked = Instant::now();
    while let Some(first) = next_polled(&rx, &mut out, &mut checked) {
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Msg::Item(item) => {
                    put(item, &out, &mut buf);
                    if buf.len() >= 64 << 10 {
                        out.write(&buf);
                        buf.clear();
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            out.write(&buf);
            buf.clear();
        }
        out.flush();
        for a in acks {
            let _ = a.send(());
        }
    }
}

/// `localtime_r(3)` of `unix_secs`: the broken-down local time the access log and `stat -j`
/// stamp their lines with; `None` if the C library cannot represent it.
pub fn local_tm(unix_secs: i64) -> Option<libc::tm> {
    let t = unix_secs as libc::time_t;
    // SAFETY: `tm` is plain data (its one pointer field may be null); `localtime_r` writes only
    // into the `tm` we pass and reads `t`; both outlive the call.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Ring(Mutex<Vec<(String, String)>>);

    impl Keep for Ring {
        fn keep(&self, tag: &'static str, line: String) {
            self.0.lock().unwrap().push((tag.to_string(), line));
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "ringcache-logs-{}-{name}-{}",
            std::process::id(),
            now()
        ))
    }

    #[test]
    fn writer_keeps_unkept_lines_stamps_file_lines_and_follows_rotation() {
        let path = temp("events");
        let out = Output::open(&Sink::File(path.clone()), "log_file").expect("open");
        let ring = Arc::new(Ring::default());
        let (tx, rx) = mpsc::sync_channel(8);
        let r2: Arc<dyn Keep> = ring.clone();
        let t = std::thread::spawn(move || writer(rx, out, r2));
        let line = |tag, text: &str, kept| {
            Msg::Item(Line {
                tag,
                text: text.to_string(),
                t: 1_700_000_000.25,
                kept,
            })
        };
        tx.send(line("FetchError", "FetchError 5 boom", false))
            .unwrap();
        tx.send(line("VCL_Event", "VCL_Event load v2", true))
            .unwrap();
        assert!(flush_queue(Some(&tx), Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(".250000 FetchError 5 boom"), "{text}");
        assert_eq!(
            lines[0].len(),
            "YYYY-MM-DDTHH:MM:SS.mmmmmm FetchError 5 boom".len()
        );
        assert!(lines[1].ends_with(" VCL_Event load v2"));
        assert_eq!(
            *ring.0.lock().unwrap(),
            vec![("FetchError".to_string(), "FetchError 5 boom".to_string())],
            "only the line not kept yet goes to the ring"
        );
        // Rotation: the file is renamed away; the next lines go to a new file at the path.
        let rotated = temp("events.1");
        std::fs::rename(&path, &rotated).expect("rename");
        std::thread::sleep(REOPEN_CHECK + Duration::from_millis(200));
        tx.send(line("FetchError", "FetchError 6 after", false))
            .unwrap();
        assert!(flush_queue(Some(&tx), Duration::from_secs(5)));
        let fresh = std::fs::read_to_string(&path).expect("reopened");
        assert!(fresh.ends_with(" FetchError 6 after\n"), "{fresh}");
        assert!(!std::fs::read_to_string(&rotated).unwrap().contains("after"));
        drop(tx);
        t.join().unwrap();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
    }

    #[test]
    fn bad_path_is_one_line_error() {
        let e = Output::open(&Sink::File("/nonexistent-dir/x.log".into()), "log_file")
            .err()
            .expect("must fail");
        assert!(
            e.starts_with("-p log_file=/nonexistent-dir/x.log: cannot open: "),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert_eq!(Sink::from_param(""), Sink::Stderr);
    }

    #[test]
    fn stamp_shape() {
        let s = file_stamp(1_700_000_000.5);
        assert_eq!(s.len(), 26, "{s}");
        assert!(s.ends_with(".500000"));
    }
}
