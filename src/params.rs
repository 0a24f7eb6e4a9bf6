//! Runtime parameters: one table, declared once, with defaults, units, bounds and help text.
//!
//! Why one macro: Varnish's `tbl/params.h` taught that a tunable declared in several places drifts
//! (help says one default, code uses another). Here the `params!` invocation below is the only
//! declaration: it generates the typed `Params` struct the data plane reads, the string parser the
//! control plane uses for `-p name=value` (and later `param.set`), and the table `--help` prints.
//! Values are parsed and bounds-checked once, at startup, so shards only read plain numbers.

use std::fmt;

/// How a parameter's text is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Seconds as a real number, optional unit suffix `ms s m h d w y`.
    Duration,
    /// Bytes, optional suffix `k m g` (powers of 1024), optional trailing `b`.
    Bytes,
    /// A non-negative integer.
    Uint,
    /// `on`/`off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
    Bool,
    /// `auto` or a non-negative integer.
    Auto,
    /// `auto`, `off` or a non-negative integer (a core number).
    AutoOff,
    /// Free text (a path, an address), empty for none; checked where it is used.
    Text,
}

/// One row of the parameter table.
#[derive(Debug)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub min: f64,
    pub max: f64,
    pub unit: &'static str,
    pub help: &'static str,
}

/// A parsed `auto | off | N` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoOff {
    Auto,
    Off,
    Value(u64),
}

/// Why a `-p name=value` was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    Unknown(String),
    Syntax {
        name: String,
        value: String,
        want: &'static str,
    },
    Range {
        name: String,
        value: String,
        min: f64,
        max: f64,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown(n) => write!(f, "unknown parameter \"{n}\""),
            ParamError::Syntax { name, value, want } => {
                write!(f, "parameter \"{name}\": \"{value}\" is not {want}")
            }
            ParamError::Range {
                name,
                value,
                min,
                max,
            } => write!(
                f,
                "parameter \"{name}\": {value} is out of range ({} .. {})",
                fmt_num(*min),
                fmt_num(*max)
            ),
        }
    }
}

impl std::error::Error for ParamError {}

