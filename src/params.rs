//! Runtime parameters: one table, declared once, with defaults, units, bounds and help text.
//!
//! Why one macro: Varnish's `tbl/params.h` taught that a tunable declared in several places drifts
//! (help says one default, code uses another). Here the `params!` invocation below is the only
//! declaration: it generates the typed `Params` struct the data plane reads, the string parser the
//! control plane uses for `-p name=value` and `param.set`, the table `--help` and `param.show`
//! print, and each parameter's runtime behaviour (its flags). Values are parsed and
//! bounds-checked on the control plane, so shards only read plain numbers from a published
//! snapshot (see `control::Published` and `server::shard::Tuning`).
//!
//! Runtime changes: a row flagged `LIVE` may be changed with `param.set`; shards pick the new
//! value up for the next request (or connection, or fetch) without a restart. A row without it
//! (the thread and core layout) is refused at runtime: it can only be set with `-p`. A new row is
//! refused at runtime until it is flagged `LIVE`, so a parameter that a shard only reads at boot
//! can never look changed when it is not.

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
    /// [`flags`] bits: how the parameter behaves at runtime.
    pub flags: u32,
}

/// Runtime behaviour of a parameter (the bits of [`ParamDef::flags`]), after Varnish's
/// `tbl/params.h` flags where the meaning is the same.
pub mod flags {
    /// `param.set` may change it while running; new requests use the new value. Without it the
    /// parameter is Varnish's `must_restart`: `param.set` refuses it.
    pub const LIVE: u32 = 1;
    /// Read when an object is created: objects already cached keep the old value (Varnish's
    /// `obj_sticky`).
    pub const OBJ_STICKY: u32 = 2;
    /// Takes effect at the next event it governs rather than at once (Varnish's
    /// `delayed_effect`).
    pub const DELAYED_EFFECT: u32 = 4;
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
        /// Below `min` (else above `max`).
        low: bool,
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
                ..
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

/// The flags of a row: none written means not `LIVE` (see the module comment).
macro_rules! param_flags {
    () => {
        0
    };
    ($($flag:ident)|+) => {
        $(flags::$flag)|+
    };
}

macro_rules! params {
    ($( $name:ident : $kind:ident ($ty:ty) = $default:literal,
        min $min:expr, max $max:expr, unit $unit:literal, $(flags $($flag:ident)|+ ,)?
        $help:literal; )*) => {
        /// Every runtime parameter, typed. Built from the table's defaults, then `-p` overrides.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Params { $( pub $name: $ty, )* }

        /// The table, in declaration order (what `--help` prints; `param.show` sorts by name).
        pub static TABLE: &[ParamDef] = &[ $( ParamDef {
            name: stringify!($name), kind: Kind::$kind, default: $default,
            min: $min as f64, max: $max as f64, unit: $unit, help: $help,
            flags: param_flags!($($($flag)|+)?),
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

            /// The current value of one parameter, typed (for `param.show`).
            pub fn value(&self, name: &str) -> Option<Value> {
                match name {
                    $( stringify!($name) => Some(FromParam::to_value(&self.$name)), )*
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
    default_ttl: Duration(f64) = "120", min 0, max INF, unit "seconds", flags LIVE | OBJ_STICKY,
        "TTL of objects whose response gives no other (Cache-Control, Expires).";
    default_grace: Duration(f64) = "10", min 0, max INF, unit "seconds",
        flags LIVE | OBJ_STICKY,
        "Grace of objects: how long past their TTL they may still be delivered while a \
         background fetch refreshes them (stale-while-revalidate overrides it).";
    default_keep: Duration(f64) = "0", min 0, max INF, unit "seconds", flags LIVE | OBJ_STICKY,
        "Keep of objects: how long past TTL and grace they are kept for conditional fetches.";
    clock_skew: Uint(u64) = "10", min 0, max 1000000000, unit "seconds",
        flags LIVE | OBJ_STICKY,
        "How far the origin's Date may be from ours before Expires is taken relative to Date.";
    max_restarts: Uint(u64) = "4", min 0, max 1000, unit "restarts", flags LIVE,
        "Upper limit on how many times a request can restart (return (restart) in VCL); one \
         more ends it with a 503. A change applies to requests that start after it.";
    max_retries: Uint(u64) = "4", min 0, max 1000, unit "retries", flags LIVE,
        "Upper limit on how many times a backend fetch can retry (return (retry) in VCL); one \
         more fails the fetch. A change applies to fetches that start after it.";
    pipe_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds", flags LIVE,
        "Idle timeout of a piped connection (return (pipe)): with no bytes in either direction \
         for this long, both sides are closed. A change applies to pipes opened after it.";
    connect_timeout: Duration(f64) = "3.5", min 0.001, max INF, unit "seconds", flags LIVE,
        "How long to wait for a backend TCP connection to be established. VCL values, per \
         backend or per backend request, take precedence. A change applies to fetches that \
         start after it.";
    first_byte_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds", flags LIVE,
        "How long to wait for the first byte of a backend response. VCL values, per backend or \
         per backend request, take precedence. A change applies to fetches that start after \
         it.";
    between_bytes_timeout: Duration(f64) = "60", min 0.001, max INF, unit "seconds",
        flags LIVE,
        "How long to wait between two reads of a backend response. VCL values, per backend or \
         per backend request, take precedence. A change applies to fetches that start after \
         it.";
    backend_idle_timeout: Duration(f64) = "60", min 1, max INF, unit "seconds",
        flags LIVE | DELAYED_EFFECT,
        "Idle backend connections older than this are closed instead of reused. A change \
         applies to every pooled connection within a quarter of a second.";
    backend_remote_error_holddown: Duration(f64) = "0.250", min 0, max INF, unit "seconds",
        flags LIVE,
        "After a backend refuses a connection (ECONNREFUSED, ENETUNREACH), no new connection \
         is tried for this long; fetches meanwhile fail at once (or fail over to another \
         member of their director).";
    backend_local_error_holddown: Duration(f64) = "10", min 0, max INF, unit "seconds",
        flags LIVE,
        "After a connect fails for a local reason (EACCES, EPERM, EADDRNOTAVAIL), no new \
         connection to that backend is tried for this long.";
    backend_wait_timeout: Duration(f64) = "0", min 0, max INF, unit "seconds",
        flags LIVE,
        "How long a fetch waits for a connection when its backend is at .max_connections \
         (default of .wait_timeout); queueing needs both this and backend_wait_limit > 0.";
    backend_wait_limit: Uint(u64) = "0", min 0, max 4294967295u64, unit "fetches",
        flags LIVE,
        "Most fetches waiting for a connection of one backend at .max_connections (default \
         of .wait_limit); more are refused at once as busy.";
    director_failover_max: Uint(u64) = "3", min 0, max 64, unit "backends",
        flags LIVE,
        "When a director's backend refuses the connection, is at .max_connections or held \
         down, an idempotent fetch moves on to the director's next healthy candidate, at \
         most this many times (ringcache extension; 0 = Varnish's behaviour).";
    backend_idle_max: Uint(u64) = "256", min 0, max 100000, unit "connections",
        flags LIVE | DELAYED_EFFECT,
        "Most idle connections kept per backend address per shard (ringcache extension). A \
         lower value is enforced as connections come back to the pool.";
    timeout_idle: Duration(f64) = "5", min 0.001, max INF, unit "seconds", flags LIVE,
        "Idle client connections (between requests, or while a request head arrives) are \
         closed after this long. A change applies from the next wait of every connection.";
    send_timeout: Duration(f64) = "600", min 0.001, max INF, unit "seconds", flags LIVE,
        "Total time allowed to send one response to a client; slower clients are dropped. A \
         change applies to responses that start after it.";
    http_req_size: Bytes(u64) = "32k", min 256, max 67108864, unit "bytes", flags LIVE,
        "Largest request head (request line and headers) accepted; larger gets 431. A change \
         applies to request heads read after it.";
    http_req_hdr_len: Bytes(u64) = "8k", min 40, max 67108864, unit "bytes", flags LIVE,
        "Longest request line (else 414) or header line (else 431) accepted. A change applies \
         to request heads read after it.";
    http_max_hdr: Uint(u64) = "64", min 32, max 256, unit "header lines", flags LIVE,
        "Most header fields in a request or backend response; more gets 431 (or a 503 fetch \
         error for responses). A change applies to heads read after it.";
    http_resp_size: Bytes(u64) = "32k", min 256, max 67108864, unit "bytes", flags LIVE,
        "Largest backend response head accepted; larger is a fetch error (503). A change \
         applies to fetches that start after it.";
    http_resp_hdr_len: Bytes(u64) = "8k", min 40, max 67108864, unit "bytes", flags LIVE,
        "Longest backend response header line accepted. A change applies to fetches that \
         start after it.";
    http_req_body_max: Bytes(u64) = "16m", min 0, max 17179869184u64, unit "bytes", flags LIVE,
        "Largest request body accepted (bodies are buffered before forwarding); larger gets 413 \
         (ringcache extension). A change applies to bodies read after it.";
    client_conn_max: Uint(u64) = "100000", min 1, max 10000000, unit "connections",
        flags LIVE,
        "Most open client connections, split evenly over shards; over it new connections get \
         a 503 and are closed (ringcache extension). A lower value closes no open connection; \
         it refuses new ones until the count is under it.";
    waitinglist_max: Uint(u64) = "4096", min 1, max 10000000, unit "requests", flags LIVE,
        "Most requests waiting on one busy object (coalesced miss); more get a 503 (ringcache \
         extension). A change applies to requests that park after it.";
    drain_timeout: Duration(f64) = "15", min 0, max INF, unit "seconds",
        "On SIGTERM or SIGINT: how long requests in flight may take to finish after ringcache \
         stops accepting; connections still open then are cut and the process exits \
         (ringcache extension).";
    cores: Auto(AutoValue) = "auto", min 1, max 1024, unit "shards",
        "Number of shards (threads with their own io_uring runtime, listener, cache part and \
         backend pools). auto = the cores this process may run on.";
    log_probes: Bool(bool) = "off", min 0, max 1, unit "bool",
        "Write every probe's Backend_health line to the log (stderr or log_file); off: only \
         the transitions (Went sick, Back healthy). Every line is in the event stream either \
         way (log.read, ringcache log -i Backend_health), as varnishlog shows them (ringcache \
         extension).";
    cpu_affinity: Bool(bool) = "on", min 0, max 1, unit "bool",
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
    fn to_value(&self) -> Value;
}

/// A parameter value, typed, for display.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Real(f64),
    Uint(u64),
    Bool(bool),
    Auto(AutoValue),
    AutoOff(AutoOff),
    Text(String),
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
            low: x.is_nan() || x < min,
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
    fn to_value(&self) -> Value {
        Value::Real(*self)
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
    fn to_value(&self) -> Value {
        Value::Uint(*self)
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
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
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
    fn to_value(&self) -> Value {
        Value::Bool(*self)
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
    fn to_value(&self) -> Value {
        Value::Auto(*self)
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
    fn to_value(&self) -> Value {
        Value::AutoOff(*self)
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
        "" => 1.0,
        u => crate::vcl::ast::duration_unit_scale(u)?,
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

/// Varnish's `fmt_bytes`: a size in the largest unit that keeps it whole (`32k`, `64M`), or
/// with two decimals when the next unit would not (`0.25k`), else bytes (`100b`).
pub fn fmt_bytes(bytes: u64) -> String {
    let mut t = bytes;
    if t == 0 || t & 0xff != 0 {
        return format!("{t}b");
    }
    for unit in ['k', 'M', 'G', 'T', 'P', 'E'] {
        if t & 0x300 != 0 {
            return format!("{:.2}{unit}", t as f64 / 1024.0);
        }
        t /= 1024;
        if t & 0xff != 0 {
            return format!("{t}{unit}");
        }
    }
    "(bogus number)".to_string()
}

impl ParamDef {
    /// The row named `name`.
    pub fn find(name: &str) -> Option<&'static ParamDef> {
        TABLE.iter().find(|d| d.name == name)
    }

    /// May `param.set` change it while running?
    pub fn live(&self) -> bool {
        self.flags & flags::LIVE != 0
    }

    /// `v` as `param.show` prints it (Varnish's tweak functions: `%.3f` for durations, sizes
    /// in `fmt_bytes` form, `on`/`off`).
    pub fn show(&self, v: Value) -> String {
        match (self.kind, v) {
            (Kind::Bytes, Value::Uint(n)) => fmt_bytes(n),
            (_, Value::Real(x)) => format!("{x:.3}"),
            (_, Value::Uint(n)) => n.to_string(),
            (_, Value::Bool(b)) => if b { "on" } else { "off" }.to_string(),
            (_, Value::Auto(a)) => a.to_param(),
            (_, Value::AutoOff(a)) => a.to_param(),
            (_, Value::Text(t)) => t,
        }
    }

    /// `v` as the `"value"` of `param.show -j` (numbers bare, booleans as `true`/`false`).
    pub fn json(&self, v: Value) -> String {
        match v {
            Value::Real(x) => format!("{x:.3}"),
            Value::Uint(n)
            | Value::Auto(AutoValue::Value(n))
            | Value::AutoOff(AutoOff::Value(n)) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Text(t) => crate::admin::stat::json_str(&t),
            Value::Auto(_) | Value::AutoOff(_) => format!("\"{}\"", self.show(v)),
        }
    }

    /// The default as `param.show` prints it.
    pub fn default_text(&self) -> String {
        Params::default()
            .value(self.name)
            .map(|v| self.show(v))
            .unwrap_or_default()
    }

    fn bound(&self, x: f64) -> Option<String> {
        if !x.is_finite() || matches!(self.kind, Kind::Bool | Kind::Text) {
            return None;
        }
        Some(match self.kind {
            Kind::Duration => format!("{x:.3}"),
            Kind::Bytes => fmt_bytes(x as u64),
            _ => format!("{}", x as u64),
        })
    }

    /// The minimum as `param.show -l` prints it (`None`: not shown).
    pub fn min_text(&self) -> Option<String> {
        self.bound(self.min)
    }

    /// The maximum as `param.show -l` prints it (`None`: unbounded).
    pub fn max_text(&self) -> Option<String> {
        self.bound(self.max)
    }
}

impl ParamError {
    /// The reason as varnishd's `param.set` words it for a parameter of `kind` (each line ends
    /// in a newline; the caller adds the `(attempting to set param ...)` line).
    pub fn varnish_text(&self, def: &ParamDef) -> String {
        match self {
            ParamError::Unknown(n) => format!("Unknown parameter \"{n}\"."),
            ParamError::Syntax { value, .. } => match def.kind {
                Kind::Duration => format!("Invalid number ({value})\n"),
                Kind::Uint => format!("Not a number ({value})\n"),
                Kind::Bytes => "Could not convert to bytes.\n\
                                Unknown BYTES unit of measurement ([KMGTP][B])\n  \
                                Try something like '80k' or '120M'\n"
                    .to_string(),
                Kind::Bool => "use \"on\" or \"off\"\n".to_string(),
                Kind::Auto => "use \"auto\" or a number\n".to_string(),
                Kind::AutoOff => "use \"auto\", \"off\" or a core number\n".to_string(),
                Kind::Text => "use one line of text\n".to_string(),
            },
            ParamError::Range { low, .. } => {
                let min = def.min_text().unwrap_or_default();
                let max = def.max_text().unwrap_or_default();
                match (def.kind, low) {
                    (Kind::Duration, true) => format!("Must be greater or equal to {min}\n"),
                    (Kind::Duration, false) => format!("Must be less than or equal to {max}\n"),
                    (Kind::Bytes, false) => format!("Must be no more than {max}\n\n"),
                    (_, true) => format!("Must be at least {min}\n"),
                    (_, false) => format!("Must be no more than {max}\n"),
                }
            }
        }
    }
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
        let startup = if p.live() { "" } else { " (startup only)" };
        out.push_str(&format!(
            "  {:<24} default {}{}{}\n",
            p.name, default, unit, startup
        ));
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

    // Goal: values, bounds and errors read as varnishd 7.1.1's param.show / param.set print
    // them (checked against a running varnishd).
    #[test]
    fn varnish_formats() {
        assert_eq!(fmt_bytes(32768), "32k");
        assert_eq!(fmt_bytes(256), "0.25k");
        assert_eq!(fmt_bytes(100), "100b");
        assert_eq!(fmt_bytes(0), "0b");
        assert_eq!(fmt_bytes(64 << 20), "64M");
        assert_eq!(fmt_bytes(16 << 30), "16G");
        assert_eq!(fmt_bytes(1536), "1.50k");
        let def = |n: &str| ParamDef::find(n).expect(n);
        let p = Params::default();
        let show = |n: &str| def(n).show(p.value(n).expect(n));
        assert_eq!(show("default_ttl"), "120.000");
        assert_eq!(show("http_req_size"), "32k");
        assert_eq!(show("http_max_hdr"), "64");
        assert_eq!(show("cpu_affinity"), "on");
        assert_eq!(show("cores"), "auto");
        assert_eq!(def("default_ttl").min_text().as_deref(), Some("0.000"));
        assert_eq!(def("default_ttl").max_text(), None);
        assert_eq!(def("http_req_size").min_text().as_deref(), Some("0.25k"));
        assert_eq!(def("http_max_hdr").max_text().as_deref(), Some("256"));
        assert_eq!(def("cpu_affinity").min_text(), None);
        let err = |n: &str, v: &str| {
            let mut q = Params::default();
            q.set(n, v).expect_err(v).varnish_text(def(n))
        };
        assert_eq!(err("default_ttl", "abc"), "Invalid number (abc)\n");
        assert_eq!(err("default_ttl", ""), "Invalid number ()\n");
        assert_eq!(
            err("default_ttl", "-1"),
            "Must be greater or equal to 0.000\n"
        );
        assert_eq!(err("http_max_hdr", "abc"), "Not a number (abc)\n");
        assert_eq!(err("http_max_hdr", "5"), "Must be at least 32\n");
        assert_eq!(err("http_max_hdr", "1000"), "Must be no more than 256\n");
        assert_eq!(err("http_req_size", "10"), "Must be at least 0.25k\n");
        assert_eq!(
            err("http_req_size", "1q"),
            "Could not convert to bytes.\nUnknown BYTES unit of measurement ([KMGTP][B])\n  \
             Try something like '80k' or '120M'\n"
        );
        assert_eq!(err("http_req_size", "1g"), "Must be no more than 64M\n\n");
        assert_eq!(err("clock_skew", "1.5"), "Not a number (1.5)\n");
        assert_eq!(err("cpu_affinity", "maybe"), "use \"on\" or \"off\"\n");
    }

    // Goal: only the layout parameters, drain_timeout (read by the lifecycle thread at boot)
    // and the log files and metrics address (opened at boot) are startup-only; every other row
    // is LIVE, and the object-creation ones carry Varnish's obj_sticky.
    #[test]
    fn runtime_flags() {
        let startup: Vec<&str> = TABLE.iter().filter(|d| !d.live()).map(|d| d.name).collect();
        assert_eq!(
            startup,
            vec![
                "drain_timeout",
                "cores",
                "log_probes",
                "cpu_affinity",
                "poller_core",
                "log_file",
                "access_log",
                "metrics_listen"
            ]
        );
        for n in ["default_ttl", "default_grace", "default_keep"] {
            let d = ParamDef::find(n).expect(n);
            assert!(d.flags & flags::OBJ_STICKY != 0, "{n}");
        }
        assert!(help_text().contains("(startup only)"));
    }

    // Goal: docs/admin.md documents every parameter's runtime behaviour (a row of its table),
    // so a new row in params! cannot go undocumented.
    #[test]
    fn every_parameter_is_documented() {
        let doc = include_str!("../docs/admin.md");
        for d in TABLE {
            assert!(
                doc.contains(&format!("\n| `{}` | ", d.name)),
                "docs/admin.md has no row for {}",
                d.name
            );
        }
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
