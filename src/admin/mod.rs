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
//! `ringcache adm` / `ringcache stat` side. See docs/admin.md.

pub mod client;
pub mod commands;
pub mod protocol;
pub mod server;
pub mod stat;

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
