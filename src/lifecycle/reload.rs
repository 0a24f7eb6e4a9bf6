//! `SIGHUP`: load the `-f` file again as a new VCL and switch to it, as `varnishreload` does.
//!
//! Why through the admin `Control` trait: a reload is exactly `vcl.load reload_... FILE` then
//! `vcl.use reload_...` (what Varnish's reload tooling sends over the CLI), so it takes the same
//! path as those commands: the same compile, the same backend slots shared with the running VCL
//! (so the new VCL starts with current health), the same generation bump that makes each shard
//! pick the new VCL for its next request while requests in flight finish on the one they
//! started with, and the same `VCL_Event` lines in the log.
//!
//! Names are varnishreload's, `reload_<UTC date>_<UTC time>_<n>`, where `<n>` (varnishreload
//! uses its PID) is the reload's sequence number in this process, so two reloads in one second
//! still get distinct names and `varnishreload -m` recognises them. After a successful switch
//! the older *available* reload VCLs are discarded until [`RELOADS_KEPT`] are left: one reload
//! back and the one before it stay loaded for a quick `vcl.use` rollback, and nothing piles up.
//! VCLs loaded by hand over the admin port and `boot` are never discarded by a reload.

use std::path::Path;

use crate::admin::{Control, VclRow, VclText};

/// Available (not active) reload VCLs kept after a reload.
pub const RELOADS_KEPT: usize = 2;

/// `reload_YYYYMMDD_HHMMSS_<seq>` for `unix_secs` (UTC).
pub fn reload_name(unix_secs: u64, seq: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "reload_{y:04}{m:02}{d:02}_{:02}{:02}{:02}_{seq}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Does `name` look like a reload VCL (`reload_<digits>_<digits>_<digits>`, varnishreload's
/// pattern)?
pub fn is_reload_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("reload_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The reload VCLs to discard: the available ones (in load order) except the newest `keep`.
pub fn to_discard(rows: &[VclRow], keep: usize) -> Vec<String> {
    let available: Vec<&VclRow> = rows
        .iter()
        .filter(|r| !r.active && is_reload_name(&r.name))
        .collect();
    let n = available.len().saturating_sub(keep);
    available[..n].iter().map(|r| r.name.clone()).collect()
}

/// What a reload did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `name` is active now; the compiler's warnings (maybe empty) and the VCLs discarded.
    Switched {
        name: String,
        warnings: String,
        discarded: Vec<String>,
    },
    /// Nothing changed: the file did not compile (the compiler's output) or could not be used.
    Refused { name: String, error: String },
}

/// Loads `path` as a new VCL (named from `unix_secs` and `seq`, made unique against what is
/// loaded), makes it active and discards old reloads.
pub fn reload(control: &dyn Control, path: &Path, unix_secs: u64, mut seq: u64) -> Outcome {
    let rows = control.vcls();
    let mut name = reload_name(unix_secs, seq);
    while rows.iter().any(|r| r.name == name) {
        seq += 1;
        name = reload_name(unix_secs, seq);
    }
    let warnings = match control.vcl_load(&name, VclText::File(path.to_path_buf())) {
        Ok(w) => w,
        Err(error) => return Outcome::Refused { name, error },
    };
    if let Err(error) = control.vcl_use(&name) {
        // Only possible if an admin discarded it in between; nothing is switched.
        return Outcome::Refused { name, error };
    }
    let mut discarded = Vec::new();
    for old in to_discard(&control.vcls(), RELOADS_KEPT) {
        if control.vcl_discard(&old).is_ok() {
            discarded.push(old);
        }
    }
    Outcome::Switched {
        name,
        warnings,
        discarded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_varnishreload() {
        assert_eq!(reload_name(0, 1), "reload_19700101_000000_1");
        // 2026-11-21 16:10:40 UTC.
        assert_eq!(reload_name(1_795_277_440, 12), "reload_20261121_161040_12");
        // A leap day.
        assert_eq!(
            reload_name(951_782_400 + 3_599, 3),
            "reload_20000229_005959_3"
        );
        assert!(is_reload_name(&reload_name(1_795_277_440, 7)));
        assert!(is_reload_name("reload_20261121_161040_4242"));
        for bad in [
            "boot",
            "reload_",
            "reload_1_2",
            "reload_1_2_3_4",
            "reload_a_2_3",
            "reload_1__3",
            "xreload_1_2_3",
        ] {
            assert!(!is_reload_name(bad), "{bad}");
        }
    }

    fn row(name: &str, active: bool) -> VclRow {
        VclRow {
            name: name.into(),
            active,
            state: "auto",
            temperature: "warm",
            busy: 0,
        }
    }

    #[test]
    fn discards_old_available_reloads_only() {
        let rows = vec![
            row("boot", false),
            row("reload_1_1_1", false),
            row("mine", false),
            row("reload_1_1_2", false),
            row("reload_1_1_3", false),
            row("reload_1_1_4", true),
        ];
        assert_eq!(to_discard(&rows, 2), vec!["reload_1_1_1".to_string()]);
        assert_eq!(
            to_discard(&rows, 0),
            vec!["reload_1_1_1", "reload_1_1_2", "reload_1_1_3"]
        );
        assert!(to_discard(&rows, 3).is_empty());
        assert!(
            to_discard(&rows[..1], 0).is_empty(),
            "boot is never a reload"
        );
    }
}
