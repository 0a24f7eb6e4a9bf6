//! The `stat` command's output: `varnishstat -1` and `varnishstat -j`, byte for byte, and
//! varnishstat's `-f` filter (fnmatch globs, `^` to exclude, first match wins).

use std::fmt::Write as _;

use crate::stats::view::Reading;
use crate::stats::CounterKind;

/// varnishstat's `-f` list (`vsc_filter`): patterns in the order given; the first that matches
/// decides (include, or exclude for `^PATTERN`); a name no pattern matches is shown only if
/// there is no include pattern at all.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    rules: Vec<(bool, String)>,
}

impl Filter {
    /// Adds one `-f` argument.
    pub fn add(&mut self, arg: &str) {
        match arg.strip_prefix('^') {
            Some(p) => self.rules.push((false, p.to_string())),
            None => self.rules.push((true, arg.to_string())),
        }
    }

    pub fn keep(&self, name: &str) -> bool {
        let mut has_include = false;
        for (include, pattern) in &self.rules {
            if fnmatch(pattern.as_bytes(), name.as_bytes()) {
                return *include;
            }
            has_include |= *include;
        }
        !has_include
    }
}

pub use super::backend::fnmatch;

/// `varnishstat -1`: name padded to a column that starts at 18 and widens past any longer
/// name, value `%12ju`, rate per second of uptime `%12.2f` for counters (`.  ` otherwise),
/// then the description.
pub fn format_once(rows: &[Reading], uptime: u64) -> String {
    let mut out = String::with_capacity(rows.len() * 80);
    let mut pad = 18;
    for r in rows {
        let name = r.name();
        let len = name.len();
        if len >= pad {
            pad = len + 1;
        }
        out.push_str(&name);
        out.extend(std::iter::repeat_n(' ', pad - len));
        if r.kind == CounterKind::Counter {
            let rate = if uptime > 0 {
                r.value as f64 / uptime as f64
            } else {
                0.0
            };
            let _ = writeln!(out, "{:>12} {:>12.2} {}", r.value, rate, r.description);
        } else {
            let _ = writeln!(out, "{:>12} {:>12} {}", r.value, ".  ", r.description);
        }
    }
    out
}

/// `varnishstat -j` (schema version 1).
pub fn format_json(rows: &[Reading], timestamp: &str) -> String {
    let mut out = String::with_capacity(rows.len() * 150 + 100);
    let _ = write!(
        out,
        "{{\n  \"version\": 1,\n  \"timestamp\": \"{timestamp}\",\n  \"counters\": {{\n"
    );
    let mut sep = "";
    for r in rows {
        let _ = write!(
            out,
            "{sep}    {}: {{\n      \"description\": {},\n      \"flag\": \"{}\",\n      \
             \"format\": \"{}\",\n      \"value\": {}\n    }}",
            json_str(&r.name()),
            json_str(r.description),
            r.kind.letter(),
            r.format.letter(),
            r.value
        );
        sep = ",\n";
    }
    out.push_str("\n  }\n}\n");
    out
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    json_escape_into(&mut out, s);
    out.push('"');
    out
}

