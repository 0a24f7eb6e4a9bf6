//! Counters: declared once, kept per shard, summed on read.
//!
//! Why this shape: a shard is the only writer of its own counters, so an increment is a relaxed
//! load and store on a cache line no other core writes (no `lock` prefix, no sharing); readers on
//! the control plane sum every shard's copy. The `counters!` table is the single declaration of
//! each counter's name, kind and description, in Varnish's `MAIN.*` names where the meaning is the
//! same, so `varnishstat` habits carry over.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a counter measures (Varnish's `flag`: c counter, g gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    Counter,
    Gauge,
}

/// How a counter's value reads (Varnish's `format`: i integer, B bytes, d duration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Integer,
    Bytes,
    /// Seconds.
    Duration,
}

impl Format {
    /// The letter `varnishstat -j` prints.
    pub fn letter(self) -> char {
        match self {
            Format::Integer => 'i',
            Format::Bytes => 'B',
            Format::Duration => 'd',
        }
    }
}

impl CounterKind {
    /// The letter `varnishstat -j` prints as `flag`.
    pub fn letter(self) -> char {
        match self {
            CounterKind::Counter => 'c',
            CounterKind::Gauge => 'g',
        }
    }
}

/// One row of the counter table.
#[derive(Debug)]
pub struct CounterDef {
    pub name: &'static str,
    pub kind: CounterKind,
    pub format: Format,
    pub description: &'static str,
}

macro_rules! format_or_integer {
    () => {
        Format::Integer
    };
    ($f:ident) => {
        Format::$f
    };
}

macro_rules! counters {
    ($( $name:ident : $kind:ident $(($fmt:ident))?, $desc:literal; )*) => {
        /// Index of each counter in a shard's counter array.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum C { $( $name, )* }

        /// The table, in declaration order.
        pub static TABLE: &[CounterDef] = &[ $( CounterDef {
            name: concat!("MAIN.", stringify!($name)),
            kind: CounterKind::$kind,
            format: format_or_integer!($($fmt)?),
            description: $desc,
        }, )* ];
    };
}

counters! {
    sess_conn: Counter, "Sessions accepted";
    sess_dropped: Counter, "Sessions refused because client_conn_max was reached";
    sess_closed_err: Counter, "Sessions closed for a client error (bad request, timeout)";
    client_req: Counter, "Good client requests received";
    client_req_400: Counter, "Client requests refused as malformed (4xx/5xx before processing)";
    cache_hit: Counter, "Cache hits (including grace hits)";
    cache_hit_grace: Counter, "Cache grace hits (stale objects delivered)";
    cache_hitpass: Counter, "Cache hits for pass";
    cache_hitmiss: Counter, "Cache hits for miss";
    cache_miss: Counter, "Cache misses";
    backend_conn: Counter, "Backend connections opened";
    backend_reuse: Counter, "Backend connections reused from a pool";
    backend_recycle: Counter, "Backend connections returned to a pool";
    backend_retry: Counter, "Backend requests retried on a fresh connection";
    backend_fail: Counter, "Backend connections failed";
    backend_req: Counter, "Backend requests sent";
    backend_unhealthy: Counter, "Fetches not attempted because the backend was unhealthy";
    backend_busy: Counter, "Fetches not attempted because the backend was at max_connections";
    backend_wait: Counter, "Fetches that queued for a connection at max_connections";
    backend_wait_fail: Counter, "Queued fetches that got no connection (timeout, backend sick)";
    backend_helddown: Counter, "Fetches not attempted because connects to the backend were held down";
    backend_failover: Counter, "Fetches moved to the director's next candidate (ringcache extension)";
    fetch_head: Counter, "Fetches with no body (HEAD)";
    fetch_length: Counter, "Fetches with a Content-Length body";
    fetch_chunked: Counter, "Fetches with a chunked body";
    fetch_eof: Counter, "Fetches with a read-until-close body";
    fetch_none: Counter, "Fetches with no body (1xx, 204, 304)";
    fetch_failed: Counter, "Fetches failed";
    busy_sleep: Counter, "Requests sent to sleep on a busy object";
    busy_wakeup: Counter, "Requests woken after sleeping on a busy object";
    busy_killed: Counter, "Requests refused because the waiting list was full";
    n_object: Gauge, "Objects in the cache";
    n_expired: Counter, "Objects expired";
    n_lru_nuked: Counter, "Objects evicted to make room";
    s_pass: Counter, "Passed requests";
    s_synth: Counter, "Synthetic responses made";
    s_pipe: Counter, "Piped sessions (return (pipe))";
    s_pipe_in: Counter(Bytes), "Bytes piped from clients to backends";
    s_pipe_out: Counter(Bytes), "Bytes piped from backends to clients";
    n_purges: Counter, "Purges executed (return (purge))";
    n_obj_purged: Counter, "Objects and variants removed by purges";
    vcl_fail: Counter, "VCL failures (return (fail), runtime errors): answered with 503";
    s_restart: Counter, "Requests restarted by VCL (return (restart))";
    fetch_retry: Counter, "Backend fetches retried by VCL (return (retry))";
    s_fetch: Counter, "Backend fetches";
    s_bgfetch: Counter, "Background fetches";
    s_req_hdrbytes: Counter(Bytes), "Request header bytes received";
    s_req_bodybytes: Counter(Bytes), "Request body bytes received";
    s_resp_hdrbytes: Counter(Bytes), "Response header bytes sent";
    s_resp_bodybytes: Counter(Bytes), "Response body bytes sent";
    storage_bytes: Gauge(Bytes), "Bytes of cache storage in use";
    shard_hop: Counter, "Lookups sent to another shard (cross-shard hops)";
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
}

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

