//! `ban` and `ban.list` over the CLI.
//!
//! Why Varnish's texts: operators ban from scripts (`varnishadm ban req.url '~' ^/news/`) and
//! read `ban.list` to see what is pending; the argument checks, error texts, status codes and
//! both list formats are varnishd 7.1.1's (`ccf_ban`, `ban_list`, `ban_list_json`). The ban list
//! itself lives in `crate::bans`, the expressions in `crate::cache::ban`.

use super::commands::{self, control, Context, Session, Vsb};
use super::protocol::status;
use crate::bans::BanRow;
use crate::cache::ban::BanSpec;

/// `ban <field> <operator> <arg> [&& <field> <oper> <arg> ...]`.
pub fn cmd_ban(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let spec = match BanSpec::parse_cli(&av[1..]) {
        Ok(s) => s,
        Err(e) => return (status::PARAM, e),
    };
    match control(ctx) {
        Ok(c) => {
            c.ban(spec);
            (status::OK, String::new())
        }
        Err(e) => e,
    }
}

/// `ban.list`'s text: `Present bans:`, then per ban, newest first, the time it was added, how
/// many objects refer to it, `C` if completed (else `-`), and the spec.
pub fn list_text(rows: &[BanRow]) -> String {
    let mut out = String::from("Present bans:\n");
    for r in rows {
        out.push_str(&format!(
            "{:10.6} {:5} {}  {}\n",
            r.time,
            r.refs,
            if r.completed { "C" } else { "-" },
            r.spec
        ));
    }
    out
}

/// `ban.list -j`.
pub fn list_json(av: &[String], rows: &[BanRow], now: f64) -> String {
    let mut v = Vsb::new();
    v.printf(&commands::json_begin_at(2, av, now));
    v.indent(2);
    v.printf(",\n");
    for (i, r) in rows.iter().enumerate() {
        v.printf(if i > 0 { ",\n" } else { "" });
        v.printf("{\n");
        v.indent(2);
        v.printf(&format!("\"time\": {:.6},\n", r.time));
        v.printf(&format!("\"refs\": {},\n", r.refs));
        v.printf(&format!("\"completed\": {},\n", r.completed));
        v.printf(&format!("\"spec\": \"{}\"", r.spec_json));
        v.indent(-2);
        v.printf("\n}");
    }
    v.indent(-2);
    v.printf("\n");
    v.printf("]\n");
    v.into_string()
}

/// `ban.list`.
pub fn cmd_ban_list(ctx: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    match control(ctx) {
        Ok(c) => (status::OK, list_text(&c.ban_list())),
        Err(e) => e,
    }
}

/// `ban.list -j`.
pub fn cmd_ban_list_json(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    match control(ctx) {
        Ok(c) => (status::OK, list_json(av, &c.ban_list(), commands::now())),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time: f64, refs: u64, completed: bool, spec: &str, json: &str) -> BanRow {
        BanRow {
            time,
            refs,
            completed,
            spec: spec.into(),
            spec_json: json.into(),
        }
    }

    // Goal: both forms are byte for byte what varnishd 7.1.1 printed for the same bans.
    #[test]
    fn formats_are_varnishd_bytes() {
        assert_eq!(
            list_text(&[row(1795277490.827088, 0, true, "", "")]),
            "Present bans:\n1795277490.827088     0 C  \n"
        );
        assert_eq!(
            list_text(&[row(
                1795277540.581058,
                0,
                false,
                "obj.age < 90s",
                "obj.age < 90s"
            )]),
            "Present bans:\n1795277540.581058     0 -  obj.age < 90s\n"
        );
        let av: Vec<String> = vec!["ban.list".into(), "-j".into()];
        assert_eq!(
            list_json(
                &av,
                &[row(
                    1795277540.582655,
                    0,
                    false,
                    "obj.http.X-Y == q\"q",
                    "obj.http.X-Y == q\\\"q"
                )],
                1795277540.583
            ),
            "[ 2, [\"ban.list\", \"-j\"], 1795277540.583,\n  {\n    \"time\": \
             1795277540.582655,\n    \"refs\": 0,\n    \"completed\": false,\n    \"spec\": \
             \"obj.http.X-Y == q\\\"q\"\n}\n]\n"
        );
        let two = list_json(
            &av,
            &[row(2.0, 1, false, "a", "a"), row(1.0, 3, true, "", "")],
            3.0,
        );
        assert_eq!(
            two,
            "[ 2, [\"ban.list\", \"-j\"], 3.000,\n  {\n    \"time\": 2.000000,\n    \"refs\": \
             1,\n    \"completed\": false,\n    \"spec\": \"a\"\n},\n  {\n    \"time\": \
             1.000000,\n    \"refs\": 3,\n    \"completed\": true,\n    \"spec\": \"\"\n}\n]\n"
        );
    }
}