/// Appends `s` escaped for a JSON string, without the quotes (as Varnish's `VCLI_Quote`).
pub fn json_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `strftime("%Y-%m-%dT%H:%M:%S", localtime(t))`, as varnishstat stamps its JSON.
pub fn local_timestamp(unix_secs: i64) -> String {
    let tm = crate::logs::local_tm(unix_secs);
    match tm {
        Some(tm) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            tm.tm_year as i64 + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => "1970-01-01T00:00:00".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::view::Group;
    use crate::stats::Format;

    fn row(name: &'static str, value: u64, kind: CounterKind) -> Reading {
        Reading {
            group: Group::Main,
            field: name.trim_start_matches("MAIN."),
            value,
            kind,
            format: Format::Integer,
            description: "Desc",
        }
    }

    #[test]
    fn globs_like_fnmatch() {
        let m = |p: &str, n: &str| fnmatch(p.as_bytes(), n.as_bytes());
        assert!(m("MAIN.*", "MAIN.cache_hit"));
        assert!(m("*", "MAIN.x"));
        assert!(m("*.cache_hi?", "MAIN.cache_hit"));
        assert!(!m("*.cache_hi?", "MAIN.cache_hit_grace"));
        assert!(m("MAIN.cache_*", "MAIN.cache_"));
        assert!(m("*hit*", "MAIN.cache_hitpass"));
        assert!(m("MAIN.[bc]*", "MAIN.cache_hit"));
        assert!(!m("MAIN.[!bc]*", "MAIN.cache_hit"));
        assert!(m("MAIN.[a-d]ache*", "MAIN.cache_hit"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a[b", "a[b"));
        assert!(!m("MAIN.cache_hit", "MAIN.cache_hits"));
        assert!(!m("", "x"));
        assert!(m("", ""));
        assert!(m("*a*a*a*a*a*b", &format!("{}b", "a".repeat(40))));
        assert!(!m("*a*a*a*a*a*b", &"a".repeat(40)));
    }

    #[test]
    fn filter_first_match_wins() {
        let mut f = Filter::default();
        assert!(f.keep("MAIN.x"));
        f.add("^MAIN.cache_*");
        assert!(f.keep("MAIN.x"), "only exclusions: the rest is shown");
        assert!(!f.keep("MAIN.cache_hit"));
        f.add("MAIN.cache_hit");
        assert!(!f.keep("MAIN.cache_hit"), "the exclusion came first");
        assert!(!f.keep("MAIN.x"), "an include exists, nothing matched");
        let mut f = Filter::default();
        f.add("MAIN.cache_hit");
        f.add("MAIN.cache_miss");
        assert!(f.keep("MAIN.cache_hit") && f.keep("MAIN.cache_miss"));
        assert!(!f.keep("MAIN.client_req"));
    }

    #[test]
    fn once_matches_varnishstat_columns() {
        // Lines taken from varnishstat 7.1 -1 output (with our descriptions substituted).
        let rows = [
            row("MAIN.uptime", 15, CounterKind::Counter),
            row("MAIN.sess_conn", 0, CounterKind::Counter),
            row("MAIN.sess_fail_econnaborted", 0, CounterKind::Counter),
            row("MAIN.cache_hit", 3, CounterKind::Counter),
            row("MAIN.threads", 200, CounterKind::Gauge),
        ];
        let got = format_once(&rows, 15);
        let want = "\
MAIN.uptime                 15         1.00 Desc
MAIN.sess_conn               0         0.00 Desc
MAIN.sess_fail_econnaborted            0         0.00 Desc
MAIN.cache_hit                         3         0.20 Desc
MAIN.threads                         200          .   Desc
";
        assert_eq!(got, want);
        // No uptime yet: rates are 0.
        assert!(format_once(&rows[3..4], 0).contains("         0.00 Desc"));
    }

    #[test]
    fn rates_round_like_printf() {
        // glibc's %.2f rounds the exact binary value, ties to even; so does Rust.
        for (v, up, want) in [
            (1u64, 8u64, "0.12"),
            (3, 8, "0.38"),
            (5, 8, "0.62"),
            (7, 3, "2.33"),
        ] {
            let rows = [row("MAIN.x", v, CounterKind::Counter)];
            let line = format_once(&rows, up);
            assert!(
                line.contains(&format!(" {want:>12} ")),
                "{v}/{up}: {line:?}"
            );
        }
    }

    #[test]
    fn json_matches_varnishstat_schema() {
        let rows = [
            Reading {
                group: Group::Main,
                field: "uptime",
                value: 21,
                kind: CounterKind::Counter,
                format: Format::Duration,
                description: "Child process uptime",
            },
            Reading {
                group: Group::Main,
                field: "n_object",
                value: 0,
                kind: CounterKind::Gauge,
                format: Format::Integer,
                description: "object structs made",
            },
            Reading {
                group: Group::Vbe {
                    vcl: "boot".into(),
                    backend: "default".into(),
                },
                field: "happy",
                value: u64::MAX,
                kind: CounterKind::Bitmap,
                format: Format::Bitmap,
                description: "Happy health probes",
            },
        ];
        let want = "{
  \"version\": 1,
  \"timestamp\": \"2026-11-21T11:17:02\",
  \"counters\": {
    \"MAIN.uptime\": {
      \"description\": \"Child process uptime\",
      \"flag\": \"c\",
      \"format\": \"d\",
      \"value\": 21
    },
    \"MAIN.n_object\": {
      \"description\": \"object structs made\",
      \"flag\": \"g\",
      \"format\": \"i\",
      \"value\": 0
    },
    \"VBE.boot.default.happy\": {
      \"description\": \"Happy health probes\",
      \"flag\": \"b\",
      \"format\": \"b\",
      \"value\": 18446744073709551615
    }
  }
}
";
        assert_eq!(format_json(&rows, "2026-11-21T11:17:02"), want);
        let empty = "{\n  \"version\": 1,\n  \"timestamp\": \"T\",\n  \"counters\": {\n\n  }\n}\n";
        assert_eq!(format_json(&[], "T"), empty);
    }

    #[test]
    fn timestamp_shape() {
        let t = local_timestamp(1_700_000_000);
        assert_eq!(t.len(), 19);
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
    }
}
