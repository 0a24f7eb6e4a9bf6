//! `ringcache stat` without `-1`/`-j` on a terminal: a live view, as varnishstat's curses
//! screen shows it (simpler): every second the counters are read again and the screen redrawn,
//! one line per counter with its name, current value, change per second since the last
//! reading, and average per second since start. `q` or Ctrl-C quits.
//!
//! Why no curses crate: the view is a full redraw once a second (clear, home, text), which four
//! ANSI sequences do; the terminal is put in non-canonical, no-echo mode with termios so a key
//! press is seen at once, and restored on every way out. Rendering is a pure function of two
//! readings, tested without a terminal.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::client::{Conn, Request};

/// One counter of a `stat -1` reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub value: u64,
    /// A counter (its rate column is a number); gauges and bitmaps print `.`.
    pub counter: bool,
    pub description: String,
}

/// Parses `varnishstat -1` text: `NAME VALUE RATE|. DESCRIPTION`.
pub fn parse_once(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let value = w.next()?.parse().ok()?;
            let rate = w.next()?;
            let description = w.collect::<Vec<_>>().join(" ");
            Some(Row {
                name,
                value,
                counter: rate != ".",
                description,
            })
        })
        .collect()
}

/// The previous reading and how long ago it was taken.
pub struct Previous<'a> {
    pub values: &'a HashMap<String, u64>,
    pub elapsed: Duration,
}

fn value_of(rows: &[Row], name: &str) -> Option<u64> {
    rows.iter().find(|r| r.name == name).map(|r| r.value)
}

fn uptime_text(secs: u64) -> String {
    format!(
        "{}+{:02}:{:02}:{:02}",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn hit_rate(hits: u64, misses: u64) -> String {
    if hits + misses == 0 {
        "-".to_string()
    } else {
        format!("{:.2}%", hits as f64 * 100.0 / (hits + misses) as f64)
    }
}

/// One screen: a header, then the counters with a non-zero value (or every counter with
/// `all`), as many as fit in `height` lines of `width` columns.
pub fn render(
    target: &str,
    rows: &[Row],
    prev: Option<&Previous<'_>>,
    width: usize,
    height: usize,
    all: bool,
) -> String {
    let uptime = value_of(rows, "MAIN.uptime").unwrap_or(0);
    let hits = value_of(rows, "MAIN.cache_hit").unwrap_or(0);
    let misses = value_of(rows, "MAIN.cache_miss").unwrap_or(0);
    let (last_hits, last_misses) = match prev {
        Some(p) => (
            hits.saturating_sub(p.values.get("MAIN.cache_hit").copied().unwrap_or(hits)),
            misses.saturating_sub(p.values.get("MAIN.cache_miss").copied().unwrap_or(misses)),
        ),
        None => (0, 0),
    };
    let mut lines = vec![
        format!("ringcache stat {target}   Uptime {}", uptime_text(uptime)),
        format!(
            "Hit rate: since start {}   last reading {}",
            hit_rate(hits, misses),
            hit_rate(last_hits, last_misses)
        ),
        String::new(),
    ];
    let name_w = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, width.saturating_sub(40).max(4));
    lines.push(format!(
        "{:<name_w$} {:>12} {:>12} {:>12}",
        "NAME", "CURRENT", "CHANGE", "AVERAGE"
    ));
    let secs = prev.map(|p| p.elapsed.as_secs_f64()).filter(|s| *s > 0.0);
    let shown = rows.iter().filter(|r| all || r.value != 0);
    let room = height.saturating_sub(lines.len() + 1);
    let mut hidden = 0usize;
    for (i, r) in shown.enumerate() {
        if i >= room {
            hidden += 1;
            continue;
        }
        let (change, average) = if r.counter {
            let change = match (prev, secs) {
                (Some(p), Some(s)) => {
                    let before = p.values.get(&r.name).copied().unwrap_or(r.value);
                    format!("{:.2}", r.value.saturating_sub(before) as f64 / s)
                }
                _ => "-".to_string(),
            };
            let average = if uptime > 0 && r.name != "MAIN.uptime" {
                format!("{:.2}", r.value as f64 / uptime as f64)
            } else {
                ".".to_string()
            };
            (change, average)
        } else {
            (".".to_string(), ".".to_string())
        };
        let mut name = r.name.clone();
        if name.len() > name_w {
            name.truncate(name_w);
        }
        lines.push(format!(
            "{name:<name_w$} {:>12} {change:>12} {average:>12}",
            r.value
        ));
    }
    let footer = if hidden > 0 {
        format!("({hidden} more lines do not fit; q quits)")
    } else {
        "(q quits)".to_string()
    };
    lines.push(footer);
    let mut out = String::with_capacity(lines.len() * (width + 2));
    for l in lines {
        let cut: String = l.chars().take(width.max(1)).collect();
        out.push_str(&cut);
        out.push_str("\r\n");
    }
    out
}

/// Is this file descriptor a terminal?
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: `isatty` only inspects the descriptor number; any value is allowed.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal's size (columns, rows), 80x24 when unknown.
fn term_size() -> (usize, usize) {
    // SAFETY: `winsize` is plain data; TIOCGWINSZ writes into the one we pass, which outlives
    // the call; a failure leaves it zeroed.
    let ws = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) != 0 {
            ws.ws_col = 0;
        }
        ws
    };
    if ws.ws_col == 0 || ws.ws_row == 0 {
        (80, 24)
    } else {
        (ws.ws_col as usize, ws.ws_row as usize)
    }
}

