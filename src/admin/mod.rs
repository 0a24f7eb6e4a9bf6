//! The admin CLI: Varnish's CLI protocol on `-T`, guarded by `-S`, and its clients.
//!
//! Why Varnish's protocol and not an HTTP endpoint: operators already drive varnishd with
//! `varnishadm -T host:port -S secret`, monitoring scripts parse `varnishstat -1`/`-j`, and
//! config management speaks the CLI; a drop-in must answer the same bytes (status line
//! `"%-3d %-8u\n"`, challenge-response over SHA-256, the same texts and status codes). Why
//! blocking threads on the control plane: the admin path is rare, small and must keep working
//! when the data plane is saturated, so it never runs on a shard and never takes a shard's
//! time; counters are read from the shards' per-shard arrays with relaxed loads, no message.
//!
//! `protocol` is the wire format (pure), `commands` the command table and dispatch (pure but
//! for the clock), `stat` varnishstat's output formats, `server` the listener, `client` the
//! `ringcache adm` / `stat` / `log` side, `live` the terminal view of `ringcache stat`. See
//! docs/admin.md and docs/counters.md.

pub mod backend;
pub mod ban_cmds;
pub mod client;
pub mod commands;
pub mod live;
pub mod param_cmds;
pub mod protocol;
pub mod server;
pub mod stat;
pub mod vcl_cmds;

use std::net::SocketAddr;
use std::path::PathBuf;

/// The admin listener's configuration (varnishd's `-T` and `-S`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `-T`: where to listen; empty with `-T none`. Default `127.0.0.1:0` (loopback, any port).
    pub listen: Vec<SocketAddr>,
    /// `-S`: the secret file; without it connections are not challenged.
    pub secret: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            secret: None,
        }
    }
}

/// Admin health of a backend slot (`backend.set_health`): `Auto` lets the probe decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminHealth {
    #[default]
    Auto,
    Healthy,
    Sick,
}

pub use crate::health::ProbeView;

/// One row of `backend.list`: a backend (or director) of one loaded VCL.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRow {
    pub vcl: String,
    pub name: String,
    /// `backend`, or the director type (`round-robin`, `fallback`, `random`, `hash`, `shard`).
    pub kind: &'static str,
    pub admin: AdminHealth,
    /// `None`: the backend has no probe.
    pub probe: Option<ProbeView>,
    /// What a fetch would see now (admin override, else probe, else healthy).
    pub healthy: bool,
    /// Seconds since the epoch of the last health change.
    pub last_change: f64,
    pub ipv4: Option<SocketAddr>,
    pub ipv6: Option<SocketAddr>,
    /// For a director: its members' names and health, in order.
    pub members: Vec<(String, bool)>,
}

/// One row of `vcl.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VclRow {
    pub name: String,
    pub active: bool,
    /// `auto` (ringcache keeps every loaded VCL warm: its probes run until it is discarded).
    pub state: &'static str,
    pub temperature: &'static str,
    /// Requests in flight on it (0 when unknown).
    pub busy: u64,
}

/// What `poller.stats` shows: probes started, and how late they started (µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollerStats {
    pub probes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Where `vcl.load` / `vcl.inline` take the VCL text from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VclText {
    File(PathBuf),
    Inline(String),
}

/// Why `param.set` refused a value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSetError {
    /// No such parameter.
    Unknown,
    /// Bad syntax or out of bounds.
    Invalid(crate::params::ParamError),
    /// It cannot change while running (only `-p` at startup).
    NotLive,
}

/// What the admin commands ask of the running server's control plane (implemented by
/// `crate::control::Control`). Every call runs on an admin thread; none touches a shard.
pub trait Control: Send + Sync {
    /// The active VCL's name (`boot` for the one given at startup).
    fn active_vcl(&self) -> String;
    /// Every backend and director of every loaded VCL: VCLs in load order, backends in
    /// declaration order, then directors in `vcl_init` order.
    fn backends(&self) -> Vec<BackendRow>;
    /// Sets the admin health of each `(vcl, backend)`; slots are shared, so a backend declared
    /// identically in two VCLs changes in both.
    fn set_health(&self, targets: &[(String, String)], state: AdminHealth);
    /// Compiles and loads a VCL as `name` (it starts probing at once, as Varnish's `auto`
    /// state does). `Ok`: the compiler's warnings (may be empty); `Err`: its error text.
    fn vcl_load(&self, name: &str, text: VclText) -> Result<String, String>;
    /// Makes `name` the active VCL (new requests use it at once).
    fn vcl_use(&self, name: &str) -> Result<(), String>;
    /// Unloads `name` (never the active one); its backends' slots retire when no VCL uses them.
    fn vcl_discard(&self, name: &str) -> Result<(), String>;
    /// Every loaded VCL, in load order.
    fn vcls(&self) -> Vec<VclRow>;
    /// The source files of `name`: the main file first, then each include, as (name, text).
    fn vcl_source(&self, name: &str) -> Option<Vec<(String, String)>>;
    /// The poller's probe count and lateness since start (or the last reset); `reset` starts
    /// a new measurement after reading.
    fn poller_stats(&self, reset: bool) -> PollerStats;
    /// Logged events with a sequence number above `after`, oldest first, at most `max`:
    /// (sequence number, tag, line).
    fn events(&self, after: u64, max: usize) -> Vec<(u64, &'static str, String)>;
    /// The runtime parameters in force.
    fn params(&self) -> crate::params::Params;
    /// Sets one parameter; shards use the new value for what starts after this returns.
    fn param_set(&self, name: &str, value: &str) -> Result<(), ParamSetError>;
    /// Adds a ban: objects in the cache now that match it are never delivered again.
    fn ban(&self, spec: crate::cache::ban::BanSpec);
    /// The ban list, newest first.
    fn ban_list(&self) -> Vec<crate::bans::BanRow>;
}
