//! The ban list's owner on the control plane, and its publication to the shards.
//!
//! Why here and not in a shard: a ban applies to every shard's objects, and comes from the
//! admin CLI (`ban`) or from VCL (`ban()`, `std.ban()`) on any shard, so the list has one owner
//! that numbers the bans and publishes immutable snapshots ([`BanSnapshot`]) under a generation
//! counter (`control::Published`); a shard compares the generation on each lookup and takes the
//! snapshot only when it moved. Adding a ban takes this module's mutex for a push and a pointer
//! swap, never across I/O (from VCL that is on a shard's request path, but only for a request
//! that bans).
//!
//! Retiring bans needs to know which bans objects still have to be tested against. Each shard
//! publishes, from its upkeep tick and without blocking (`try_lock`), how many of its objects
//! sit at each ban checkpoint, and the newest ban it had seen; [`Bans::retire`], run by the
//! control plane once a second and before `ban.list`, drops the bans older than every shard's
//! oldest checkpoint (see `cache::ban::BanList::retire`).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::cache::ban::{BanList, BanSnapshot, BanSpec};
use crate::control::Published;
use crate::health::epoch_now;
use crate::stats::{Stats, C};

/// What one shard last told about its objects.
#[derive(Default)]
struct ShardRefs {
    /// Objects per ban checkpoint, ascending.
    refs: Vec<(u64, usize)>,
    /// The newest ban the shard had seen: objects it stores from now on start there.
    newest: u64,
}

/// One row of `ban.list`.
#[derive(Debug, Clone, PartialEq)]
pub struct BanRow {
    /// When it was added (seconds since the epoch).
    pub time: f64,
    /// Objects whose checkpoint is this ban.
    pub refs: u64,
    pub completed: bool,
    /// The spec as text, and escaped for JSON.
    pub spec: String,
    pub spec_json: String,
}

/// The ban list and what the shards see of it.
pub struct Bans {
    list: Mutex<BanList>,
    published: Published<BanSnapshot>,
    shards: Box<[Mutex<ShardRefs>]>,
    stats: Arc<Stats>,
}

