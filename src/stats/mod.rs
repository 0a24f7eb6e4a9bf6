//! Counters: declared once, kept per shard, summed on read.
//!
//! Why this shape: a shard is the only writer of its own counters, so an increment is a relaxed
//! load and store on a cache line no other core writes (no `lock` prefix, no sharing); readers on
//! the control plane sum every shard's copy. The `counters!` table is the single declaration of
//! each counter's name, kind, format, scope and description, in Varnish's `MAIN.*` names where
//! the meaning is the same, so `varnishstat` habits (and dashboards) carry over.
//!
//! Three families come from the shards: `MAIN.*` (this table, summed), `SHARD.<n>.*` (the rows
//! of this table marked `shard`, one shard's own value: per-core load) and `VBE.<vcl>.<backend>.*`
//! (`vbe`, per backend slot). Rows marked `plane` are the control plane's (uptime, loaded VCLs,
//! backends, log drops) and read there. `view` puts all of them, with `POLLER.*`, into one list
//! of readings that `stat` and the Prometheus endpoint (`prometheus`) print.

pub mod prometheus;
pub mod vbe;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering};

pub use vbe::Vbe;

/// What a counter measures (Varnish's `flag`: c counter, g gauge, b bitmap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    Counter,
    Gauge,
    Bitmap,
}

/// How a counter's value reads (Varnish's `format`: i integer, B bytes, d duration, b bitmap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Integer,
    Bytes,
    /// Seconds.
    Duration,
    Bitmap,
}

impl Format {
    /// The letter `varnishstat -j` prints.
    pub fn letter(self) -> char {
        match self {
            Format::Integer => 'i',
            Format::Bytes => 'B',
            Format::Duration => 'd',
            Format::Bitmap => 'b',
        }
    }
}

impl CounterKind {
    /// The letter `varnishstat -j` prints as `flag`.
    pub fn letter(self) -> char {
        match self {
            CounterKind::Counter => 'c',
            CounterKind::Gauge => 'g',
            CounterKind::Bitmap => 'b',
        }
    }
}

/// Where a counter is shown and who keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Kept by the shards, shown summed (`MAIN.x`).
    Main,
    /// Kept by the shards, shown summed and per shard (`MAIN.x` and `SHARD.<n>.x`).
    MainAndShard,
    /// Kept by the shards, shown per shard only (`SHARD.<n>.x`).
    ShardOnly,
    /// The control plane's value (`MAIN.x`); the shards' slot for it stays 0.
    Plane,
}

impl Scope {
    pub fn main(self) -> bool {
        self != Scope::ShardOnly
    }

    pub fn shard(self) -> bool {
        matches!(self, Scope::MainAndShard | Scope::ShardOnly)
    }
}

/// One row of a counter table.
#[derive(Debug)]
pub struct CounterDef {
    /// The name without its group (`cache_hit`).
    pub field: &'static str,
    pub kind: CounterKind,
    pub format: Format,
    pub scope: Scope,
    pub description: &'static str,
}

macro_rules! format_or_integer {
    () => {
        $crate::stats::Format::Integer
    };
    ($f:ident) => {
        $crate::stats::Format::$f
    };
}

macro_rules! scope_of {
    () => {
        $crate::stats::Scope::Main
    };
    (shard) => {
        $crate::stats::Scope::MainAndShard
    };
    (shard_only) => {
        $crate::stats::Scope::ShardOnly
    };
    (plane) => {
        $crate::stats::Scope::Plane
    };
}

/// `counters!(Enum, TABLE { name: Kind(Format) [scope], "description"; ... })`: the index
/// enum and the table, in declaration order.
macro_rules! counters {
    ($enum:ident, $table:ident {
        $( $name:ident : $kind:ident $(($fmt:ident))? $([$scope:ident])?, $desc:literal; )*
    }) => {
        /// Index of each counter in a shard's counter array.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $enum { $( $name, )* }

        /// The table, in declaration order.
        pub static $table: &[$crate::stats::CounterDef] = &[ $( $crate::stats::CounterDef {
            field: stringify!($name),
            kind: $crate::stats::CounterKind::$kind,
            format: $crate::stats::format_or_integer!($($fmt)?),
            scope: $crate::stats::scope_of!($($scope)?),
            description: $desc,
        }, )* ];
    };
}
pub(crate) use {counters, format_or_integer, scope_of};