/// Standard input in non-canonical, no-echo, no-signal mode until dropped.
struct RawInput {
    saved: Option<libc::termios>,
}

impl RawInput {
    fn enter() -> RawInput {
        if !is_tty(libc::STDIN_FILENO) {
            return RawInput { saved: None };
        }
        // SAFETY: `termios` is plain data; tcgetattr fills the one we pass (checked), and
        // tcsetattr reads our modified copy; both outlive the calls.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return RawInput { saved: None };
            }
            let mut raw = t;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            raw.c_cc[libc::VMIN] = 0;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return RawInput { saved: None };
            }
            t
        };
        RawInput { saved: Some(saved) }
    }

    /// Waits up to `timeout` for a key; true when it asks to quit (`q`, `Q`, Ctrl-C, Ctrl-D).
    fn quit_within(&self, timeout: Duration) -> bool {
        if self.saved.is_none() {
            std::thread::sleep(timeout);
            return false;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid `pollfd` that outlives the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            if n <= 0 {
                continue;
            }
            let mut b = [0u8; 16];
            // SAFETY: reads at most `b.len()` bytes into `b`, which outlives the call.
            let got = unsafe { libc::read(libc::STDIN_FILENO, b.as_mut_ptr().cast(), b.len()) };
            if got <= 0 {
                // End of input or an error: stop watching the keyboard, keep the view.
                std::thread::sleep(left);
                return false;
            }
            if b[..got as usize]
                .iter()
                .any(|&c| matches!(c, b'q' | b'Q' | 3 | 4))
            {
                return true;
            }
        }
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        if let Some(t) = self.saved.take() {
            // SAFETY: restores the settings read in `enter`; `t` outlives the call.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            }
        }
    }
}

/// Leaves the alternate screen (and shows the cursor) however the view ends.
struct Screen;

impl Screen {
    fn enter() -> Screen {
        let _ = io::stdout().write_all(b"\x1b[?1049h\x1b[?25l");
        Screen
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut o = io::stdout();
        let _ = o.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = o.flush();
    }
}

