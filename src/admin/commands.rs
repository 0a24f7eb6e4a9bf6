//! The admin commands and their dispatch, as Varnish's `cls_exec`/`cls_dispatch` run them.
//!
//! Pure apart from the clock and the counter snapshot it is handed: a request's words (or its
//! split error) and the session state in, a [`Reply`] out. The texts, status codes, argument
//! count checks and the unauthenticated session's rules (only `auth`, `help`, `ping`, `quit`;
//! any failure closes) are Varnish 7.1's, checked against a running varnishd.
//!
//! The backend and VCL commands live in `backend` and `vcl_cmds` and reach the server through
//! `Context::control`; the output helpers they share with the JSON commands here (`Vsb`,
//! `vte`) are ports of Varnish's, so that column widths and JSON whitespace come out the same.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::protocol::{self, status, CHALLENGE_LEN};
use super::stat::{self, Filter};
use super::Control;
use super::{backend, ban_cmds, param_cmds, vcl_cmds};
use crate::stats::view::{self, Readings};
use crate::stats::C;

/// What the commands read; one per admin server, shared by its connections.
pub struct Context {
    /// Every counter (`MAIN.uptime` first), as `stat` prints them.
    pub counters: Readings,
    /// `-S`: read again at each `auth`, as Varnish does, so the secret can be rotated.
    pub secret: Option<PathBuf>,
    /// The server's control plane (backends, health, VCLs); `None` only in unit tests of the
    /// commands that do not need it.
    pub control: Option<Arc<dyn Control>>,
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    authenticated: bool,
    challenge: [u8; CHALLENGE_LEN],
    peer: String,
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Close the connection after sending this.
    pub close: bool,
}

const UNKNOWN_REQUEST: &str = "Unknown request.\nType 'help' for more info.\n";

type Handler = fn(&Context, &mut Session, &[String]) -> (u16, String);

struct Command {
    name: &'static str,
    syntax: &'static str,
    help: &'static str,
    min: usize,
    /// `None`: any number.
    max: Option<usize>,
    /// Usable before authentication.
    open: bool,
    flags: &'static str,
    func: Handler,
    json: Option<Handler>,
}