counters!(C, TABLE {
    uptime: Counter(Duration) [plane], "Process uptime";
    sess_conn: Counter [shard], "Sessions accepted";
    sess_dropped: Counter, "Sessions refused because client_conn_max was reached";
    sess_closed_err: Counter, "Sessions closed for a client error (bad request, timeout)";
    sess_open: Gauge [shard_only], "Client connections open";
    client_req_400: Counter, "Client requests refused as malformed (4xx/5xx before processing)";
    client_req: Counter [shard], "Good client requests received";
    cache_hit: Counter [shard], "Cache hits (including grace hits)";
    cache_hit_grace: Counter, "Cache grace hits (stale objects delivered)";
    cache_hitpass: Counter, "Cache hits for pass";
    cache_hitmiss: Counter, "Cache hits for miss";
    cache_miss: Counter [shard], "Cache misses";
    backend_conn: Counter, "Backend connections opened";
    backend_unhealthy: Counter, "Fetches not attempted because the backend was unhealthy";
    backend_busy: Counter, "Fetches not attempted because the backend was at max_connections";
    backend_fail: Counter, "Backend connections failed";
    backend_reuse: Counter, "Backend connections reused from a pool";
    backend_recycle: Counter, "Backend connections returned to a pool";
    backend_retry: Counter, "Backend requests retried on a fresh connection";
    backend_wait: Counter, "Fetches that queued for a connection at max_connections";
    backend_wait_fail: Counter, "Queued fetches that got no connection (timeout, backend sick)";
    backend_helddown: Counter, "Fetches not attempted because connects to the backend were held down";
    backend_failover: Counter, "Fetches moved to the director's next candidate (ringcache extension)";
    fetch_head: Counter, "Fetches with no body (HEAD)";
    fetch_length: Counter, "Fetches with a Content-Length body";
    fetch_chunked: Counter, "Fetches with a chunked body";
    fetch_eof: Counter, "Fetches with a read-until-close body";
    fetch_none: Counter, "Fetches with an empty body";
    fetch_204: Counter, "Fetches with no body (204)";
    fetch_304: Counter, "Fetches with no body (304)";
    fetch_failed: Counter, "Fetches failed";
    busy_sleep: Counter, "Requests sent to sleep on a busy object";
    busy_wakeup: Counter, "Requests woken after sleeping on a busy object";
    busy_killed: Counter, "Requests refused because the waiting list was full";
    n_object: Gauge [shard], "Objects in the cache";
    n_backend: Gauge [plane], "Backends of the loaded VCLs";
    n_expired: Counter, "Objects expired";
    n_lru_nuked: Counter, "Objects evicted to make room";
    s_pipe: Counter, "Piped sessions (return (pipe))";
    s_pass: Counter, "Passed requests";
    s_fetch: Counter, "Backend fetches (misses, passes and background fetches)";
    s_bgfetch: Counter, "Background fetches";
    s_synth: Counter, "Synthetic responses made";
    s_req_hdrbytes: Counter(Bytes), "Request header bytes received";
    s_req_bodybytes: Counter(Bytes), "Request body bytes received";
    s_resp_hdrbytes: Counter(Bytes), "Response header bytes sent";
    s_resp_bodybytes: Counter(Bytes), "Response body bytes sent";
    s_pipe_in: Counter(Bytes), "Bytes piped from clients to backends";
    s_pipe_out: Counter(Bytes), "Bytes piped from backends to clients";
    backend_req: Counter, "Backend requests sent";
    n_vcl: Gauge [plane], "Loaded VCLs";
    vcl_fail: Counter, "VCL failures (return (fail), runtime errors): answered with 503";
    bans: Gauge, "Bans in the ban list";
    bans_completed: Gauge, "Bans in the list marked completed (no longer tested)";
    bans_obj: Gauge, "Bans in the list with obj.* tests";
    bans_req: Gauge, "Bans in the list with req.* tests";
    bans_added: Counter, "Bans added";
    bans_deleted: Counter, "Bans retired from the list";
    bans_tested: Counter, "Objects tested against bans at lookup";
    bans_obj_killed: Counter, "Objects removed by bans at lookup";
    bans_lurker_tested: Counter, "Objects tested against bans by the background sweep";
    bans_tests_tested: Counter, "Ban conditions evaluated at lookup";
    bans_lurker_tests_tested: Counter, "Ban conditions evaluated by the background sweep";
    bans_lurker_obj_killed: Counter, "Objects removed by bans by the background sweep";
    bans_dups: Counter, "Bans marked completed because an identical ban was added";
    n_purges: Counter, "Purges executed (return (purge))";
    n_obj_purged: Counter, "Objects and variants removed by purges";
    s_restart: Counter, "Requests restarted by VCL (return (restart))";
    fetch_retry: Counter, "Backend fetches retried by VCL (return (retry))";
    storage_bytes: Gauge(Bytes) [shard], "Bytes of cache storage in use";
    shard_hop: Counter [shard], "Lookups sent to another shard (cross-shard hops)";
    shard_hop_answered: Counter [shard_only], "Lookups answered for another shard";
    log_dropped: Counter [plane], "Log lines dropped because the log writer was behind";
    access_log_dropped: Counter [plane], "Access log lines dropped because the writer was behind";
});

