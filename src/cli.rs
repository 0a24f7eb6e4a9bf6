//! The command line: varnishd's flags, parsed into a `Config` the control plane boots from.
//!
//! Why here and not in `main`: flag parsing is pure (text in, `Config` or one-line error out), so
//! every accepted and refused form is unit-tested without starting a server. Names are varnishd's
//! (`-a -b -f -s -p -t -P -F -T -S`), so an operator's unit file and muscle memory carry over;
//! varnishd flags for things ringcache does not have (`-n -j -l -i -r`) are accepted with a
//! notice rather than refused.
//!
//! Three subcommands are the admin clients: `ringcache adm ...` (varnishadm), `ringcache stat
//! ...` (varnishstat through the admin port: -1, -j or a live view) and `ringcache log ...`
//! (the event stream, as varnishlog). They are recognised only as the first argument, which a
//! varnishd-style command line never starts with (its flags all start with `-`), and parsed by
//! hand with getopt's rules (options stop at the first word, so `adm param.set x -1` passes
//! `-1` through).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};

use crate::admin::client::{self, Mode};
use crate::admin::AdminConfig;
use crate::params::{self, Params};

/// Everything the control plane needs to boot.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen addresses (`-a`), each already resolved.
    pub listen: Vec<SocketAddr>,
    /// What to serve with: `-b` (a generated VCL with one backend) or `-f FILE.vcl`.
    pub vcl: VclSource,
    /// Cache storage size in bytes (`-s`), split over shards.
    pub storage_bytes: u64,
    pub params: Params,
    /// The admin listener (`-T`, `-S`).
    pub admin: AdminConfig,
    /// `-P FILE`: the process id is written there at boot and the file removed at exit.
    pub pid_file: Option<PathBuf>,
    /// varnishd flags accepted for a unit file's sake but meaningless here, one line each
    /// (printed once at boot).
    pub notices: Vec<String>,
}

/// The `-b` backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub host_header: String,
}

/// The VCL a server runs.
#[derive(Debug, Clone)]
pub enum VclSource {
    /// `-b`: one backend, Varnish's built-in VCL.
    Backend(Backend),
    /// `-f FILE`: compiled at boot.
    File(PathBuf),
}

/// What `main` should do.
#[derive(Debug)]
pub enum Action {
    Serve(Box<Config>),
    /// Print this text to stdout and exit 0.
    Print(String),
    /// Run the admin client (`ringcache adm ...`, `ringcache stat ...`).
    Admin(Box<client::Request>),
    /// `-C -f FILE`: compile the VCL, print warnings or errors, exit 0 or 1.
    CheckVcl(PathBuf),
}

/// A refused command line: one line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const DEFAULT_STORAGE: u64 = 256 << 20;

fn command() -> Command {
    Command::new("ringcache")
        .about("A thread-per-core io_uring caching HTTP/1.1 reverse proxy that speaks Varnish")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Print the version and exit"),
        )
        .arg(
            Arg::new("listen")
                .short('a')
                .value_name("ADDR:PORT")
                .action(ArgAction::Append)
                .help("Listen address (repeatable): 127.0.0.1:8080, [::1]:8080, :8080 (all IPv4 and IPv6 interfaces), host:port"),
        )
        .arg(
            Arg::new("backend")
                .short('b')
                .value_name("HOST:PORT")
                .help("The backend: 192.0.2.1:8080, [2001:db8::1]:8080 or a name resolving to one address (port defaults to 80)"),
        )
        .arg(
            Arg::new("vcl_file")
                .short('f')
                .value_name("FILE")
                .help("VCL file (Varnish 7.1 VCL 4.0/4.1); exclusive with -b"),
        )
        .arg(
            Arg::new("compile_only")
                .short('C')
                .action(ArgAction::SetTrue)
                .help("Compile the VCL given with -f, print its errors and warnings, and exit"),
        )
        .arg(
            Arg::new("storage")
                .short('s')
                .value_name("SIZE")
                .help("Cache storage: malloc,256m or 256m (default 256m), split over shards"),
        )
        .arg(
            Arg::new("param")
                .short('p')
                .value_name("NAME=VALUE")
                .action(ArgAction::Append)
                .help("Set a runtime parameter (repeatable); the list follows"),
        )
        .arg(
            Arg::new("admin_listen")
                .short('T')
                .value_name("ADDR:PORT")
                .help("Admin CLI listen address (default 127.0.0.1:0, a free loopback port; 'none' for no admin port)"),
        )
        .arg(
            Arg::new("secret")
                .short('S')
                .value_name("SECRETFILE")
                .help("Admin CLI secret file: clients must answer a challenge with it (varnishadm -S)"),
        )
        .arg(
            Arg::new("foreground")
                .short('F')
                .action(ArgAction::SetTrue)
                .help("Run in the foreground (accepted for varnishd compatibility; ringcache never daemonizes)"),
        )
        .arg(
            Arg::new("ttl")
                .short('t')
                .value_name("TTL")
                .help("Default TTL, as varnishd's -t: the same as -p default_ttl=TTL"),
        )
        .arg(
            Arg::new("pid_file")
                .short('P')
                .value_name("FILE")
                .help("Write the process id to FILE at boot (removed at exit)"),
        )
        .args(IGNORED.iter().map(|&(flag, id, value, why)| {
            Arg::new(id)
                .short(flag)
                .value_name(value)
                .action(ArgAction::Append)
                .help(format!("Accepted for varnishd compatibility and ignored: {why}"))
        }))
        .after_help(format!("{ADMIN_HELP}\n{}", params::help_text()))
}