fn fmt_num(v: f64) -> String {
    if v == f64::INFINITY {
        "unlimited".to_string()
    } else if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

macro_rules! params {
    ($( $name:ident : $kind:ident ($ty:ty) = $default:literal,
        min $min:expr, max $max:expr, unit $unit:literal, $help:literal; )*) => {
        /// Every runtime parameter, typed. Built from the table's defaults, then `-p` overrides.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Params { $( pub $name: $ty, )* }

        /// The table, in declaration order (what `--help` and `param.show` print).
        pub static TABLE: &[ParamDef] = &[ $( ParamDef {
            name: stringify!($name), kind: Kind::$kind, default: $default,
            min: $min as f64, max: $max as f64, unit: $unit, help: $help,
        }, )* ];

        impl Params {
            /// Sets one parameter from its text form, checking syntax and bounds.
            pub fn set(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
                match name {
                    $( stringify!($name) => {
                        self.$name = <$ty as FromParam>::from_param(
                            stringify!($name), Kind::$kind, value, $min as f64, $max as f64)?;
                        Ok(())
                    } )*
                    _ => Err(ParamError::Unknown(name.to_string())),
                }
            }

            /// The current value of one parameter in text form.
            pub fn get(&self, name: &str) -> Option<String> {
                match name {
                    $( stringify!($name) => Some(FromParam::to_param(&self.$name)), )*
                    _ => None,
                }
            }
        }

        impl Default for Params {
            fn default() -> Self {
                Params { $( $name: match <$ty as FromParam>::from_param(
                    stringify!($name), Kind::$kind, $default, $min as f64, $max as f64) {
                        Ok(v) => v,
                        // The table's own defaults are checked by a unit test.
                        Err(e) => panic!("bad default in params table: {e}"),
                    }, )* }
            }
        }
    };
}

const INF: f64 = f64::INFINITY;

params! {
    default_ttl: Duration(f64) = "120", min 0, max INF, unit "seconds",
        "TTL of objects whose response gives no other (Cache-Control, Expires).";
    default_grace: Duration(f64) = "10", min 0, max INF, unit "seconds",
        "Grace of objects: how long past their TTL they may still be delivered while a \
         background fetch refreshes them (stale-while-revalidate overrides it).";
    default_keep: Duration(f64) = "0", min 0, max INF, unit "seconds",
        "Keep of objects: how long past TTL and grace they are kept for conditional fetches.";
    clock_skew: Duration(f64) = "10", min 0, max INF, unit "seconds",
        "How far the origin's Date may be from ours before Expires is taken relative to Date.";
    max_restarts: Uint(u64) = "4", min 0, max 1000, unit "restarts",
        "Upper limit on how many times a request can restart (return (restart) in VCL); one \
         more ends it with a 503.";
    max_retries: Uint(u64) = "4", min 0, max 1000, unit "retries",
        "Upper limit on how many times a backend fetch can retry (return (retry) in VCL); one \
         more fails the fetch.";
    pipe_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds",
        "Idle timeout of a piped connection (return (pipe)): with no bytes in either direction \
         for this long, both sides are closed.";
    connect_timeout: Duration(f64) = "3.5", min 0.001, max INF, unit "seconds",
        "How long to wait for a backend TCP connection to be established.";
    first_byte_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds",
        "How long to wait for the first byte of a backend response.";
    between_bytes_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds",
        "How long to wait between two reads of a backend response.";
    backend_idle_timeout: Duration(f64) = "60", min 1, max INF, unit "seconds",
        "Idle backend connections older than this are closed instead of reused.";
    backend_remote_error_holddown: Duration(f64) = "0.250", min 0, max INF, unit "seconds",
        "After a backend refuses a connection (ECONNREFUSED, ENETUNREACH), no new connection \
         is tried for this long; fetches meanwhile fail at once (or fail over to another \
         member of their director).";
    backend_local_error_holddown: Duration(f64) = "10", min 0, max INF, unit "seconds",
        "After a connect fails for a local reason (EACCES, EPERM, EADDRNOTAVAIL), no new \
         connection to that backend is tried for this long.";
    backend_wait_timeout: Duration(f64) = "0", min 0, max INF, unit "seconds",
        "How long a fetch waits for a connection when its backend is at .max_connections \
         (default of .wait_timeout); queueing needs both this and backend_wait_limit > 0.";
    backend_wait_limit: Uint(u64) = "0", min 0, max 4294967295u64, unit "fetches",
        "Most fetches waiting for a connection of one backend at .max_connections (default \
         of .wait_limit); more are refused at once as busy.";
    director_failover_max: Uint(u64) = "3", min 0, max 64, unit "backends",
        "When a director's backend refuses the connection, is at .max_connections or held \
         down, an idempotent fetch moves on to the director's next healthy candidate, at \
         most this many times (ringcache extension; 0 = Varnish's behaviour).";
    backend_idle_max: Uint(u64) = "256", min 0, max 100000, unit "connections",
        "Most idle connections kept per backend address per shard (ringcache extension).";
    timeout_idle: Duration(f64) = "5", min 0.001, max INF, unit "seconds",
        "Idle client connections (between requests, or while a request head arrives) are \
         closed after this long.";
    send_timeout: Duration(f64) = "600", min 0.001, max INF, unit "seconds",
        "Total time allowed to send one response to a client; slower clients are dropped.";
    http_req_size: Bytes(u64) = "32k", min 256, max 67108864, unit "bytes",
        "Largest request head (request line and headers) accepted; larger gets 431.";
    http_req_hdr_len: Bytes(u64) = "8k", min 40, max 67108864, unit "bytes",
        "Longest request line (else 414) or header line (else 431) accepted.";
    http_max_hdr: Uint(u64) = "64", min 32, max 256, unit "header lines",
        "Most header fields in a request or backend response; more gets 431 (or a 503 fetch \
         error for responses).";
    http_resp_size: Bytes(u64) = "32k", min 256, max 67108864, unit "bytes",
        "Largest backend response head accepted; larger is a fetch error (503).";
    http_resp_hdr_len: Bytes(u64) = "8k", min 40, max 67108864, unit "bytes",
        "Longest backend response header line accepted.";
    http_req_body_max: Bytes(u64) = "16m", min 0, max 17179869184u64, unit "bytes",
        "Largest request body accepted (bodies are buffered before forwarding); larger gets 413 \
         (ringcache extension).";
    client_conn_max: Uint(u64) = "100000", min 1, max 10000000, unit "connections",
        "Most open client connections, split evenly over shards; over it new connections get \
         a 503 and are closed (ringcache extension).";
    waitinglist_max: Uint(u64) = "4096", min 1, max 10000000, unit "requests",
        "Most requests waiting on one busy object (coalesced miss); more get a 503 (ringcache \
         extension).";
    drain_timeout: Duration(f64) = "15", min 0, max INF, unit "seconds",
        "On SIGTERM or SIGINT: how long requests in flight may take to finish after ringcache \
         stops accepting; connections still open then are cut and the process exits \
         (ringcache extension).";
    cores: Auto(AutoValue) = "auto", min 1, max 1024, unit "shards",
        "Number of shards (threads with their own io_uring runtime, listener, cache part and \
         backend pools). auto = the cores this process may run on.";
    cpu_affinity: Bool(bool) = "on", min 0, max 1, unit "",
        "Pin shard k to core k when there are at least as many cores as shards.";
    poller_core: AutoOff(AutoOff) = "auto", min 0, max 4095, unit "core",
        "Core for the health poller thread: auto = its own core when cores + 1 <= available \
         cores, else it shares; N = pin to core N; off = never pin.";
    log_file: Text(String) = "", min 0, max 0, unit "path",
        "Where event lines go (Backend_health, VCL_Event, FetchError, VCL_Error, VCL_Log): \
         empty = stderr; else a file, appended to, each line stamped with the local time, and \
         opened again when it is rotated away (ringcache extension).";
    access_log: Text(String) = "", min 0, max 0, unit "path",
        "NCSA combined access log file, with the handling (hit, miss, pass, pipe, synth) and a \
         grace marker per line (see docs/counters.md); empty = off (ringcache extension; \
         Varnish uses varnishncsa -w).";
    metrics_listen: Text(String) = "", min 0, max 0, unit "ADDR:PORT",
        "Where the Prometheus endpoint listens (GET /metrics, text format 0.0.4): \
         127.0.0.1:9131, [::1]:9131, :9131; empty = off (ringcache extension).";
}

/// `auto` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoValue {
    Auto,
    Value(u64),
}

