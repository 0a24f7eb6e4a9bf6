//! `ringcache adm`, `ringcache stat` and `ringcache log`: varnishadm-like clients.
//!
//! It connects to `-T`, answers the challenge with `-S` when asked, checks the server answers
//! `ping` with a PONG (as varnishadm does), then runs one command, or one per line of standard
//! input. Its arguments are quoted for the CLI when they need it (varnishadm sends them bare).
//! `stat` on a terminal without `-1`/`-j` is the live view (`live`); `log` polls `log.read`
//! with the last sequence number it saw and prints new lines as they come.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{self, status};

/// Largest response body the client accepts.
const MAX_BODY: usize = 64 << 20;

/// What the client was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `-T` as written.
    pub target: String,
    /// `-T` resolved.
    pub addrs: Vec<SocketAddr>,
    /// `-S`.
    pub secret: Option<PathBuf>,
    /// `-t`: per connect and per response.
    pub timeout: Duration,
    pub mode: Mode,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `adm COMMAND [ARG...]`: print the body and a newline, as varnishadm.
    Command(Vec<String>),
    /// `adm` with no command: one command per line of standard input.
    Stdin,
    /// `stat [...]`: these words after `stat`; print the body as it is (varnishstat's output),
    /// or the live view on a terminal without `-1`/`-j`.
    Stat(Vec<String>),
    /// `log [-d] [-i TAG]...`: event lines of these tags (all without); `dump`: those kept so
    /// far, then exit; else the ones that come from now on, until interrupted.
    Log { tags: Vec<String>, dump: bool },
}

/// An authenticated connection.
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects, authenticates, and checks for a PONG. Errors are one line.
    pub fn open(req: &Request) -> Result<Conn, String> {
        let mut last = String::from("no address");
        let mut stream = None;
        for a in &req.addrs {
            match TcpStream::connect_timeout(a, req.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or_else(|| format!("Connection failed ({}): {last}", req.target))?;
        stream
            .set_read_timeout(Some(req.timeout))
            .and_then(|_| stream.set_write_timeout(Some(req.timeout)))
            .map_err(|e| format!("Connection failed ({}): {e}", req.target))?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn { stream };
        let comms = |e: io::Error| format!("CLI communication error ({}): {e}", req.target);
        let (mut st, mut body) = c.read().map_err(comms)?;
        if st == status::AUTH {
            let path = req
                .secret
                .as_ref()
                .ok_or("Authentication required (pass -S SECRETFILE)")?;
            let secret = std::fs::read(path)
                .map_err(|e| format!("Cannot open \"{}\": {e}", path.display()))?;
            let answer = protocol::auth_response(body.as_bytes(), &secret);
            c.send(&format!("auth {answer}\n")).map_err(comms)?;
            (st, body) = c.read().map_err(comms)?;
        }
        if st != status::OK && st != status::TRUNCATED {
            let first = body.lines().next().unwrap_or("");
            return Err(format!("Rejected {st} {first}").trim_end().to_string());
        }
        c.send("ping\n").map_err(comms)?;
        match c.read() {
            Ok((status::OK, b)) if b.contains("PONG") => Ok(c),
            _ => Err("No pong received from server".into()),
        }
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.stream.write_all(text.as_bytes())
    }

    fn read(&mut self) -> io::Result<(u16, String)> {
        protocol::read_response(&mut self.stream, MAX_BODY)
    }

    /// Sends one command (words quoted as needed) and reads its answer.
    pub fn command(&mut self, words: &[String]) -> io::Result<(u16, String)> {
        let line: Vec<String> = words.iter().map(|w| protocol::quote_arg(w)).collect();
        self.send(&format!("{}\n", line.join(" ")))?;
        self.read()
    }

    /// Sends raw text (one or more lines) and reads one answer.
    pub fn raw(&mut self, text: &str) -> io::Result<(u16, String)> {
        self.send(text)?;
        self.read()
    }
}

fn ok(st: u16) -> bool {
    st == status::OK || st == status::TRUNCATED
}

/// Prints a failed answer on stderr, as varnishadm words it.
fn report_failure(st: u16, body: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{body}");
    let _ = writeln!(err, "Command failed with error code {st}");
}

/// Runs the client; returns the process exit code (0 ok, 1 command failed, 2 no connection).
pub fn run(req: &Request) -> i32 {
    let mut conn = match Conn::open(req) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringcache: {e}");
            return 2;
        }
    };
    let comms = |e: io::Error| {
        eprintln!("ringcache: CLI communication error ({}): {e}", req.target);
        2
    };
    match &req.mode {
        Mode::Command(words) => match conn.command(words) {
            Ok((st, body)) if ok(st) => {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{body}");
                if st == status::TRUNCATED {
                    let _ = writeln!(out, "[response was truncated]");
                }
                0
            }
            Ok((st, body)) => {
                report_failure(st, &body);
                1
            }
            Err(e) => comms(e),
        },
        Mode::Stat(args)
            if !args.iter().any(|a| a == "-1" || a == "-j")
                && super::live::is_tty(libc::STDOUT_FILENO) =>
        {
            super::live::run(&mut conn, req, args)
        }
        Mode::Log { tags, dump } => run_log(&mut conn, req, tags, *dump),
        Mode::Stat(args) => {
            let mut words = vec!["stat".to_string()];
            words.extend(args.iter().cloned());
            match conn.command(&words) {
                Ok((st, body)) if ok(st) => {
                    let _ = io::stdout().lock().write_all(body.as_bytes());
                    0
                }
                Ok((st, body)) => {
                    report_failure(st, &body);
                    1
                }
                Err(e) => comms(e),
            }
        }
        Mode::Stdin => run_stdin(&mut conn, req),
    }
}

