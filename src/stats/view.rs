//! Every counter as one list of readings: what `stat` (`varnishstat -1`/`-j`) and the
//! Prometheus endpoint print.
//!
//! Why one list: the two outputs must agree (a dashboard built on one and an alert on the other
//! must see the same numbers), so both are renderings of the same readings, taken at once. The
//! shards' arrays are summed here (relaxed loads, no message to any shard); what only the control
//! plane knows (uptime, loaded VCLs and their backends, probe bitmaps, the poller's lateness, log
//! drops) comes in a [`Plane`].

use std::sync::Arc;

use super::vbe::{Vbe, VBE_TABLE};
use super::{CounterDef, CounterKind, Format, Scope, Stats, C, TABLE};

/// Takes a reading of every counter (built by boot; shared by `stat` and the metrics endpoint).
pub type Readings = Arc<dyn Fn() -> Vec<Reading> + Send + Sync>;

/// A backend of a loaded VCL, as the control plane knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneBackend {
    pub vcl: Arc<str>,
    pub name: Arc<str>,
    /// Its health slot (where the shards count its traffic).
    pub slot: usize,
    /// The probe's happy bitmap (newest poke in bit 0); 0 without a probe.
    pub happy: u64,
    /// Connections in use (over all shards).
    pub conn: u64,
}

/// What the control plane adds to the shards' counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plane {
    /// Seconds since start.
    pub uptime: u64,
    pub n_vcl: u64,
    /// Backends of every loaded VCL: VCLs in load order, backends in declaration order.
    pub backends: Vec<PlaneBackend>,
    /// `None`: no poller (unit tests).
    pub poller: Option<crate::admin::PollerStats>,
    pub log_dropped: u64,
    pub access_log_dropped: u64,
}

impl Plane {
    /// The value of a `plane` row of the MAIN table.
    fn main_value(&self, field: &str) -> u64 {
        match field {
            "uptime" => self.uptime,
            "n_vcl" => self.n_vcl,
            "n_backend" => self.backends.len() as u64,
            "log_dropped" => self.log_dropped,
            "access_log_dropped" => self.access_log_dropped,
            _ => 0,
        }
    }
}

/// Which family a reading belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// `MAIN.<field>`
    Main,
    /// `VBE.<vcl>.<backend>.<field>`
    Vbe { vcl: Arc<str>, backend: Arc<str> },
    /// `SHARD.<n>.<field>`
    Shard(usize),
    /// `POLLER.<field>`
    Poller,
}

/// One counter's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub group: Group,
    pub field: &'static str,
    pub kind: CounterKind,
    pub format: Format,
    pub description: &'static str,
    pub value: u64,
}

impl Reading {
    fn of(group: Group, def: &'static CounterDef, value: u64) -> Reading {
        Reading {
            group,
            field: def.field,
            kind: def.kind,
            format: def.format,
            description: def.description,
            value,
        }
    }

    /// The varnishstat name: `MAIN.cache_hit`, `VBE.boot.b1.req`, `SHARD.0.client_req`,
    /// `POLLER.probes`.
    pub fn name(&self) -> String {
        match &self.group {
            Group::Main => format!("MAIN.{}", self.field),
            Group::Vbe { vcl, backend } => format!("VBE.{vcl}.{backend}.{}", self.field),
            Group::Shard(n) => format!("SHARD.{n}.{}", self.field),
            Group::Poller => format!("POLLER.{}", self.field),
        }
    }
}

/// The `POLLER.*` rows: probes started and their lateness (start minus due time) since start or
/// the last `poller.stats -r`.
static POLLER_TABLE: &[CounterDef] = &[
    CounterDef {
        field: "probes",
        kind: CounterKind::Counter,
        format: Format::Integer,
        scope: Scope::Plane,
        description: "Health probes started",
    },
    CounterDef {
        field: "lateness_p50_us",
        kind: CounterKind::Gauge,
        format: Format::Integer,
        scope: Scope::Plane,
        description: "Median lateness of probe starts, microseconds",
    },
    CounterDef {
        field: "lateness_p99_us",
        kind: CounterKind::Gauge,
        format: Format::Integer,
        scope: Scope::Plane,
        description: "99th percentile lateness of probe starts, microseconds",
    },
    CounterDef {
        field: "lateness_max_us",
        kind: CounterKind::Gauge,
        format: Format::Integer,
        scope: Scope::Plane,
        description: "Largest lateness of a probe start, microseconds",
    },
];

/// Every reading, in order: `MAIN` (table order), `VBE` (VCLs in load order, backends in
/// declaration order, fields in table order), `SHARD` (by shard), `POLLER`.
pub fn collect(stats: &Stats, plane: &Plane) -> Vec<Reading> {
    let shards = stats.shard_count();
    let per_shard = TABLE.iter().filter(|d| d.scope.shard()).count();
    let mut out = Vec::with_capacity(
        TABLE.len() + plane.backends.len() * VBE_TABLE.len() + shards * per_shard + 4,
    );
    for (i, def) in TABLE.iter().enumerate() {
        let value = match def.scope {
            Scope::ShardOnly => continue,
            Scope::Plane => plane.main_value(def.field),
            Scope::Main | Scope::MainAndShard => stats.rows().map(|s| s.get_index(i)).sum(),
        };
        out.push(Reading::of(Group::Main, def, value));
    }
    for b in &plane.backends {
        let totals = stats.vbe().total(b.slot);
        let group = Group::Vbe {
            vcl: b.vcl.clone(),
            backend: b.name.clone(),
        };
        for (i, def) in VBE_TABLE.iter().enumerate() {
            let value = match i {
                i if i == Vbe::happy as usize => b.happy,
                i if i == Vbe::conn as usize => b.conn,
                _ => totals[i],
            };
            out.push(Reading::of(group.clone(), def, value));
        }
    }
    for s in 0..shards {
        for (i, def) in TABLE.iter().enumerate() {
            if def.scope.shard() {
                out.push(Reading::of(
                    Group::Shard(s),
                    def,
                    stats.shard(s).get_index(i),
                ));
            }
        }
    }
    if let Some(p) = &plane.poller {
        for (def, value) in POLLER_TABLE
            .iter()
            .zip([p.probes, p.p50_us, p.p99_us, p.max_us])
        {
            out.push(Reading::of(Group::Poller, def, value));
        }
    }
    out
}