/// Every command, sorted by name (the order `help` lists them in).
static COMMANDS: &[Command] = &[
    Command {
        name: "auth",
        syntax: "auth <response>",
        help: "Authenticate.",
        min: 1,
        max: Some(1),
        open: true,
        flags: "",
        func: cmd_auth,
        json: None,
    },
    Command {
        name: "backend.list",
        syntax: "backend.list [-j] [-p] [<backend_pattern>]",
        help: "List backends.\n",
        min: 0,
        max: Some(2),
        open: false,
        flags: "",
        func: backend::cmd_backend_list,
        json: Some(backend::cmd_backend_list),
    },
    Command {
        name: "backend.set_health",
        syntax: "backend.set_health <backend_pattern> [auto|healthy|sick]",
        help: "Set health status of backend(s) matching <backend_pattern>.",
        min: 2,
        max: Some(2),
        open: false,
        flags: "",
        func: backend::cmd_backend_set_health,
        json: None,
    },
    Command {
        name: "ban",
        syntax: "ban <field> <operator> <arg> [&& <field> <oper> <arg> ...]",
        help: "Mark obsolete all objects where all the conditions match.",
        min: 3,
        max: None,
        open: false,
        flags: "",
        func: ban_cmds::cmd_ban,
        json: None,
    },
    Command {
        name: "ban.list",
        syntax: "ban.list [-j]",
        help: "List the active bans.",
        min: 0,
        max: Some(0),
        open: false,
        flags: "",
        func: ban_cmds::cmd_ban_list,
        json: Some(ban_cmds::cmd_ban_list_json),
    },
    Command {
        name: "banner",
        syntax: "banner",
        help: "Print welcome banner.",
        min: 0,
        max: Some(0),
        open: false,
        flags: "",
        func: cmd_banner,
        json: None,
    },
    Command {
        name: "help",
        syntax: "help [-j|<command>]",
        help: "Show command/protocol help.",
        min: 0,
        max: Some(1),
        open: true,
        flags: "i",
        func: cmd_help,
        json: Some(cmd_help_json),
    },
    Command {
        name: "log.read",
        syntax: "log.read [-i <tag>]... [<after>]",
        help: "Show logged events (Backend_health, VCL_Event, FetchError, VCL_Error, VCL_Log) after sequence number <after> (ringcache extension).",
        min: 0,
        max: None,
        open: false,
        flags: "",
        func: cmd_log_read,
        json: None,
    },
    Command {
        name: "param.reset",
        syntax: "param.reset <param>",
        help: "Reset parameter to default value.",
        min: 1,
        max: Some(1),
        open: false,
        flags: "",
        func: param_cmds::cmd_param_reset,
        json: None,
    },
    Command {
        name: "param.set",
        syntax: "param.set [-j] <param> <value>",
        help: "Set parameter value.",
        min: 2,
        max: Some(2),
        open: false,
        flags: "",
        func: param_cmds::cmd_param_set,
        json: Some(param_cmds::cmd_param_set_json),
    },
    Command {
        name: "param.show",
        syntax: "param.show [-l|-j] [<param>|changed]",
        help: "Show parameters and their values.",
        min: 0,
        max: Some(2),
        open: false,
        flags: "",
        func: param_cmds::cmd_param_show,
        json: Some(param_cmds::cmd_param_show_json),
    },
    Command {
        name: "ping",
        syntax: "ping [-j] [<timestamp>]",
        help: "Keep connection alive.",
        min: 0,
        max: Some(1),
        open: true,
        flags: "i",
        func: cmd_ping,
        json: Some(cmd_ping_json),
    },
    Command {
        name: "poller.stats",
        syntax: "poller.stats [-r]",
        help: "Show the poller's probe count and lateness; -r resets them (ringcache extension).",
        min: 0,
        max: Some(1),
        open: false,
        flags: "",
        func: cmd_poller_stats,
        json: None,
    },
    Command {
        name: "quit",
        syntax: "quit",
        help: "Close connection.",
        min: 0,
        max: Some(0),
        open: true,
        flags: "",
        func: cmd_quit,
        json: None,
    },
    Command {
        name: "stat",
        syntax: "stat [-1|-j] [-f <glob>]...",
        help: "Show counters as varnishstat -1 (default) or -j would (ringcache extension).",
        min: 0,
        max: None,
        open: false,
        flags: "",
        func: cmd_stat,
        json: Some(cmd_stat),
    },
    Command {
        name: "status",
        syntax: "status [-j]",
        help: "Check status of Varnish cache process.",
        min: 0,
        max: Some(0),
        open: false,
        flags: "",
        func: cmd_status,
        json: Some(cmd_status_json),
    },
    Command {
        name: "vcl.discard",
        syntax: "vcl.discard <name_pattern>...",
        help: "Unload the named configurations (when possible).",
        min: 1,
        max: None,
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_discard,
        json: None,
    },
    Command {
        name: "vcl.inline",
        syntax: "vcl.inline <configname> <quoted_VCLstring> [auto|cold|warm]",
        help: "Compile and load the VCL data under the name provided.",
        min: 2,
        max: Some(3),
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_inline,
        json: None,
    },
    Command {
        name: "vcl.list",
        syntax: "vcl.list [-j]",
        help: "List all loaded configuration.",
        min: 0,
        max: Some(0),
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_list,
        json: Some(vcl_cmds::cmd_vcl_list_json),
    },
    Command {
        name: "vcl.load",
        syntax: "vcl.load <configname> <filename> [auto|cold|warm]",
        help: "Compile and load the VCL file under the name provided.",
        min: 2,
        max: Some(3),
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_load,
        json: None,
    },
    Command {
        name: "vcl.show",
        syntax: "vcl.show [-v] [<configname>]",
        help: "Display the source code for the specified configuration.",
        min: 0,
        max: Some(2),
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_show,
        json: None,
    },
    Command {
        name: "vcl.use",
        syntax: "vcl.use <configname|label>",
        help: "Switch to the named configuration immediately.",
        min: 1,
        max: Some(1),
        open: false,
        flags: "",
        func: vcl_cmds::cmd_vcl_use,
        json: None,
    },
];

/// The banner's second block: `uname` fields and what ringcache runs with.
fn ident() -> String {
    let read = |p: &str, default: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    format!(
        "{},{},{},-smalloc,-hringcache",
        read("/proc/sys/kernel/ostype", "Linux"),
        read("/proc/sys/kernel/osrelease", "unknown"),
        std::env::consts::ARCH
    )
}

/// The welcome text (`mcf_banner`); "Varnish Cache CLI 1.0" is the protocol's name and stays.
pub fn banner() -> String {
    format!(
        "-----------------------------\n\
         Varnish Cache CLI 1.0\n\
         -----------------------------\n\
         {}\n\
         ringcache {}\n\
         \n\
         Type 'help' for command list.\n\
         Type 'quit' to close CLI session.\n",
        ident(),
        env!("CARGO_PKG_VERSION")
    )
}

/// 32 random letters a-z from the kernel's random source.
fn new_challenge() -> std::io::Result<[u8; CHALLENGE_LEN]> {
    use std::io::Read;
    let mut out = [0u8; CHALLENGE_LEN];
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut n = 0;
    let mut buf = [0u8; 64];
    while n < CHALLENGE_LEN {
        f.read_exact(&mut buf)?;
        // Rejection sampling keeps every letter equally likely (234 = 9 * 26).
        for &b in buf.iter().filter(|&&b| b < 234) {
            if n == CHALLENGE_LEN {
                break;
            }
            out[n] = b'a' + b % 26;
            n += 1;
        }
    }
    Ok(out)
}