/// varnishd flags that name things ringcache does not have: accepted so a varnishd command line
/// or unit file starts as is, with a one-line notice at boot (`-h`, varnishd's hash algorithm, stays
/// `--help`). (flag, id, value name, why.)
const IGNORED: &[(char, &str, &str, &str)] = &[
    (
        'n',
        "ignored_n",
        "DIR",
        "there is no shared-memory working directory; admin clients use -T",
    ),
    (
        'j',
        "ignored_j",
        "JAIL",
        "no privilege separation; run it under systemd's sandboxing",
    ),
    (
        'l',
        "ignored_l",
        "VSL",
        "there is no shared-memory log; events stream over the admin port",
    ),
    (
        'i',
        "ignored_i",
        "IDENTITY",
        "server.identity is the host name",
    ),
    (
        'r',
        "ignored_r",
        "PARAMS",
        "no parameter is read-only beyond the startup-only ones",
    ),
];

const ADMIN_HELP: &str = "\
Admin clients (see docs/admin.md and docs/counters.md):
  ringcache adm -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [COMMAND [ARG...]]
      Run one admin command (or one per line of stdin), as varnishadm.
  ringcache stat -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [-1|-j] [-f GLOB]...
      Print the counters as varnishstat -1 or -j; without either, a live view refreshed
      every second when standard output is a terminal (q or Ctrl-C quits), else -1.
  ringcache log -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [-d] [-i TAG]...
      Print event lines (Backend_health, VCL_Event, FetchError...) as they happen;
      -d prints the lines kept so far and exits.
";

const ADM_USAGE: &str =
    "Usage: ringcache adm -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [COMMAND [ARG...]]\n";
const STAT_USAGE: &str =
    "Usage: ringcache stat -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [-1|-j] [-f GLOB]...\n";
const LOG_USAGE: &str =
    "Usage: ringcache log -T ADDR:PORT [-S SECRETFILE] [-t SECONDS] [-d] [-i TAG]...\n";

/// Which admin client a subcommand runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Adm,
    Stat,
    Log,
}