/// Parsing and printing of one parameter value type.
pub trait FromParam: Sized {
    fn from_param(name: &str, kind: Kind, v: &str, min: f64, max: f64) -> Result<Self, ParamError>;
    fn to_param(&self) -> String;
}

fn syntax(name: &str, v: &str, want: &'static str) -> ParamError {
    ParamError::Syntax {
        name: name.to_string(),
        value: v.to_string(),
        want,
    }
}

fn check_range(name: &str, v: &str, x: f64, min: f64, max: f64) -> Result<f64, ParamError> {
    if x.is_nan() || x < min || x > max {
        return Err(ParamError::Range {
            name: name.to_string(),
            value: v.to_string(),
            min,
            max,
        });
    }
    Ok(x)
}

impl FromParam for f64 {
    fn from_param(name: &str, kind: Kind, v: &str, min: f64, max: f64) -> Result<Self, ParamError> {
        debug_assert_eq!(kind, Kind::Duration);
        let x =
            parse_duration(v).ok_or_else(|| syntax(name, v, "a duration (e.g. 10, 1.5s, 2m)"))?;
        check_range(name, v, x, min, max)
    }
    fn to_param(&self) -> String {
        format!("{:.3}", self)
    }
}

impl FromParam for u64 {
    fn from_param(name: &str, kind: Kind, v: &str, min: f64, max: f64) -> Result<Self, ParamError> {
        let x = match kind {
            Kind::Bytes => {
                parse_bytes(v).ok_or_else(|| syntax(name, v, "a size (e.g. 8k, 256m)"))?
            }
            _ => v
                .trim()
                .parse::<u64>()
                .map_err(|_| syntax(name, v, "a non-negative integer"))?,
        };
        check_range(name, v, x as f64, min, max)?;
        Ok(x)
    }
    fn to_param(&self) -> String {
        self.to_string()
    }
}

impl FromParam for String {
    fn from_param(name: &str, _: Kind, v: &str, _: f64, _: f64) -> Result<Self, ParamError> {
        let v = v.trim();
        if v.contains(['\n', '\r', '\0']) {
            return Err(syntax(name, v, "one line of text"));
        }
        Ok(v.to_string())
    }
    fn to_param(&self) -> String {
        self.clone()
    }
}

impl FromParam for bool {
    fn from_param(name: &str, _: Kind, v: &str, _: f64, _: f64) -> Result<Self, ParamError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" | "enable" => Ok(true),
            "off" | "false" | "no" | "0" | "disable" => Ok(false),
            _ => Err(syntax(name, v, "on or off")),
        }
    }
    fn to_param(&self) -> String {
        if *self { "on" } else { "off" }.to_string()
    }
}

impl FromParam for AutoValue {
    fn from_param(name: &str, kind: Kind, v: &str, min: f64, max: f64) -> Result<Self, ParamError> {
        if v.trim().eq_ignore_ascii_case("auto") {
            return Ok(AutoValue::Auto);
        }
        let n = u64::from_param(name, kind, v, min, max).map_err(|e| match e {
            ParamError::Syntax { .. } => syntax(name, v, "auto or a positive integer"),
            other => other,
        })?;
        Ok(AutoValue::Value(n))
    }
    fn to_param(&self) -> String {
        match self {
            AutoValue::Auto => "auto".to_string(),
            AutoValue::Value(n) => n.to_string(),
        }
    }
}