/// The value of `MAIN.<field>` in `readings`.
pub fn main_value(readings: &[Reading], c: C) -> Option<u64> {
    let field = TABLE[c as usize].field;
    readings
        .iter()
        .find(|r| r.group == Group::Main && r.field == field)
        .map(|r| r.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::PollerStats;

    fn plane() -> Plane {
        Plane {
            uptime: 9,
            n_vcl: 2,
            backends: vec![
                PlaneBackend {
                    vcl: "boot".into(),
                    name: "b1".into(),
                    slot: 0,
                    happy: 0b1011,
                    conn: 1,
                },
                PlaneBackend {
                    vcl: "v2".into(),
                    name: "b1".into(),
                    slot: 0,
                    happy: 0b1011,
                    conn: 1,
                },
            ],
            poller: Some(PollerStats {
                probes: 12,
                p50_us: 40,
                p99_us: 900,
                max_us: 3000,
            }),
            log_dropped: 4,
            access_log_dropped: 5,
        }
    }

    fn find<'a>(r: &'a [Reading], name: &str) -> Option<&'a Reading> {
        r.iter().find(|x| x.name() == name)
    }

    #[test]
    fn main_vbe_shard_and_poller_rows() {
        let s = Stats::new(2);
        s.shard(0).add(C::client_req, 3);
        s.shard(1).add(C::client_req, 4);
        s.shard(1).set(C::sess_open, 2);
        s.shard(0).inc(C::shard_hop_answered);
        s.vbe_shard(1).slot(0).add(Vbe::req, 5);
        s.control_add(C::bans_added, 2);
        let r = collect(&s, &plane());
        assert_eq!(find(&r, "MAIN.bans_added").map(|x| x.value), Some(2));
        assert_eq!(r[0].name(), "MAIN.uptime");
        assert_eq!(r[0].value, 9);
        assert_eq!(r[0].format, Format::Duration);
        assert_eq!(find(&r, "MAIN.client_req").map(|x| x.value), Some(7));
        assert_eq!(find(&r, "MAIN.n_vcl").map(|x| x.value), Some(2));
        assert_eq!(find(&r, "MAIN.n_backend").map(|x| x.value), Some(2));
        assert_eq!(find(&r, "MAIN.log_dropped").map(|x| x.value), Some(4));
        assert!(find(&r, "MAIN.sess_open").is_none(), "shard only");
        assert!(find(&r, "MAIN.shard_hop_answered").is_none(), "shard only");
        assert_eq!(find(&r, "SHARD.0.client_req").map(|x| x.value), Some(3));
        assert_eq!(find(&r, "SHARD.1.client_req").map(|x| x.value), Some(4));
        assert_eq!(find(&r, "SHARD.1.sess_open").map(|x| x.value), Some(2));
        assert_eq!(
            find(&r, "SHARD.0.shard_hop_answered").map(|x| x.value),
            Some(1)
        );
        assert!(find(&r, "SHARD.0.backend_req").is_none(), "not per shard");
        // A slot shared by two VCLs shows under both names.
        assert_eq!(find(&r, "VBE.boot.b1.req").map(|x| x.value), Some(5));
        assert_eq!(find(&r, "VBE.v2.b1.req").map(|x| x.value), Some(5));
        assert_eq!(find(&r, "VBE.v2.b1.conn").map(|x| x.value), Some(1));
        let happy = find(&r, "VBE.boot.b1.happy").expect("happy");
        assert_eq!((happy.value, happy.kind), (0b1011, CounterKind::Bitmap));
        assert_eq!(
            find(&r, "POLLER.lateness_p99_us").map(|x| x.value),
            Some(900)
        );
        assert_eq!(
            find(&r, "POLLER.probes").map(|x| x.kind),
            Some(CounterKind::Counter)
        );
        assert_eq!(main_value(&r, C::client_req), Some(7));
        // Order: MAIN, VBE, SHARD, POLLER.
        let groups: Vec<u8> = r
            .iter()
            .map(|x| match x.group {
                Group::Main => 0,
                Group::Vbe { .. } => 1,
                Group::Shard(_) => 2,
                Group::Poller => 3,
            })
            .collect();
        assert!(groups.windows(2).all(|w| w[0] <= w[1]));
        // Per-shard sums agree with MAIN for every row shown both ways.
        for def in TABLE.iter().filter(|d| d.scope == Scope::MainAndShard) {
            let main = find(&r, &format!("MAIN.{}", def.field)).map(|x| x.value);
            let sum: u64 = (0..2)
                .filter_map(|n| find(&r, &format!("SHARD.{n}.{}", def.field)))
                .map(|x| x.value)
                .sum();
            assert_eq!(main, Some(sum), "{}", def.field);
        }
    }

    #[test]
    fn no_poller_no_rows() {
        let s = Stats::new(1);
        let r = collect(&s, &Plane::default());
        assert!(r.iter().all(|x| x.group != Group::Poller));
        assert!(r.iter().all(|x| !matches!(x.group, Group::Vbe { .. })));
    }
}