/// Parses `args` (including the program name).
pub fn parse<I, S>(args: I) -> Result<Action, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("adm") => return parse_client(&args[2..], Client::Adm),
        Some("stat") => return parse_client(&args[2..], Client::Stat),
        Some("log") => return parse_client(&args[2..], Client::Log),
        _ => {}
    }
    let m = match command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                return Ok(Action::Print(e.to_string()));
            }
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ")
                .to_string();
            return Err(CliError(line));
        }
    };
    if m.get_flag("version") {
        return Ok(Action::Print(format!(
            "ringcache {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    let vcl_file = m.get_one::<String>("vcl_file");
    if vcl_file.is_some() && m.get_one::<String>("backend").is_some() {
        return Err(CliError("Only one of -b or -f can be specified".into()));
    }
    if m.get_flag("compile_only") {
        return match vcl_file {
            Some(f) => Ok(Action::CheckVcl(PathBuf::from(f))),
            None if m.get_one::<String>("backend").is_some() => {
                parse_backend(m.get_one::<String>("backend").map_or("", |s| s.as_str()))?;
                Ok(Action::Print(String::new()))
            }
            None => Err(CliError(
                "-C needs either -b <backend> or -f <vcl_file>".into(),
            )),
        };
    }
    let mut params = Params::default();
    if let Some(t) = m.get_one::<String>("ttl") {
        params
            .set("default_ttl", t.trim())
            .map_err(|e| CliError(format!("-t {t}: {e}")))?;
    }
    if let Some(ps) = m.get_many::<String>("param") {
        for p in ps {
            let (name, value) = p
                .split_once('=')
                .ok_or_else(|| CliError(format!("-p {p}: expected NAME=VALUE")))?;
            params
                .set(name.trim(), value.trim())
                .map_err(|e| CliError(format!("-p {p}: {e}")))?;
        }
    }
    if !params.metrics_listen.is_empty() {
        parse_addrs(&params.metrics_listen)
            .map_err(|m| CliError(format!("-p metrics_listen={}: {m}", params.metrics_listen)))?;
    }

    let listen_args: Vec<&String> = m
        .get_many::<String>("listen")
        .map(|v| v.collect())
        .unwrap_or_default();
    if listen_args.is_empty() {
        return Err(CliError(
            "-a ADDR:PORT is required (where to listen)".into(),
        ));
    }
    let mut listen = Vec::new();
    for a in listen_args {
        for addr in parse_listen(a)? {
            if !listen.contains(&addr) {
                listen.push(addr);
            }
        }
    }

    let vcl = match (m.get_one::<String>("backend"), vcl_file) {
        (Some(b), _) => VclSource::Backend(parse_backend(b)?),
        (None, Some(f)) => VclSource::File(PathBuf::from(f)),
        (None, None) => {
            return Err(CliError(
                "one of -b HOST:PORT (the backend) or -f FILE.vcl is required".into(),
            ))
        }
    };

    let storage_bytes = match m.get_one::<String>("storage") {
        Some(s) => parse_storage(s)?,
        None => DEFAULT_STORAGE,
    };

    let mut admin = AdminConfig::default();
    if let Some(t) = m.get_one::<String>("admin_listen") {
        admin.listen = parse_admin_listen(t)?;
    }
    if let Some(s) = m.get_one::<String>("secret") {
        if s.is_empty() {
            return Err(CliError("-S: a file name is required".into()));
        }
        admin.secret = Some(PathBuf::from(s));
    }

    let pid_file = match m.get_one::<String>("pid_file") {
        Some(p) if p.is_empty() => return Err(CliError("-P: a file name is required".into())),
        Some(p) => Some(PathBuf::from(p)),
        None => None,
    };
    let mut notices = Vec::new();
    for &(flag, id, _, why) in IGNORED {
        if let Some(vals) = m.get_many::<String>(id) {
            for v in vals {
                notices.push(format!("-{flag} {v} ignored: {why}"));
            }
        }
    }

    Ok(Action::Serve(Box::new(Config {
        listen,
        vcl,
        storage_bytes,
        params,
        admin,
        pid_file,
        notices,
    })))
}

/// `-T`: `ADDR:PORT`, `[v6]:PORT`, `:PORT` (every IPv4 and IPv6 interface), `name:PORT`, or
/// `none` (no admin listener).
pub fn parse_admin_listen(s: &str) -> Result<Vec<SocketAddr>, CliError> {
    if s == "none" {
        return Ok(Vec::new());
    }
    parse_addrs(s).map_err(|m| CliError(format!("-T {s}: {m}")))
}

/// A control-plane listen address (`-T`, `-p metrics_listen`): `ADDR:PORT`, `[v6]:PORT`,
/// `:PORT` (every IPv4 and IPv6 interface) or `name:PORT`. The error is the reason alone.
pub fn parse_addrs(s: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = split_host_port(s, None)?;
    if host.is_empty() {
        let p: u16 = port
            .parse()
            .map_err(|_| format!("\"{port}\" is not a port number"))?;
        return Ok(vec![
            SocketAddr::from(([0, 0, 0, 0], p)),
            SocketAddr::from(([0u16; 8], p)),
        ]);
    }
    resolve(host, port)
}

/// `adm` / `stat` / `log` arguments (after the subcommand word), getopt style.
fn parse_client(args: &[std::ffi::OsString], kind: Client) -> Result<Action, CliError> {
    let (name, usage) = match kind {
        Client::Adm => ("adm", ADM_USAGE),
        Client::Stat => ("stat", STAT_USAGE),
        Client::Log => ("log", LOG_USAGE),
    };
    let usage_line = usage.trim_end().trim_start_matches("Usage: ");
    let mut words = Vec::with_capacity(args.len());
    for a in args {
        match a.to_str() {
            Some(s) => words.push(s.to_string()),
            None => return Err(CliError(format!("{name}: arguments must be UTF-8"))),
        }
    }
    let mut target = None;
    let mut secret = None;
    let mut timeout = Duration::from_secs(5);
    let mut stat_args = Vec::new();
    let mut tags = Vec::new();
    let mut dump = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "--" {
            i += 1;
            break;
        }
        if w == "-h" || w == "--help" {
            return Ok(Action::Print(usage.to_string()));
        }
        if !w.starts_with('-') || w == "-" {
            break;
        }
        let flag = w.get(..2).unwrap_or(w);
        let takes_value = matches!(flag, "-T" | "-S" | "-t")
            || (kind == Client::Stat && flag == "-f")
            || (kind == Client::Log && flag == "-i");
        let value = if !takes_value {
            None
        } else if w.len() > 2 {
            Some(w[2..].to_string())
        } else {
            i += 1;
            Some(
                words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| CliError(format!("{name} {flag}: a value is required")))?,
            )
        };
        match (flag, value) {
            ("-T", Some(v)) => target = Some(v),
            ("-S", Some(v)) => secret = Some(PathBuf::from(v)),
            ("-t", Some(v)) => {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite() && *t > 0.0 && *t <= 86_400.0)
                    .ok_or_else(|| {
                        CliError(format!("{name} -t {v}: expected seconds (0 < t <= 86400)"))
                    })?;
                timeout = Duration::from_secs_f64(secs);
            }
            ("-f", Some(v)) => {
                stat_args.push("-f".to_string());
                stat_args.push(v);
            }
            ("-i", Some(v)) => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(CliError(format!(
                        "log -i {v}: a tag is letters, digits and _ (e.g. Backend_health)"
                    )));
                }
                tags.push(v);
            }
            ("-1" | "-j", None) if kind == Client::Stat && w.len() == 2 => {
                stat_args.push(w.to_string())
            }
            ("-d", None) if kind == Client::Log && w.len() == 2 => dump = true,
            _ => {
                return Err(CliError(format!(
                    "{name}: unknown option {w} ({usage_line})"
                )))
            }
        }
        i += 1;
    }
    let rest = &words[i..];
    let target = target.ok_or_else(|| {
        CliError(format!(
            "{name}: -T ADDR:PORT is required (the address ringcache printed as \"ringcache: admin on ADDR\")"
        ))
    })?;
    let addrs = {
        let (host, port) = split_host_port(&target, None)
            .map_err(|m| CliError(format!("{name} -T {target}: {m}")))?;
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        resolve(host, port).map_err(|m| CliError(format!("{name} -T {target}: {m}")))?
    };
    if kind != Client::Adm {
        if let Some(extra) = rest.first() {
            return Err(CliError(format!(
                "{name}: unexpected argument \"{extra}\" ({usage_line})"
            )));
        }
    }
    let mode = match kind {
        Client::Stat => Mode::Stat(stat_args),
        Client::Log => Mode::Log { tags, dump },
        Client::Adm if rest.is_empty() => Mode::Stdin,
        Client::Adm => Mode::Command(rest.to_vec()),
    };
    Ok(Action::Admin(Box::new(client::Request {
        target,
        addrs,
        secret,
        timeout,
        mode,
    })))
}