impl Session {
    /// A new connection from `peer` and what to send it first: the banner (200), or with a
    /// secret configured the challenge (107).
    pub fn open(ctx: &Context, peer: String) -> std::io::Result<(Session, Reply)> {
        let mut s = Session {
            authenticated: ctx.secret.is_none(),
            challenge: [0; CHALLENGE_LEN],
            peer,
        };
        let reply = if s.authenticated {
            Reply {
                status: status::OK,
                body: banner(),
                close: false,
            }
        } else {
            s.challenge = new_challenge()?;
            let mut body = String::from_utf8_lossy(&s.challenge).into_owned();
            body.push_str("\n\nAuthentication required.\n");
            Reply {
                status: status::AUTH,
                body,
                close: false,
            }
        };
        Ok((s, reply))
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
}

/// Runs one request (`cls_exec`).
pub fn execute(
    ctx: &Context,
    sess: &mut Session,
    request: Result<Vec<Vec<u8>>, &'static str>,
) -> Reply {
    let mut st = status::UNKNOWN;
    let mut body = String::from(UNKNOWN_REQUEST);
    match request {
        Err(e) => {
            body.push_str(&format!("Syntax Error: {e}\n"));
            st = status::SYNTAX;
        }
        Ok(words) if words.is_empty() => {
            body.push_str("Empty CLI command.\n");
            st = status::SYNTAX;
        }
        Ok(words) => {
            let av: Vec<String> = words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            let first = av[0].bytes().next().unwrap_or(0);
            if first.is_ascii_uppercase() {
                body.push_str("all commands are in lower-case.\n");
            } else if first.is_ascii_lowercase() {
                let found = COMMANDS
                    .iter()
                    .find(|c| c.name == av[0] && (c.open || sess.authenticated));
                if let Some(cmd) = found {
                    (st, body) = dispatch(ctx, sess, cmd, &av);
                }
            }
        }
    }
    // An unauthenticated session is closed at the least provocation (as Varnish).
    let close = st == status::CLOSE || (!sess.authenticated && st != status::OK);
    Reply {
        status: st,
        body,
        close,
    }
}

/// Argument-count and `-j` checks, then the handler (`cls_dispatch`).
fn dispatch(ctx: &Context, sess: &mut Session, cmd: &Command, av: &[String]) -> (u16, String) {
    let nargs = av.len() - 1;
    let json = nargs >= 1 && av[1] == "-j";
    let func = match (json, cmd.json) {
        (true, Some(f)) => f,
        (true, None) => return (status::UNIMPL, "JSON unimplemented\n".into()),
        (false, _) => cmd.func,
    };
    let j = usize::from(json);
    if nargs < cmd.min + j {
        return (status::TOOFEW, "Too few parameters\n".into());
    }
    if cmd.max.is_some_and(|max| nargs > max + j) {
        return (status::TOOMANY, "Too many parameters\n".into());
    }
    func(ctx, sess, av)
}

fn now_real() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `VCLI_JSON_begin(cli, 2, av)`: `[ 2, [args...], now`.
fn json_begin(av: &[String]) -> String {
    json_begin_at(2, av, now_real())
}

/// `VCLI_JSON_begin(cli, version, av)` at time `now`: `[ version, [args...], now` (the caller
/// then indents by 2, as `VCLI_JSON_begin` does).
pub(super) fn json_begin_at(version: u32, av: &[String], now: f64) -> String {
    let args: Vec<String> = av.iter().map(|a| stat::json_str(a)).collect();
    format!("[ {version}, [{}], {now:.3}", args.join(", "))
}

/// The clock the JSON answers stamp (`VTIM_real`).
pub(super) fn now() -> f64 {
    now_real()
}

/// The control plane, or the answer to give without one (unit tests build a `Context` with
/// `control: None`).
pub(super) fn control(ctx: &Context) -> Result<&Arc<dyn Control>, (u16, String)> {
    ctx.control.as_ref().ok_or_else(|| {
        (
            status::CANT,
            "No control plane: backend and VCL commands are unavailable".into(),
        )
    })
}

/// Varnish's `struct vsb` as the CLI answers use it: a string with a pending indentation
/// (`VSB_indent`). The indentation is written when text is added at the start of a line:
/// `printf` checks once, before its whole text (as `VSB_printf`), `cat` before each line of
/// its text (as `VSB_cat`). Porting the C call sequence onto this reproduces Varnish's JSON
/// whitespace exactly, odd spots included (`vcl.list -j` closes its objects in column 0).
#[derive(Debug, Default)]
pub(super) struct Vsb {
    buf: String,
    indent: usize,
}

impl Vsb {
    pub(super) fn new() -> Vsb {
        Vsb::default()
    }