/// Runs the live view until `q`; returns the exit code (2 when the connection fails).
pub fn run(conn: &mut Conn, req: &Request, args: &[String]) -> i32 {
    let mut words = vec!["stat".to_string(), "-1".to_string()];
    words.extend(args.iter().cloned());
    let input = RawInput::enter();
    let screen = Screen::enter();
    let mut prev: Option<(HashMap<String, u64>, Instant)> = None;
    loop {
        let body = match conn.command(&words) {
            Ok((200, body)) => body,
            Ok((st, body)) => {
                drop(screen);
                drop(input);
                eprintln!("{body}\nCommand failed with error code {st}");
                return 1;
            }
            Err(e) => {
                drop(screen);
                drop(input);
                eprintln!("ringcache: CLI communication error ({}): {e}", req.target);
                return 2;
            }
        };
        let now = Instant::now();
        let rows = parse_once(&body);
        let (w, h) = term_size();
        let p = prev.as_ref().map(|(values, at)| Previous {
            values,
            elapsed: now.duration_since(*at),
        });
        let frame = render(&req.target, &rows, p.as_ref(), w, h, false);
        let mut o = io::stdout().lock();
        let _ = o.write_all(b"\x1b[H\x1b[2J");
        let _ = o.write_all(frame.as_bytes());
        if o.flush().is_err() {
            return 0;
        }
        drop(o);
        prev = Some((rows.into_iter().map(|r| (r.name, r.value)).collect(), now));
        if input.quit_within(Duration::from_secs(1)) {
            return 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONCE: &str = "\
MAIN.uptime                 10         1.00 Process uptime
MAIN.cache_hit              30         3.00 Cache hits (including grace hits)
MAIN.cache_miss             10         1.00 Cache misses
MAIN.n_object                4          .   Objects in the cache
MAIN.busy_sleep              0         0.00 Requests sent to sleep on a busy object
VBE.boot.default.happy    18446744073709551615          .   Happy health probes
";

    #[test]
    fn parses_varnishstat_once() {
        let rows = parse_once(ONCE);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[1].name, "MAIN.cache_hit");
        assert_eq!(rows[1].value, 30);
        assert!(rows[1].counter);
        assert!(!rows[3].counter);
        assert_eq!(rows[3].description, "Objects in the cache");
        assert_eq!(rows[5].value, u64::MAX);
    }

    #[test]
    fn renders_change_average_and_hit_rate() {
        let rows = parse_once(ONCE);
        let before: HashMap<String, u64> = [("MAIN.cache_hit", 20), ("MAIN.cache_miss", 10)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let prev = Previous {
            values: &before,
            elapsed: Duration::from_secs(2),
        };
        let s = render("127.0.0.1:6082", &rows, Some(&prev), 100, 40, false);
        let lines: Vec<&str> = s.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "ringcache stat 127.0.0.1:6082   Uptime 0+00:00:10"
        );
        assert_eq!(
            lines[1],
            "Hit rate: since start 75.00%   last reading 100.00%"
        );
        assert!(lines[3].starts_with("NAME "));
        let hit = lines
            .iter()
            .find(|l| l.starts_with("MAIN.cache_hit "))
            .expect("hit line");
        let cols: Vec<&str> = hit.split_whitespace().collect();
        assert_eq!(cols, ["MAIN.cache_hit", "30", "5.00", "3.00"]);
        let gauge = lines
            .iter()
            .find(|l| l.starts_with("MAIN.n_object "))
            .expect("gauge");
        assert_eq!(
            gauge.split_whitespace().collect::<Vec<_>>(),
            ["MAIN.n_object", "4", ".", "."]
        );
        assert!(!s.contains("MAIN.busy_sleep"), "zero counters are hidden");
        assert!(render("t", &rows, None, 100, 40, true).contains("MAIN.busy_sleep"));
        // The first screen has no change yet.
        let first = render("t", &rows, None, 100, 40, false);
        assert!(first.contains("last reading -"));
    }

    #[test]
    fn fits_the_terminal() {
        let rows = parse_once(ONCE);
        let s = render("t", &rows, None, 30, 7, false);
        let lines: Vec<&str> = s.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines.len() <= 7, "{s}");
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{s}");
        assert!(s.contains("more lines do not fit"), "{s}");
    }
}