/// Splits `host:port`, `[v6]:port`, `:port` and bare `host` (port `default_port`).
fn split_host_port<'a>(
    s: &'a str,
    default_port: Option<&'a str>,
) -> Result<(&'a str, &'a str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{s}\": missing ']'"))?;
        return match after.strip_prefix(':') {
            Some(port) if !port.is_empty() => Ok((host, port)),
            None if after.is_empty() => default_port
                .map(|p| (host, p))
                .ok_or_else(|| format!("\"{s}\": a port is required")),
            _ => Err(format!("\"{s}\": expected [ADDRESS]:PORT")),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 literal without brackets has several colons.
        Some((host, _)) if host.contains(':') => Err(format!(
            "\"{s}\": IPv6 addresses must be written in brackets, e.g. [::1]:8080"
        )),
        Some((host, port)) if !port.is_empty() => Ok((host, port)),
        Some(_) => Err(format!("\"{s}\": empty port")),
        None => default_port
            .map(|p| (s, p))
            .ok_or_else(|| format!("\"{s}\": a port is required (ADDR:PORT)")),
    }
}

fn resolve(host: &str, port: &str) -> Result<Vec<SocketAddr>, String> {
    let port_num: u16 = match port.parse() {
        Ok(p) => p,
        Err(_) => match port {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("\"{port}\" is not a port number")),
        },
    };
    let addrs: Vec<SocketAddr> = (host, port_num)
        .to_socket_addrs()
        .map_err(|e| format!("\"{host}\" could not be resolved ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("\"{host}\" could not be resolved to an IP address"));
    }
    Ok(addrs)
}