impl FromParam for AutoOff {
    fn from_param(name: &str, kind: Kind, v: &str, min: f64, max: f64) -> Result<Self, ParamError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AutoOff::Auto),
            "off" => Ok(AutoOff::Off),
            _ => {
                let n = u64::from_param(name, kind, v, min, max).map_err(|e| match e {
                    ParamError::Syntax { .. } => syntax(name, v, "auto, off or a core number"),
                    other => other,
                })?;
                Ok(AutoOff::Value(n))
            }
        }
    }
    fn to_param(&self) -> String {
        match self {
            AutoOff::Auto => "auto".to_string(),
            AutoOff::Off => "off".to_string(),
            AutoOff::Value(n) => n.to_string(),
        }
    }
}

/// Parses a duration: a real number with an optional unit (`ms s m h d w y`); bare = seconds.
pub fn parse_duration(v: &str) -> Option<f64> {
    let v = v.trim();
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let x: f64 = num.trim().parse().ok()?;
    if !x.is_finite() {
        return None;
    }
    let mult = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        "y" => 365.0 * 86400.0,
        _ => return None,
    };
    Some(x * mult)
}

/// Parses a byte size: an integer (or real) with optional `k m g t` suffix and optional `b`.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        't' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    let x: f64 = num.trim().parse().ok()?;
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let bytes = x * mult as f64;
    if bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// The parameter table as help text (for `--help`).
pub fn help_text() -> String {
    let mut out = String::from("Parameters (-p NAME=VALUE):\n");
    for p in TABLE {
        let unit = if p.unit.is_empty() {
            String::new()
        } else {
            format!(" [{}]", p.unit)
        };
        let default = if p.default.is_empty() {
            "\"\""
        } else {
            p.default
        };
        out.push_str(&format!("  {:<24} default {}{}\n", p.name, default, unit));
        out.push_str(&format!("      {}\n", p.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_varnish() {
        let p = Params::default();
        assert_eq!(p.default_ttl, 120.0);
        assert_eq!(p.default_grace, 10.0);
        assert_eq!(p.default_keep, 0.0);
        assert_eq!(p.connect_timeout, 3.5);
        assert_eq!(p.http_req_size, 32768);
        assert_eq!(p.http_req_hdr_len, 8192);
        assert_eq!(p.http_max_hdr, 64);
        assert_eq!(p.cores, AutoValue::Auto);
        assert_eq!(p.poller_core, AutoOff::Auto);
        assert_eq!(p.log_file, "");
        assert_eq!(p.metrics_listen, "");
        assert_eq!(p.drain_timeout, 15.0);
        for def in TABLE {
            assert!(p.get(def.name).is_some(), "{} has no getter", def.name);
        }
    }

    #[test]
    fn set_checks_syntax_and_bounds() {
        let mut p = Params::default();
        p.set("default_ttl", "2m").expect("2m");
        assert_eq!(p.default_ttl, 120.0);
        p.set("connect_timeout", "250ms").expect("ms");
        assert!((p.connect_timeout - 0.25).abs() < 1e-9);
        p.set("http_req_size", "64k").expect("64k");
        assert_eq!(p.http_req_size, 65536);
        p.set("cores", "2").expect("cores");
        assert_eq!(p.cores, AutoValue::Value(2));
        p.set("poller_core", "off").expect("off");
        assert_eq!(p.poller_core, AutoOff::Off);
        assert!(matches!(p.set("nosuch", "1"), Err(ParamError::Unknown(_))));
        assert!(matches!(
            p.set("default_ttl", "abc"),
            Err(ParamError::Syntax { .. })
        ));
        assert!(matches!(
            p.set("http_max_hdr", "1000"),
            Err(ParamError::Range { .. })
        ));
        assert!(matches!(p.set("cores", "0"), Err(ParamError::Range { .. })));
        assert!(matches!(
            p.set("cpu_affinity", "maybe"),
            Err(ParamError::Syntax { .. })
        ));
        p.set("access_log", " /var/log/ringcache/access.log ")
            .expect("path");
        assert_eq!(p.access_log, "/var/log/ringcache/access.log");
        assert!(matches!(
            p.set("log_file", "a\nb"),
            Err(ParamError::Syntax { .. })
        ));
        let msg = p.set("default_ttl", "-1").unwrap_err().to_string();
        assert!(msg.contains("default_ttl"), "{msg}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("256m"), Some(256 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("10kb"), Some(10240));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_duration("1.5"), Some(1.5));
        assert_eq!(parse_duration("2h"), Some(7200.0));
        assert_eq!(parse_duration("1x"), None);
        assert!(help_text().contains("default_grace"));
    }
}