    fn pad(&mut self) {
        if self.indent > 0 && (self.buf.is_empty() || self.buf.ends_with('\n')) {
            self.buf.extend(std::iter::repeat_n(' ', self.indent));
        }
    }

    /// `VSB_printf`: indentation once (even for an empty text), then the text as is.
    pub(super) fn printf(&mut self, s: &str) {
        self.pad();
        self.buf.push_str(s);
    }

    /// `VSB_cat`: each line of `s` is added separately, so each gets the indentation.
    pub(super) fn cat(&mut self, s: &str) {
        for chunk in s.split_inclusive('\n') {
            self.pad();
            self.buf.push_str(chunk);
        }
    }

    /// `VSB_indent`: a change that would go below zero is ignored.
    pub(super) fn indent(&mut self, delta: isize) {
        if let Some(i) = self.indent.checked_add_signed(delta) {
            self.indent = i;
        }
    }

    pub(super) fn into_string(self) -> String {
        self.buf
    }
}

/// `VCLI_VTE(cli, &vsb, width)`: lays tab-separated text out in columns of dynamic width.
///
/// A port of `lib/libvarnish/vte.c` (7.1), quirks included, since scripts parse the result:
/// a column's width counts the tab before it (every column but the first is one wider than
/// its widest cell); lines starting with a space are copied as they are and count for no
/// column; the gap added to every column is `(width - longest line) / number of columns`,
/// held between 1 and 3; the last cell of a line is not padded.
pub(super) fn vte(src: &str, width: usize) -> String {
    let s = src.as_bytes();
    let mut w_col: Vec<usize> = Vec::new();
    let (mut n_col, mut w_ln, mut cc, mut wc, mut wl) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < s.len() {
        if wl == 0 && s[i] == b' ' {
            while i + 1 < s.len() && s[i] != b'\n' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if s[i] == b'\t' || s[i] == b'\n' {
            if w_col.len() <= cc {
                w_col.resize(cc + 1, 0);
            }
            w_col[cc] = w_col[cc].max(wc);
            cc += 1;
            wc = 0;
        }
        if s[i] == b'\n' {
            n_col = n_col.max(cc);
            w_ln = w_ln.max(wl);
            cc = 0;
            wc = 0;
            wl = 0;
        } else {
            wc += 1;
            wl += 1;
        }
        i += 1;
    }
    if n_col == 0 {
        return String::new();
    }
    let nsp = ((width as i64 - w_ln as i64) / n_col as i64).clamp(1, 3) as usize;
    let mut out = Vec::with_capacity(s.len() * 2);
    let (mut cc, mut wc) = (0usize, 0usize);
    let mut i = 0;
    while i < s.len() {
        if wc == 0 && cc == 0 && s[i] == b' ' {
            while i + 1 < s.len() {
                out.push(s[i]);
                if s[i] == b'\n' {
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        match s[i] {
            b'\t' => {
                let target = w_col.get(cc).copied().unwrap_or(0) + nsp;
                while wc < target {
                    out.push(b' ');
                    wc += 1;
                }
                cc += 1;
                wc = 0;
            }
            b'\n' => {
                out.push(b'\n');
                cc = 0;
                wc = 0;
            }
            c => {
                out.push(c);
                wc += 1;
            }
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cmd_auth(ctx: &Context, sess: &mut Session, av: &[String]) -> (u16, String) {
    let Some(path) = &ctx.secret else {
        return (status::CANT, "Secret file not configured\n".into());
    };
    let secret = match std::fs::read(path) {
        Ok(s) => s,
        Err(e) => return (status::CANT, format!("Cannot open secret file ({e})\n")),
    };
    let want = protocol::auth_response(&sess.challenge, &secret);
    let got = av[1].to_ascii_lowercase();
    // Constant-time comparison of the two hex strings.
    let same = want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        eprintln!(
            "ringcache: admin: authentication failure from {}",
            sess.peer
        );
        return (status::CLOSE, String::new());
    }
    sess.authenticated = true;
    sess.challenge = [0; CHALLENGE_LEN];
    (status::OK, banner())
}

fn cmd_banner(_: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    (status::OK, banner())
}

fn visible(sess: &Session) -> impl Iterator<Item = &'static Command> + '_ {
    COMMANDS
        .iter()
        .filter(move |c| c.open || sess.authenticated)
}

fn cmd_help(_: &Context, sess: &mut Session, av: &[String]) -> (u16, String) {
    let mut filter = 1;
    let mut rest = &av[1..];
    while let Some(flag) = rest.first().filter(|a| a.starts_with('-')) {
        match flag.as_str() {
            "-a" => filter = 3,
            "-d" => filter = 2,
            _ => return (status::UNKNOWN, "Unknown flag\n".into()),
        }
        rest = &rest[1..];
    }
    let mut out = String::new();
    match rest.first() {
        Some(name) => match visible(sess).find(|c| c.name == name.as_str()) {
            Some(c) => (status::OK, format!("{}\n{}\n", c.syntax, c.help)),
            None => (status::UNKNOWN, UNKNOWN_REQUEST.into()),
        },
        None => {
            for c in visible(sess) {
                let d = if c.flags.contains('d') { 2 } else { 1 };
                if filter & d != 0 {
                    out.push_str(c.syntax);
                    out.push('\n');
                }
            }
            (status::OK, out)
        }
    }
}

fn cmd_help_json(_: &Context, sess: &mut Session, av: &[String]) -> (u16, String) {
    let mut out = json_begin(av);
    for c in visible(sess) {
        out.push_str(&format!(
            ",\n  {{\n    \"request\": {},\n    \"syntax\": {},\n    \"help\": {},\n    \
             \"minarg\": {},\n    \"maxarg\": {},\n    \"flags\": {},\n    \"json\": {}\n  }}",
            stat::json_str(c.name),
            stat::json_str(c.syntax),
            stat::json_str(c.help),
            c.min,
            c.max.map_or(-1, |m| m as i64),
            stat::json_str(c.flags),
            c.json.is_some()
        ));
    }
    out.push_str("\n]\n");
    (status::OK, out)
}

fn cmd_ping(_: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    (status::OK, format!("PONG {} 1.0", now_real() as u64))
}

fn cmd_ping_json(_: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    (status::OK, format!("{}, \"PONG\"\n\n]\n", json_begin(av)))
}

/// Most events one `log.read` returns.
const LOG_READ_MAX: usize = 1000;

/// `log.read [-i <tag>]... [<after>]`: the events kept in the control plane's log with a
/// sequence number above `after` (0: all kept), oldest first, one per line as `<seq> <line>`;
/// `-i` keeps only those tags. A reader polls with the last number it saw.
fn cmd_log_read(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let mut tags: Vec<&str> = Vec::new();
    let mut after = 0u64;
    let mut args = av[1..].iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-i" => match args.next() {
                Some(t) => tags.push(t),
                None => return (status::PARAM, "Option -i needs a <tag>\n".into()),
            },
            s => match s.parse() {
                Ok(n) => after = n,
                Err(_) => {
                    return (
                        status::PARAM,
                        format!("Unknown argument \"{s}\" (log.read [-i <tag>]... [<after>])\n"),
                    )
                }
            },
        }
    }
    let c = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut out = String::new();
    // Filter first, then cut: a reader of one tag is never starved by other tags' events.
    let kept = c.events(after, crate::health::EVENTS_KEPT);
    let wanted = kept
        .iter()
        .filter(|(_, tag, _)| tags.is_empty() || tags.iter().any(|t| t.eq_ignore_ascii_case(tag)));
    for (seq, _, line) in wanted.take(LOG_READ_MAX) {
        out.push_str(&format!("{seq} {line}\n"));
    }
    (status::OK, out)
}

/// `poller.stats [-r]`: how many probes started and how late (start minus due time).
fn cmd_poller_stats(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let reset = match av.get(1).map(String::as_str) {
        None => false,
        Some("-r") => true,
        Some(other) => {
            return (
                status::PARAM,
                format!("Unknown option \"{other}\" (poller.stats [-r])\n"),
            )
        }
    };
    let c = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let s = c.poller_stats(reset);
    (
        status::OK,
        format!(
            "probes {}\nlateness_p50_us {}\nlateness_p99_us {}\nlateness_max_us {}\n",
            s.probes, s.p50_us, s.p99_us, s.max_us
        ),
    )
}

fn cmd_quit(_: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    (status::CLOSE, "Closing CLI connection".into())
}

fn cmd_status(_: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    (status::OK, "Child in state running".into())
}

fn cmd_status_json(_: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    (status::OK, format!("{}, \"running\"\n]\n", json_begin(av)))
}

/// `stat [-1|-j] [-f <glob>]...`: the counters as varnishstat prints them.
fn cmd_stat(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let mut json = false;
    let mut filter = Filter::default();
    let mut args = av[1..].iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-1" => {}
            "-j" => json = true,
            "-f" => match args.next() {
                Some(glob) => filter.add(glob),
                None => return (status::PARAM, "Option -f needs a <glob>\n".into()),
            },
            s if s.starts_with("-f") => filter.add(&s[2..]),
            s => {
                return (
                    status::PARAM,
                    format!("Unknown option \"{s}\" (stat [-1|-j] [-f <glob>]...)\n"),
                )
            }
        }
    }
    let mut rows = (ctx.counters)();
    let uptime = view::main_value(&rows, C::uptime).unwrap_or(0);
    rows.retain(|r| filter.keep(&r.name()));
    let body = if json {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        stat::format_json(&rows, &stat::local_timestamp(now))
    } else {
        stat::format_once(&rows, uptime)
    };
    (status::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Stats, C};
    use std::sync::Arc;

    fn ctx(secret: Option<PathBuf>) -> (Context, Arc<Stats>) {
        let stats = Arc::new(Stats::new(2));
        let s2 = stats.clone();
        (
            Context {
                counters: Arc::new(move || {
                    crate::stats::view::collect(&s2, &crate::stats::view::Plane::default())
                }),
                secret,
                control: None,
            },
            stats,
        )
    }

    fn run(ctx: &Context, sess: &mut Session, line: &str) -> Reply {
        execute(ctx, sess, protocol::split_args(line.as_bytes()))
    }

    fn open(ctx: &Context) -> (Session, Reply) {
        Session::open(ctx, "test".into()).expect("session")
    }

    #[test]
    fn banner_and_basic_commands() {
        let (c, _) = ctx(None);
        let (mut s, first) = open(&c);
        assert_eq!(first.status, 200);
        assert!(first.body.starts_with(
            "-----------------------------\nVarnish Cache CLI 1.0\n-----------------------------\n"
        ));
        assert!(first
            .body
            .contains(&format!("\nringcache {}\n\n", env!("CARGO_PKG_VERSION"))));
        assert!(first
            .body
            .ends_with("\n\nType 'help' for command list.\nType 'quit' to close CLI session.\n"));
        let r = run(&c, &mut s, "ping");
        assert_eq!(r.status, 200);
        assert!(
            r.body.starts_with("PONG ") && r.body.ends_with(" 1.0"),
            "{r:?}"
        );
        assert_eq!(run(&c, &mut s, "status").body, "Child in state running");
        assert_eq!(run(&c, &mut s, "banner").body, first.body);
        let q = run(&c, &mut s, "quit");
        assert_eq!(
            (q.status, q.body.as_str(), q.close),
            (500, "Closing CLI connection", true)
        );
    }

    #[test]
    fn errors_use_varnish_texts() {
        let (c, _) = ctx(None);
        let (mut s, _) = open(&c);
        let check = |s: &mut Session, line: &str, st: u16, body: &str| {
            let r = run(&c, s, line);
            assert_eq!((r.status, r.body.as_str()), (st, body), "{line}");
            assert!(!r.close, "{line}");
        };
        check(&mut s, "nosuch", 101, UNKNOWN_REQUEST);
        check(
            &mut s,
            "Nosuch",
            101,
            "Unknown request.\nType 'help' for more info.\nall commands are in lower-case.\n",
        );
        check(
            &mut s,
            "\"ping",
            100,
            "Unknown request.\nType 'help' for more info.\nSyntax Error: Missing '\"'\n",
        );
        check(&mut s, "ping a b", 105, "Too many parameters\n");
        check(&mut s, "status x", 105, "Too many parameters\n");
        check(&mut s, "banner -j", 102, "JSON unimplemented\n");
        check(&mut s, "help -x", 101, "Unknown flag\n");
        check(&mut s, "help nosuch", 101, UNKNOWN_REQUEST);
        check(
            &mut s,
            "help ping",
            200,
            "ping [-j] [<timestamp>]\nKeep connection alive.\n",
        );
        check(
            &mut s,
            "stat -x",
            106,
            "Unknown option \"-x\" (stat [-1|-j] [-f <glob>]...)\n",
        );
        check(&mut s, "stat -f", 106, "Option -f needs a <glob>\n");
        check(&mut s, "auth abc", 300, "Secret file not configured\n");
        let r = execute(&c, &mut s, Ok(vec![]));
        assert_eq!(
            (r.status, r.body.as_str()),
            (
                100,
                "Unknown request.\nType 'help' for more info.\nEmpty CLI command.\n"
            )
        );
        let r = run(&c, &mut s, "help");
        assert_eq!(
            r.body,
            "auth <response>\nbackend.list [-j] [-p] [<backend_pattern>]\n\
             backend.set_health <backend_pattern> [auto|healthy|sick]\n\
             ban <field> <operator> <arg> [&& <field> <oper> <arg> ...]\nban.list [-j]\nbanner\n\
             help [-j|<command>]\nlog.read [-i <tag>]... [<after>]\n\
             param.reset <param>\nparam.set [-j] <param> <value>\n\
             param.show [-l|-j] [<param>|changed]\n\
             ping [-j] [<timestamp>]\npoller.stats [-r]\nquit\n\
             stat [-1|-j] [-f <glob>]...\nstatus [-j]\nvcl.discard <name_pattern>...\n\
             vcl.inline <configname> <quoted_VCLstring> [auto|cold|warm]\nvcl.list [-j]\n\
             vcl.load <configname> <filename> [auto|cold|warm]\n\
             vcl.show [-v] [<configname>]\nvcl.use <configname|label>\n"
        );
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn backend_and_vcl_argument_errors() {
        // Checked before the control plane is asked, so a context without one answers them;
        // texts and codes as varnishd 7.1.1 gives them.
        let (c, _) = ctx(None);
        let (mut s, _) = open(&c);
        let check = |s: &mut Session, line: &str, st: u16, body: &str| {
            let r = run(&c, s, line);
            assert_eq!((r.status, r.body.as_str()), (st, body), "{line}");
        };
        check(&mut s, "backend.list -x", 106, "Invalid flag x");
        check(&mut s, "backend.list -pq", 106, "Invalid flag q");
        check(&mut s, "backend.list a b", 106, "Too many arguments");
        check(&mut s, "backend.list -j a b", 106, "Too many arguments");
        check(
            &mut s,
            "backend.list -p -j s1",
            105,
            "Too many parameters\n",
        );
        check(&mut s, "backend.list a b c", 105, "Too many parameters\n");
        check(&mut s, "backend.set_health", 104, "Too few parameters\n");
        check(
            &mut s,
            "backend.set_health a b c",
            105,
            "Too many parameters\n",
        );
        check(
            &mut s,
            "backend.set_health s1 foo",
            106,
            "Invalid state foo",
        );
        check(
            &mut s,
            "backend.set_health s1 deleted",
            106,
            "Invalid state deleted",
        );
        check(
            &mut s,
            "backend.set_health -j s1 sick",
            102,
            "JSON unimplemented\n",
        );
        check(&mut s, "vcl.load", 104, "Too few parameters\n");
        check(&mut s, "vcl.load a b c d", 105, "Too many parameters\n");
        check(
            &mut s,
            "vcl.load 4x /f",
            106,
            "Illegal character in VCL name ('4')",
        );
        check(&mut s, "vcl.inline x", 104, "Too few parameters\n");
        check(
            &mut s,
            "vcl.inline a.b x",
            106,
            "Illegal character in VCL name ('.')",
        );
        check(&mut s, "vcl.use", 104, "Too few parameters\n");
        check(
            &mut s,
            "vcl.use 4x",
            106,
            "Illegal character in VCL name ('4')",
        );
        check(&mut s, "vcl.use -j x", 102, "JSON unimplemented\n");
        check(&mut s, "vcl.discard", 104, "Too few parameters\n");
        check(&mut s, "vcl.list x", 105, "Too many parameters\n");
        check(&mut s, "vcl.list -j -j", 105, "Too many parameters\n");
        check(&mut s, "vcl.show a b", 106, "Too many parameters: 'b'");
        check(&mut s, "vcl.show -v a b", 105, "Too many parameters\n");
        check(&mut s, "vcl.show -j x", 102, "JSON unimplemented\n");
        check(
            &mut s,
            "help backend.list",
            200,
            "backend.list [-j] [-p] [<backend_pattern>]\nList backends.\n\n",
        );
        // Well-formed, but nothing to ask: 300.
        for line in [
            "backend.list",
            "backend.list -j",
            "backend.set_health s1 sick",
            "vcl.load v2 /f",
            "vcl.use v2",
            "vcl.discard v2",
            "vcl.list",
            "vcl.list -j",
            "vcl.show",
        ] {
            assert_eq!(run(&c, &mut s, line).status, 300, "{line}");
        }
    }

    #[test]
    fn vte_layout() {
        // Column widths count the tab before them; lines starting with a space pass through;
        // gaps are (80 - longest line) / columns, between 1 and 3.
        assert_eq!(
            vte("a\tbb\tc\nddd\te\tf\n", 80),
            "a     bb    c\nddd   e     f\n"
        );
        assert_eq!(vte(" x\ty\na\tb\n", 80), " x\ty\na   b\n");
        let long = format!("{}\tb\n", "a".repeat(100));
        assert_eq!(vte(&long, 80), format!("{} b\n", "a".repeat(100)));
        assert_eq!(vte("", 80), "");
        assert_eq!(vte("no newline", 80), "");
    }

    #[test]
    fn vsb_indents_like_varnish() {
        let mut v = Vsb::new();
        v.printf("[");
        v.indent(2);
        v.printf(",\n");
        v.printf("{\n"); // indented: at line start
        v.indent(2);
        v.cat("a\nb\n"); // each line indented
        v.printf("c\nd"); // once, at the start only
        v.indent(-2);
        v.printf("\n}");
        v.indent(-10); // below zero: ignored
        v.printf("\n");
        v.printf(""); // an empty printf still indents at a line start
        assert_eq!(v.into_string(), "[,\n  {\n    a\n    b\n    c\nd\n}\n  ");
    }

    #[test]
    fn json_variants() {
        let (c, _) = ctx(None);
        let (mut s, _) = open(&c);
        let r = run(&c, &mut s, "ping -j");
        assert!(
            r.body.starts_with("[ 2, [\"ping\", \"-j\"], "),
            "{}",
            r.body
        );
        assert!(r.body.ends_with(", \"PONG\"\n\n]\n"), "{}", r.body);
        let r = run(&c, &mut s, "status -j");
        assert!(r.body.ends_with(", \"running\"\n]\n"), "{}", r.body);
        let r = run(&c, &mut s, "help -j");
        assert!(r.body.contains(",\n  {\n    \"request\": \"auth\",\n    \"syntax\": \"auth <response>\",\n    \"help\": \"Authenticate.\",\n    \"minarg\": 1,\n    \"maxarg\": 1,\n    \"flags\": \"\",\n    \"json\": false\n  }"), "{}", r.body);
        assert!(r.body.contains("\"maxarg\": -1,"));
        assert!(r.body.ends_with("  }\n]\n"));
    }

    #[test]
    fn authentication() {
        let dir = std::env::temp_dir().join(format!("ringcache-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("secret");
        std::fs::write(&path, b"sekrit\n").expect("write");
        let (c, _) = ctx(Some(path.clone()));
        let (mut s, first) = open(&c);
        assert_eq!(first.status, 107);
        assert_eq!(first.body.len(), 59);
        assert!(first.body.ends_with("\n\nAuthentication required.\n"));
        let challenge = &first.body.as_bytes()[..32];
        assert!(challenge.iter().all(|b| b.is_ascii_lowercase()));
        // Before auth: ping and help work, other commands are unknown and close.
        assert_eq!(run(&c, &mut s, "ping").status, 200);
        assert_eq!(
            run(&c, &mut s, "help").body,
            "auth <response>\nhelp [-j|<command>]\nping [-j] [<timestamp>]\nquit\n"
        );
        let r = run(&c, &mut s, "status");
        assert_eq!((r.status, r.close), (101, true));
        // Good answer (upper case accepted, as strcasecmp).
        let answer = protocol::auth_response(challenge, b"sekrit\n").to_ascii_uppercase();
        let r = run(&c, &mut s, &format!("auth {answer}"));
        assert_eq!((r.status, r.close), (200, false));
        assert_eq!(r.body, banner());
        assert!(s.authenticated());
        assert_eq!(run(&c, &mut s, "status").status, 200);
        // Wrong answer: 500, empty body, close.
        let (mut s, _) = open(&c);
        let r = run(&c, &mut s, &format!("auth {}", "0".repeat(64)));
        assert_eq!((r.status, r.body.as_str(), r.close), (500, "", true));
        // Too few arguments before auth: 104 and close.
        let (mut s, _) = open(&c);
        let r = run(&c, &mut s, "auth");
        assert_eq!((r.status, r.close), (104, true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stat_once_json_and_filters() {
        let (c, stats) = ctx(None);
        let (mut s, _) = open(&c);
        stats.shard(0).add(C::cache_hit, 2);
        stats.shard(1).inc(C::cache_hit);
        let r = run(&c, &mut s, "stat");
        assert_eq!(r.status, 200);
        let first = r.body.lines().next().unwrap_or("");
        assert!(first.starts_with("MAIN.uptime "), "{first}");
        let hit = r
            .body
            .lines()
            .find(|l| l.starts_with("MAIN.cache_hit "))
            .unwrap_or("");
        assert_eq!(hit.split_whitespace().nth(1), Some("3"));
        let r = run(
            &c,
            &mut s,
            "stat -1 -f MAIN.cache_hit* -f ^MAIN.cache_hitpass",
        );
        let names: Vec<&str> = r
            .body
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            names,
            vec![
                "MAIN.cache_hit",
                "MAIN.cache_hit_grace",
                "MAIN.cache_hitpass",
                "MAIN.cache_hitmiss"
            ]
        );
        let r = run(&c, &mut s, "stat -f ^MAIN.cache_hitpass -f MAIN.cache_hit*");
        let names: Vec<&str> = r
            .body
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            names,
            vec![
                "MAIN.cache_hit",
                "MAIN.cache_hit_grace",
                "MAIN.cache_hitmiss"
            ]
        );
        let r = run(&c, &mut s, "stat -j -fMAIN.cache_hit");
        assert!(r.body.contains("    \"MAIN.cache_hit\": {\n      \"description\": \"Cache hits (including grace hits)\",\n      \"flag\": \"c\",\n      \"format\": \"i\",\n      \"value\": 3\n    }\n  }\n}\n"), "{}", r.body);
        let r = run(
            &c,
            &mut s,
            "stat -j -f MAIN.s_resp_bodybytes -f MAIN.uptime",
        );
        assert!(r.body.contains("\"format\": \"B\""));
        assert!(r.body.contains("\"format\": \"d\""));
    }
}