/// `-a`: `ADDR:PORT`, `[v6]:PORT`, `:PORT` (IPv4 and IPv6 wildcard), `name:PORT`, with
/// Varnish's optional `NAME=` prefix and `,HTTP` protocol suffix.
pub fn parse_listen(s: &str) -> Result<Vec<SocketAddr>, CliError> {
    let err = |m: String| CliError(format!("-a {s}: {m}"));
    let mut spec = s;
    if let Some((name, rest)) = spec.split_once('=') {
        if !name.contains(':') && !name.contains('[') {
            spec = rest;
        }
    }
    let mut parts = spec.split(',');
    let addr = parts.next().unwrap_or("");
    for extra in parts {
        match extra.trim().to_ascii_uppercase().as_str() {
            "HTTP" | "HTTP/1" => {}
            "PROXY" => {
                return Err(err(
                    "the PROXY protocol on listeners is not supported".into()
                ))
            }
            other => return Err(err(format!("unknown listen option \"{other}\""))),
        }
    }
    let (host, port) = split_host_port(addr, None).map_err(err)?;
    if host.is_empty() {
        let p: u16 = port
            .parse()
            .map_err(|_| err(format!("\"{port}\" is not a port number")))?;
        return Ok(vec![
            SocketAddr::from(([0, 0, 0, 0], p)),
            SocketAddr::from(([0u16; 8], p)),
        ]);
    }
    resolve(host, port).map_err(err)
}

/// `-b`: one address. A name may resolve to at most one IPv4 and one IPv6 address (as Varnish's
/// `.host`); the IPv4 one is used (Varnish's `prefer_ipv6` default is off).
pub fn parse_backend(s: &str) -> Result<Backend, CliError> {
    let err = |m: String| CliError(format!("-b {s}: {m}"));
    let (host, port) = split_host_port(s, Some("80")).map_err(err)?;
    if host.is_empty() {
        return Err(err("a host is required".into()));
    }
    let addrs = resolve(host, port).map_err(err)?;
    let v4: Vec<_> = addrs.iter().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<_> = addrs.iter().filter(|a| a.is_ipv6()).collect();
    if v4.len() > 1 || v6.len() > 1 {
        return Err(err(format!(
            "\"{host}\" resolves to too many addresses ({})",
            addrs.len()
        )));
    }
    let addr = *v4
        .first()
        .or(v6.first())
        .ok_or_else(|| err(format!("\"{host}\" could not be resolved to an IP address")))?;
    Ok(Backend {
        addr: *addr,
        host_header: s.to_string(),
    })
}