/// How often `log` asks for new lines when the last answer was not full.
const LOG_POLL: Duration = Duration::from_millis(200);
/// What one `log.read` returns at most (the server's limit).
const LOG_BATCH: usize = 1000;

/// One `log.read` after `after` (filtered by `tags`): (sequence number, line) pairs.
fn log_batch(conn: &mut Conn, tags: &[String], after: u64) -> Result<Vec<(u64, String)>, String> {
    let mut words = vec!["log.read".to_string()];
    for t in tags {
        words.push("-i".into());
        words.push(t.clone());
    }
    words.push(after.to_string());
    match conn.command(&words) {
        Ok((st, body)) if ok(st) => Ok(body
            .lines()
            .filter_map(|l| {
                let (seq, line) = l.split_once(' ')?;
                Some((seq.parse().ok()?, line.to_string()))
            })
            .collect()),
        Ok((st, body)) => Err(format!(
            "{body}
Command failed with error code {st}"
        )),
        Err(e) => Err(format!("CLI communication error: {e}")),
    }
}

/// `ringcache log`: prints event lines as `log.read` hands them out. Without `-d` it first
/// skips what is already kept (as varnishlog starts at the head of the log), then polls.
fn run_log(conn: &mut Conn, req: &Request, tags: &[String], dump: bool) -> i32 {
    let fail = |e: String| {
        eprintln!("ringcache: {e} ({})", req.target);
        2
    };
    let mut after = 0u64;
    if !dump {
        // Find the newest sequence number (unfiltered, so every event counts).
        loop {
            match log_batch(conn, &[], after) {
                Ok(b) => {
                    if let Some((seq, _)) = b.last() {
                        after = *seq;
                    }
                    if b.len() < LOG_BATCH {
                        break;
                    }
                }
                Err(e) => return fail(e),
            }
        }
    }
    loop {
        let batch = match log_batch(conn, tags, after) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        let full = batch.len() >= LOG_BATCH;
        if !batch.is_empty() {
            let mut out = io::stdout().lock();
            for (seq, line) in &batch {
                after = *seq;
                if writeln!(out, "{line}").is_err() {
                    return 0;
                }
            }
            if out.flush().is_err() {
                return 0;
            }
        }
        if dump && !full {
            return 0;
        }
        if !full {
            std::thread::sleep(LOG_POLL);
        }
    }
}

/// One command per line of standard input; blank lines are skipped, a `<< NONCE` line takes
/// the following lines up to one ending in NONCE. Exit 1 if any command failed.
fn run_stdin(conn: &mut Conn, req: &Request) -> i32 {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut code = 0;
    while let Some(line) = lines.next() {
        let Ok(mut text) = line else {
            break;
        };
        if text.trim().is_empty() {
            continue;
        }
        let words = protocol::split_args(text.as_bytes()).unwrap_or_default();
        let is_quit = words.first().is_some_and(|w| w == b"quit");
        if words.len() >= 2 && words[words.len() - 2] == b"<<" {
            let nonce = String::from_utf8_lossy(&words[words.len() - 1]).into_owned();
            text.push('\n');
            for more in lines.by_ref() {
                let Ok(more) = more else { break };
                let done = !nonce.is_empty() && more.ends_with(&nonce);
                text.push_str(&more);
                text.push('\n');
                if done {
                    break;
                }
            }
        } else {
            text.push('\n');
        }
        match conn.raw(&text) {
            Ok((st, body)) if ok(st) => {
                let _ = writeln!(io::stdout().lock(), "{body}");
            }
            Ok((st, _)) if st == status::CLOSE && is_quit => return code,
            Ok((st, body)) => {
                report_failure(st, &body);
                code = 1;
                if st == status::CLOSE {
                    return code;
                }
            }
            Err(e) => {
                eprintln!("ringcache: CLI communication error ({}): {e}", req.target);
                return 2;
            }
        }
    }
    code
}