/// Every shard's counters, plus one row the control plane writes; readers sum them.
pub struct Stats {
    shards: Box<[ShardCounters]>,
    /// Counters of control-plane events (the ban list). Written with atomic read-modify-write
    /// (`control_add`), since several admin threads may write; shards never write it.
    control: ShardCounters,
}

impl Stats {
    pub fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1))
                .map(|_| ShardCounters::default())
                .collect(),
            control: ShardCounters::default(),
        }
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

    /// Sum of one counter over all shards.
    pub fn total(&self, c: C) -> u64 {
        self.rows().map(|s| s.get(c)).sum()
    }

    fn rows(&self) -> impl Iterator<Item = &ShardCounters> {
        self.shards.iter().chain(std::iter::once(&self.control))
    }

    /// Every counter summed over shards, in table order.
    pub fn snapshot(&self) -> Vec<(&'static CounterDef, u64)> {
        TABLE
            .iter()
            .enumerate()
            .map(|(i, def)| (def, self.rows().map(|s| s.get_index(i)).sum()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_shard_counters_sum_on_read() {
        let s = Stats::new(3);
        s.shard(0).inc(C::cache_hit);
        s.shard(2).add(C::cache_hit, 4);
        s.shard(1).inc(C::cache_miss);
        assert_eq!(s.total(C::cache_hit), 5);
        assert_eq!(s.total(C::cache_miss), 1);
        let snap = s.snapshot();
        assert_eq!(snap.len(), N);
        let hit = snap
            .iter()
            .find(|(d, _)| d.name == "MAIN.cache_hit")
            .map(|(_, v)| *v);
        assert_eq!(hit, Some(5));
        s.shard(1).set(C::n_object, 7);
        assert_eq!(s.total(C::n_object), 7);
        s.control_add(C::bans_added, 2);
        s.control_set(C::bans, 3);
        s.shard(0).inc(C::bans_tested);
        assert_eq!((s.total(C::bans_added), s.total(C::bans)), (2, 3));
        let snap = s.snapshot();
        let get = |n: &str| snap.iter().find(|(d, _)| d.name == n).map(|(_, v)| *v);
        assert_eq!(get("MAIN.bans_added"), Some(2));
        assert_eq!(get("MAIN.bans_tested"), Some(1));
    }

    #[test]
    fn byte_counters_say_so() {
        for d in TABLE {
            let bytes = d.name.ends_with("bytes") || d.name.starts_with("MAIN.s_pipe_");
            assert_eq!(d.format == Format::Bytes, bytes, "{}", d.name);
        }
        assert_eq!(Format::Bytes.letter(), 'B');
        assert_eq!(CounterKind::Gauge.letter(), 'g');
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = TABLE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N);
    }
}