/// `-s`: `[NAME=]malloc[,SIZE]` or a bare `SIZE`.
pub fn parse_storage(s: &str) -> Result<u64, CliError> {
    let err = |m: &str| CliError(format!("-s {s}: {m}"));
    let mut spec = s.trim();
    if let Some((_, rest)) = spec.split_once('=') {
        spec = rest;
    }
    let (kind, size) = match spec.split_once(',') {
        Some((k, sz)) => (Some(k.trim()), Some(sz.trim())),
        None if spec.chars().next().is_some_and(|c| c.is_ascii_digit()) => (None, Some(spec)),
        None => (Some(spec), None),
    };
    match kind {
        None | Some("malloc") | Some("default") => {}
        Some(other) => {
            return Err(err(&format!(
                "storage type \"{other}\" is not supported (use malloc)"
            )))
        }
    }
    match size {
        None => Ok(DEFAULT_STORAGE),
        Some(sz) => {
            let n = params::parse_bytes(sz).ok_or_else(|| err("bad size (e.g. 256m, 1g)"))?;
            if n < 1 << 20 {
                return Err(err("storage must be at least 1m"));
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["ringcache"];
        v.extend_from_slice(args);
        match parse(v)? {
            Action::Serve(c) => Ok(*c),
            Action::Print(t) => Err(CliError(format!("printed: {t}"))),
            Action::Admin(r) => Err(CliError(format!("admin client: {r:?}"))),
            Action::CheckVcl(f) => Err(CliError(format!("check vcl: {}", f.display()))),
        }
    }

    #[test]
    fn vcl_flags() {
        let p = |args: &[&str]| {
            let mut v = vec!["ringcache"];
            v.extend_from_slice(args);
            parse(v)
        };
        assert!(matches!(
            p(&["-C", "-f", "x.vcl"]),
            Ok(Action::CheckVcl(f)) if f == std::path::Path::new("x.vcl")
        ));
        assert_eq!(
            p(&["-a", ":1", "-b", "127.0.0.1:1", "-f", "x.vcl"])
                .unwrap_err()
                .0,
            "Only one of -b or -f can be specified"
        );
        match p(&["-a", ":1", "-f", "x.vcl"]) {
            Ok(Action::Serve(c)) => {
                assert!(matches!(&c.vcl, VclSource::File(f) if f == std::path::Path::new("x.vcl")))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            p(&["-a", ":1"]).unwrap_err().0,
            "one of -b HOST:PORT (the backend) or -f FILE.vcl is required"
        );
        assert_eq!(
            p(&["-C"]).unwrap_err().0,
            "-C needs either -b <backend> or -f <vcl_file>"
        );
        assert!(matches!(p(&["-C", "-b", "127.0.0.1:1"]), Ok(Action::Print(t)) if t.is_empty()));
    }

    // Goal: a varnishd command line of a typical unit file starts as is: -t sets default_ttl,
    // -P names the pid file, -n/-j/-l/-i/-r are accepted with a notice each (-h stays help).
    #[test]
    fn varnishd_flags() {
        let c = serve(&[
            "-a",
            ":6081",
            "-b",
            "127.0.0.1:8080",
            "-t",
            "300",
            "-P",
            "/run/varnishd.pid",
            "-n",
            "/var/lib/varnish/edge",
            "-j",
            "unix,user=vcache",
            "-i",
            "edge1",
            "-l",
            "80m",
            "-F",
        ])
        .expect("ok");
        assert_eq!(c.params.default_ttl, 300.0);
        assert_eq!(c.pid_file, Some(PathBuf::from("/run/varnishd.pid")));
        assert_eq!(c.notices.len(), 4, "{:?}", c.notices);
        assert!(c.notices[0].starts_with("-n /var/lib/varnish/edge ignored: "));
        // -p wins over -t (it comes later, as in varnishd).
        let c = serve(&[
            "-a",
            ":1",
            "-b",
            "127.0.0.1:2",
            "-t",
            "300",
            "-p",
            "default_ttl=5",
        ])
        .expect("ok");
        assert_eq!(c.params.default_ttl, 5.0);
        let e = serve(&["-a", ":1", "-b", "127.0.0.1:2", "-t", "soon"]).expect_err("bad ttl");
        assert!(e.0.starts_with("-t soon: "), "{e}");
        let e = serve(&["-a", ":1", "-b", "127.0.0.1:2", "-P", ""]).expect_err("empty");
        assert_eq!(e.0, "-P: a file name is required");
        let c = serve(&["-a", ":1", "-b", "127.0.0.1:2"]).expect("ok");
        assert!(c.notices.is_empty() && c.pid_file.is_none());
    }

    fn client(args: &[&str]) -> Result<client::Request, CliError> {
        let mut v = vec!["ringcache"];
        v.extend_from_slice(args);
        match parse(v)? {
            Action::Admin(r) => Ok(*r),
            other => Err(CliError(format!("not a client: {other:?}"))),
        }
    }

    #[test]
    fn admin_listener_flags() {
        let base = ["-a", "127.0.0.1:1", "-b", "127.0.0.1:2"];
        let c = serve(&base).expect("ok");
        assert_eq!(c.admin, AdminConfig::default());
        assert_eq!(c.admin.listen, vec!["127.0.0.1:0".parse().expect("addr")]);
        let mut v = base.to_vec();
        v.extend(["-T", "127.0.0.1:6082", "-S", "/etc/varnish/secret"]);
        let c = serve(&v).expect("ok");
        assert_eq!(
            c.admin.listen,
            vec!["127.0.0.1:6082".parse().expect("addr")]
        );
        assert_eq!(c.admin.secret, Some(PathBuf::from("/etc/varnish/secret")));
        let mut v = base.to_vec();
        v.extend(["-T", "none"]);
        assert!(serve(&v).expect("ok").admin.listen.is_empty());
        let mut v = base.to_vec();
        v.extend(["-T", ":0"]);
        assert_eq!(serve(&v).expect("ok").admin.listen.len(), 2);
        for bad in ["127.0.0.1", "127.0.0.1:x", "::1:80", "nosuchhost.invalid:1"] {
            let mut v = base.to_vec();
            v.extend(["-T", bad]);
            let e = serve(&v).expect_err(bad);
            assert!(e.0.starts_with(&format!("-T {bad}: ")), "{e}");
            assert!(!e.0.contains('\n'));
        }
    }

    #[test]
    fn admin_clients() {
        let r = client(&["adm", "-T", "127.0.0.1:6082", "-S", "/s", "ping"]).expect("ok");
        assert_eq!(r.addrs, vec!["127.0.0.1:6082".parse().expect("addr")]);
        assert_eq!(r.secret, Some(PathBuf::from("/s")));
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert_eq!(r.mode, Mode::Command(vec!["ping".into()]));
        // Options stop at the command: its own dashes pass through.
        let r = client(&["adm", "-T127.0.0.1:1", "-t", "0.5", "param.set", "x", "-1"]).expect("ok");
        assert_eq!(
            r.mode,
            Mode::Command(vec!["param.set".into(), "x".into(), "-1".into()])
        );
        assert_eq!(r.timeout, Duration::from_millis(500));
        let r = client(&["adm", "-T", "127.0.0.1:1"]).expect("ok");
        assert_eq!(r.mode, Mode::Stdin);
        let r = client(&[
            "stat",
            "-T",
            ":1",
            "-j",
            "-f",
            "MAIN.*",
            "-f^MAIN.s_*",
            "-1",
        ])
        .expect("ok");
        assert_eq!(r.addrs, vec!["127.0.0.1:1".parse().expect("addr")]);
        assert_eq!(
            r.mode,
            Mode::Stat(vec![
                "-j".into(),
                "-f".into(),
                "MAIN.*".into(),
                "-f".into(),
                "^MAIN.s_*".into(),
                "-1".into()
            ])
        );
        for bad in [
            vec!["adm"],
            vec!["adm", "ping"],
            vec!["adm", "-T"],
            vec!["adm", "-T", "127.0.0.1"],
            vec!["adm", "-x", "-T", "127.0.0.1:1"],
            vec!["adm", "-T", "127.0.0.1:1", "-t", "soon"],
            vec!["stat", "-T", "127.0.0.1:1", "extra"],
            vec!["stat", "-T", "127.0.0.1:1", "-x"],
            vec!["stat", "-T", "127.0.0.1:1", "-f"],
            vec!["adm", "-é"],
        ] {
            let e = client(&bad).expect_err(&format!("{bad:?} must fail"));
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
        }
        match parse(["ringcache", "adm", "-h"]) {
            Ok(Action::Print(t)) => assert!(t.starts_with("Usage: ringcache adm")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn log_client() {
        let r = client(&[
            "log",
            "-T",
            "127.0.0.1:6082",
            "-i",
            "Backend_health",
            "-iVCL_Event",
        ])
        .expect("ok");
        assert_eq!(
            r.mode,
            Mode::Log {
                tags: vec!["Backend_health".into(), "VCL_Event".into()],
                dump: false
            }
        );
        let r = client(&["log", "-d", "-T", ":1"]).expect("ok");
        assert_eq!(
            r.mode,
            Mode::Log {
                tags: vec![],
                dump: true
            }
        );
        for bad in [
            vec!["log"],
            vec!["log", "-T", "127.0.0.1:1", "-i"],
            vec!["log", "-T", "127.0.0.1:1", "-i", "bad tag"],
            vec!["log", "-T", "127.0.0.1:1", "-1"],
            vec!["log", "-T", "127.0.0.1:1", "extra"],
            vec!["stat", "-T", "127.0.0.1:1", "-d"],
        ] {
            let e = client(&bad).expect_err(&format!("{bad:?} must fail"));
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
        }
        match parse(["ringcache", "log", "--help"]) {
            Ok(Action::Print(t)) => assert!(t.starts_with("Usage: ringcache log")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn metrics_listen_is_checked_at_parse() {
        let base = ["-a", "127.0.0.1:1", "-b", "127.0.0.1:2"];
        let mut v = base.to_vec();
        v.extend(["-p", "metrics_listen=127.0.0.1:9131"]);
        assert_eq!(
            serve(&v).expect("ok").params.metrics_listen,
            "127.0.0.1:9131"
        );
        for bad in ["127.0.0.1", "127.0.0.1:x", "nosuchhost.invalid:1"] {
            let mut v = base.to_vec();
            let p = format!("metrics_listen={bad}");
            v.extend(["-p", &p]);
            let e = serve(&v).expect_err(bad);
            assert!(
                e.0.starts_with(&format!("-p metrics_listen={bad}: ")),
                "{e}"
            );
        }
        assert_eq!(parse_addrs(":9").expect("ok").len(), 2);
    }

    fn backend(c: &Config) -> &Backend {
        match &c.vcl {
            VclSource::Backend(b) => b,
            VclSource::File(f) => panic!("expected -b, got -f {}", f.display()),
        }
    }

    #[test]
    fn minimal_command_line() {
        let c = serve(&["-a", "127.0.0.1:8080", "-b", "127.0.0.1:9000"]).expect("ok");
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
        assert_eq!(backend(&c).addr, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(c.storage_bytes, 256 << 20);
    }

    #[test]
    fn repeated_listen_ipv6_storage_params_and_f() {
        let c = serve(&[
            "-F",
            "-a",
            "127.0.0.1:0",
            "-a",
            "[::1]:0",
            "-b",
            "[::1]:81",
            "-s",
            "malloc,64m",
            "-p",
            "default_ttl=5",
            "-p",
            "cores=2",
        ])
        .expect("ok");
        assert_eq!(c.listen.len(), 2);
        assert!(c.listen[1].is_ipv6());
        assert!(backend(&c).addr.is_ipv6());
        assert_eq!(c.storage_bytes, 64 << 20);
        assert_eq!(c.params.default_ttl, 5.0);
        let c = serve(&["-a", ":8080", "-b", "localhost", "-s", "128m"]).expect("ok");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(backend(&c).addr.port(), 80);
        assert_eq!(c.storage_bytes, 128 << 20);
    }

    #[test]
    fn refusals_are_one_line() {
        for bad in [
            vec!["-b", "127.0.0.1:1"],
            vec!["-a", "127.0.0.1:1"],
            vec!["-a", "127.0.0.1:1", "-b", "127.0.0.1:1", "-p", "nosuch=1"],
            vec![
                "-a",
                "127.0.0.1:1",
                "-b",
                "127.0.0.1:1",
                "-p",
                "default_ttl=abc",
            ],
            vec!["-a", "127.0.0.1:1", "-b", "127.0.0.1:1", "-p", "novalue"],
            vec![
                "-a",
                "127.0.0.1:1",
                "-b",
                "127.0.0.1:1",
                "-s",
                "file,/tmp/x,1g",
            ],
            vec![
                "-a",
                "127.0.0.1:1",
                "-b",
                "127.0.0.1:1",
                "-s",
                "malloc,lots",
            ],
            vec!["-a", "127.0.0.1:1", "-b", "::1:80"],
            vec!["-a", "127.0.0.1", "-b", "127.0.0.1:1"],
            vec!["-a", "127.0.0.1:1", "-b", "127.0.0.1:1", "--nosuchflag"],
            vec!["-a", "127.0.0.1:1", "-b", "nosuchhost.invalid:80"],
        ] {
            let e = serve(&bad).expect_err(&format!("{bad:?} must fail"));
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
            assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn help_lists_flags_and_parameters() {
        match parse(["ringcache", "--help"]) {
            Ok(Action::Print(t)) => {
                for needle in [
                    "-a",
                    "-b",
                    "-s",
                    "-p",
                    "-F",
                    "-T",
                    "-S",
                    "ringcache adm",
                    "ringcache stat",
                    "ringcache log",
                    "metrics_listen",
                    "access_log",
                    "default_ttl",
                    "poller_core",
                ] {
                    assert!(t.contains(needle), "help lacks {needle}");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