impl Bans {
    pub fn new(shards: usize, stats: Arc<Stats>) -> Bans {
        let list = BanList::new(epoch_now());
        let published = Published::new(list.snapshot());
        let b = Bans {
            list: Mutex::new(list),
            published,
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(ShardRefs::default()))
                .collect(),
            stats,
        };
        b.update_gauges(&b.lock());
        b
    }

    fn lock(&self) -> MutexGuard<'_, BanList> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes whenever the list changes (a shard compares it on each lookup).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.published.generation()
    }

    /// The list as the shards test it.
    pub fn snapshot(&self) -> Arc<BanSnapshot> {
        self.published.current()
    }

    /// Adds a ban; lookups that start after this returns test objects against it.
    pub fn add(&self, spec: BanSpec) -> u64 {
        let mut list = self.lock();
        let added = list.add(spec, epoch_now(), true);
        self.stats.control_add(C::bans_added, 1);
        self.stats.control_add(C::bans_dups, added.dups);
        self.published.set(list.snapshot());
        self.update_gauges(&list);
        added.seq
    }

    /// Shard `shard` reports its objects per checkpoint and the newest ban it has seen.
    /// Never blocks: `false` if the slot is busy (the shard tries again at its next tick).
    pub fn report(&self, shard: usize, refs: Vec<(u64, usize)>, newest: u64) -> bool {
        let Some(slot) = self.shards.get(shard) else {
            return true;
        };
        match slot.try_lock() {
            Ok(mut s) => {
                *s = ShardRefs { refs, newest };
                true
            }
            Err(_) => false,
        }
    }

    /// The oldest checkpoint any object has or will get: below it no ban is needed.
    fn floor(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.refs.first().map_or(s.newest, |r| r.0.min(s.newest))
            })
            .min()
            .unwrap_or(0)
    }

    /// Drops the bans every object has been tested against (see the module comment).
    pub fn retire(&self) {
        let floor = self.floor();
        let mut list = self.lock();
        let gone = list.retire(floor);
        if gone > 0 {
            self.stats.control_add(C::bans_deleted, gone);
            self.published.set(list.snapshot());
            self.update_gauges(&list);
        }
    }

    /// `ban.list`: newest first, with each ban's object count as the shards last reported it.
    pub fn rows(&self) -> Vec<BanRow> {
        self.retire();
        let mut refs: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            for &(seq, n) in &s.refs {
                *refs.entry(seq).or_default() += n as u64;
            }
        }
        // Rendered outside the lock: a shard adding a ban from VCL never waits for this.
        let bans: Vec<_> = self.lock().iter().cloned().collect();
        bans.iter()
            .map(|b| BanRow {
                time: b.time,
                refs: refs.get(&b.seq).copied().unwrap_or(0),
                completed: b.completed,
                spec: b.spec.render(false),
                spec_json: b.spec.render(true),
            })
            .collect()
    }

    fn update_gauges(&self, list: &BanList) {
        let (mut completed, mut obj, mut req) = (0, 0, 0);
        for b in list.iter() {
            if b.completed {
                completed += 1;
            } else {
                obj += u64::from(b.spec.has_obj());
                req += u64::from(b.spec.has_req());
            }
        }
        self.stats.control_set(C::bans, list.len() as u64);
        self.stats.control_set(C::bans_completed, completed);
        self.stats.control_set(C::bans_obj, obj);
        self.stats.control_set(C::bans_req, req);
    }

    /// Runs [`Bans::retire`] once a second on a control-plane thread, for as long as the
    /// process lives.
    pub fn spawn_keeper(self: &Arc<Bans>) -> std::io::Result<()> {
        let bans = Arc::clone(self);
        std::thread::Builder::new()
            .name("ringcache-bans".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                bans.retire();
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> BanSpec {
        let args: Vec<String> = s.split(' ').map(str::to_string).collect();
        BanSpec::parse_cli(&args).expect(s)
    }

    // Goal: bans are published with a new generation, counted, and retired only once every
    // shard has reported checkpoints past them (a shard that never reported holds them).
    #[test]
    fn add_publish_retire() {
        let stats = Arc::new(Stats::new(2));
        let bans = Bans::new(2, stats.clone());
        let g0 = bans.generation();
        assert_eq!(bans.add(spec("req.url ~ a")), 1);
        assert_eq!(bans.add(spec("obj.status == 500")), 2);
        assert!(bans.generation() > g0);
        assert_eq!(bans.snapshot().newest, 2);
        assert_eq!(stats.total(C::bans_added), 2);
        assert_eq!(stats.total(C::bans), 3);
        assert_eq!((stats.total(C::bans_req), stats.total(C::bans_obj)), (1, 1));
        // Shard 0 has objects at 1; shard 1 has not reported: nothing goes.
        assert!(bans.report(0, vec![(1, 5)], 2));
        bans.retire();
        assert_eq!(bans.rows().len(), 3);
        // Shard 1 is empty and has seen ban 2: the placeholder (0) goes, 1 stays (referenced).
        assert!(bans.report(1, vec![], 2));
        let rows = bans.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].refs, 5);
        assert_eq!(rows[1].spec, "req.url ~ a");
        assert_eq!(stats.total(C::bans_deleted), 1);
        // Everything checked up to 2: only the newest is left.
        assert!(bans.report(0, vec![(2, 5)], 2));
        let rows = bans.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].refs, rows[0].completed), (5, false));
        assert_eq!(stats.total(C::bans), 1);
        // An identical ban completes the older one.
        bans.add(spec("obj.status == 500"));
        assert_eq!(stats.total(C::bans_dups), 1);
        let rows = bans.rows();
        assert_eq!(
            rows.iter().map(|r| r.completed).collect::<Vec<_>>(),
            vec![false, true]
        );
    }
}