/// Number of counters.
pub const N: usize = TABLE.len();

/// One shard's counters, on their own cache lines.
#[repr(align(64))]
pub struct ShardCounters {
    values: [AtomicU64; N],
}

impl Default for ShardCounters {
    fn default() -> Self {
        ShardCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ShardCounters {
    /// Adds `n`. Only the owning shard may call this (single writer: load + store, no RMW).
    #[inline]
    pub fn add(&self, c: C, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self, c: C) {
        self.add(c, 1);
    }

    /// Sets a gauge. Only the owning shard may call this.
    #[inline]
    pub fn set(&self, c: C, n: u64) {
        self.values[c as usize].store(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: C) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    fn get_index(&self, i: usize) -> u64 {
        self.values[i].load(Ordering::Relaxed)
    }
}

/// Every shard's counters (MAIN and VBE), plus one MAIN row the control plane writes; readers
/// sum them.
pub struct Stats {
    shards: Box<[ShardCounters]>,
    /// Counters of control-plane events (the ban list). Written with atomic read-modify-write
    /// (`control_add`), since several admin threads may write; shards never write it.
    control: ShardCounters,
    vbe: vbe::VbeStats,
}

impl Stats {
    pub fn new(shards: usize) -> Stats {
        let n = shards.max(1);
        Stats {
            shards: (0..n).map(|_| ShardCounters::default()).collect(),
            control: ShardCounters::default(),
            vbe: vbe::VbeStats::new(n),
        }
    }

    /// How many shards keep counters.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Adds `n` to a control-plane counter (any thread).
    pub fn control_add(&self, c: C, n: u64) {
        self.control.values[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a control-plane gauge (any thread).
    pub fn control_set(&self, c: C, n: u64) {
        self.control.set(c, n);
    }

    pub fn shard(&self, i: usize) -> &ShardCounters {
        &self.shards[i]
    }

    /// Shard `i`'s per-backend counters.
    pub fn vbe_shard(&self, i: usize) -> &vbe::VbeShard {
        self.vbe.shard(i)
    }

    /// The per-backend counters, summed on read.
    pub fn vbe(&self) -> &vbe::VbeStats {
        &self.vbe
    }

    /// Sum of one counter over all shards.
    pub fn total(&self, c: C) -> u64 {
        self.rows().map(|s| s.get(c)).sum()
    }

    fn rows(&self) -> impl Iterator<Item = &ShardCounters> {
        self.shards.iter().chain(std::iter::once(&self.control))
    }
}

/// The `fetch_*` counter of a backend response, by Varnish's rules (`V1F_FetchRespHdr`): the
/// request's method first (HEAD), then the status (204, 304), then the body's framing.
pub fn fetch_kind(
    head_request: bool,
    status: u16,
    framing: &crate::http::request::BodyFraming,
) -> C {
    use crate::http::request::BodyFraming;
    if head_request {
        return C::fetch_head;
    }
    match (status, framing) {
        (204, _) => C::fetch_204,
        (304, _) => C::fetch_304,
        (_, BodyFraming::Chunked) => C::fetch_chunked,
        (_, BodyFraming::Length(n)) if *n > 0 => C::fetch_length,
        (_, BodyFraming::UntilClose) => C::fetch_eof,
        _ => C::fetch_none,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::BodyFraming;

    #[test]
    fn per_shard_counters_sum_on_read() {
        let s = Stats::new(3);
        s.shard(0).inc(C::cache_hit);
        s.shard(2).add(C::cache_hit, 4);
        s.shard(1).inc(C::cache_miss);
        assert_eq!(s.total(C::cache_hit), 5);
        assert_eq!(s.total(C::cache_miss), 1);
        s.shard(1).set(C::n_object, 7);
        assert_eq!(s.total(C::n_object), 7);
        assert_eq!(s.shard_count(), 3);
        s.control_add(C::bans_added, 2);
        s.control_set(C::bans, 3);
        s.shard(0).inc(C::bans_tested);
        assert_eq!((s.total(C::bans_added), s.total(C::bans)), (2, 3));
    }

    #[test]
    fn byte_counters_say_so() {
        for d in TABLE {
            let bytes = d.field.ends_with("bytes") || d.field.starts_with("s_pipe_");
            assert_eq!(d.format == Format::Bytes, bytes, "{}", d.field);
        }
        assert_eq!(Format::Bytes.letter(), 'B');
        assert_eq!(CounterKind::Gauge.letter(), 'g');
        assert_eq!(CounterKind::Bitmap.letter(), 'b');
        assert_eq!(Format::Bitmap.letter(), 'b');
    }

    #[test]
    fn names_are_unique_and_scoped() {
        let mut names: Vec<_> = TABLE.iter().map(|d| d.field).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N);
        assert_eq!(TABLE[0].field, "uptime", "MAIN.uptime comes first");
        assert_eq!(TABLE[C::uptime as usize].scope, Scope::Plane);
        assert!(!Scope::ShardOnly.main() && Scope::ShardOnly.shard());
        assert!(Scope::MainAndShard.main() && Scope::MainAndShard.shard());
        assert!(Scope::Plane.main() && !Scope::Plane.shard());
        // The enum and the table agree.
        assert_eq!(TABLE[C::cache_miss as usize].field, "cache_miss");
        assert_eq!(
            TABLE[C::access_log_dropped as usize].field,
            "access_log_dropped"
        );
    }

    #[test]
    fn every_counter_is_documented() {
        let doc = include_str!("../../docs/counters.md");
        for d in TABLE {
            let want = match d.scope {
                Scope::ShardOnly => format!("| `{}` |", d.field),
                _ => format!("| `MAIN.{}` |", d.field),
            };
            assert!(doc.contains(&want), "docs/counters.md lacks {want}");
            if d.scope.shard() {
                let row = format!("| `{}` |", d.field);
                assert!(doc.contains(&row), "docs/counters.md lacks SHARD row {row}");
            }
        }
        for d in vbe::VBE_TABLE {
            assert!(
                doc.contains(&format!("`{}`", d.field)),
                "docs/counters.md lacks VBE field {}",
                d.field
            );
        }
    }

    #[test]
    fn fetch_kinds_follow_varnish() {
        let k = |head, status, f: BodyFraming| fetch_kind(head, status, &f);
        assert_eq!(k(true, 200, BodyFraming::None), C::fetch_head);
        assert_eq!(k(true, 204, BodyFraming::None), C::fetch_head);
        assert_eq!(k(false, 204, BodyFraming::None), C::fetch_204);
        assert_eq!(k(false, 304, BodyFraming::None), C::fetch_304);
        assert_eq!(k(false, 200, BodyFraming::Length(5)), C::fetch_length);
        assert_eq!(k(false, 200, BodyFraming::Length(0)), C::fetch_none);
        assert_eq!(k(false, 200, BodyFraming::Chunked), C::fetch_chunked);
        assert_eq!(k(false, 200, BodyFraming::UntilClose), C::fetch_eof);
        assert_eq!(k(false, 200, BodyFraming::None), C::fetch_none);
    }
}
