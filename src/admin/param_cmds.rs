//! `param.show`, `param.set`, `param.reset`: the runtime parameters over the CLI.
//!
//! Why a port of varnishd's `mgt_param.c` layout: scripts and operators read `param.show`
//! output (the 30-column short form, the long form's `Value is:` / `Default is:` lines and its
//! text wrapped at 72 columns, the JSON of `-j`), and config management parses `param.set`'s
//! errors. So the layout, the texts, the status codes and the argument rules are Varnish 7.1's,
//! checked against a running varnishd 7.1.1; the parameters and their descriptions are
//! ringcache's own table (`crate::params`). A parameter that cannot change while running is
//! refused by `param.set` (status 300) instead of being accepted "for the next restart", since
//! ringcache has no child process to restart.

use super::commands::{self, control, Context, Session, Vsb};
use super::protocol::status;
use super::stat::json_str;
use super::ParamSetError;
use crate::params::{flags, ParamDef, Params, TABLE};

/// Left margin of the long form (`margin1`).
const MARGIN: usize = 8;
/// Column the long form's text wraps at (`wrap_at`).
const WRAP_AT: usize = 72;

const OBJ_STICKY_TEXT: &str = "\n\nNB: This parameter is evaluated only when objects are \
    created. To change it for all objects, restart or ban everything.";
const DELAYED_EFFECT_TEXT: &str =
    "\n\nNB: This parameter may take quite some time to take (full) effect.";
const MUST_RESTART_TEXT: &str = "\n\nNB: This parameter cannot be changed while ringcache \
    runs: param.set refuses it. Set it with -p at startup.";

/// The table sorted by name, as varnishd lists its parameters.
fn sorted() -> Vec<&'static ParamDef> {
    let mut v: Vec<&ParamDef> = TABLE.iter().collect();
    v.sort_by_key(|d| d.name);
    v
}

/// The short form's name column: the longest name plus one (`margin2`).
fn name_column() -> usize {
    TABLE.iter().map(|d| d.name.len() + 1).max().unwrap_or(1)
}

/// `mcf_wrap_line`: one line of text at `margin`, broken at spaces before column 72.
fn wrap_line(out: &mut String, line: &[u8], margin: usize) {
    let mut rest = line;
    loop {
        out.extend(std::iter::repeat_n(' ', margin));
        let mut n = margin;
        let mut b = 0;
        let mut broke = false;
        while b < rest.len() {
            if !rest[b].is_ascii_whitespace() {
                out.push(char::from(rest[b]));
                b += 1;
                n += 1;
                continue;
            }
            let w = rest[b + 1..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .map_or(rest.len(), |p| b + 1 + p);
            if n + (w - b) < WRAP_AT {
                out.extend(rest[b..w].iter().map(|&c| char::from(c)));
                n += w - b;
                b = w;
            } else {
                out.push('\n');
                rest = &rest[b + 1..];
                broke = true;
                break;
            }
        }
        if !broke {
            return;
        }
    }
}

/// `mcf_wrap`: each line of `text` wrapped at the margin; newlines kept as they are.
fn wrap(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut p = 0;
    while p < bytes.len() {
        if bytes[p] == b'\n' {
            out.push('\n');
            p += 1;
            continue;
        }
        let q = bytes[p..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(bytes.len(), |i| p + i);
        wrap_line(out, &bytes[p..q], MARGIN);
        p = q;
    }
}

/// `Value is: ...` / the short form's value: the value, ` [unit]`, ` (default)`.
fn value_line(def: &ParamDef, value: &str) -> String {
    let mut s = value.to_string();
    if !def.unit.is_empty() {
        s.push_str(&format!(" [{}]", def.unit));
    }
    if value == def.default_text() {
        s.push_str(" (default)");
    }
    s
}

/// `param.show` without `-j` (`mcf_param_show`): `long` is `-l` (or a name given), `changed`
/// keeps the parameters that differ from their defaults, `show` names one.
pub fn show_text(params: &Params, long: bool, changed: bool, show: Option<&str>) -> (u16, String) {
    let mut out = String::new();
    let mut n = 0;
    let column = name_column();
    for def in sorted() {
        if show.is_some_and(|s| s != def.name) {
            continue;
        }
        n += 1;
        let Some(v) = params.value(def.name) else {
            continue;
        };
        let value = def.show(v);
        let default = def.default_text();
        if changed && value == default {
            continue;
        }
        if !long {
            out.push_str(&format!(
                "{:<column$}{}\n",
                def.name,
                value_line(def, &value)
            ));
            continue;
        }
        out.push_str(&format!("{}\n", def.name));
        out.push_str(&format!(
            "{:<MARGIN$}Value is: {}\n",
            " ",
            value_line(def, &value)
        ));
        if value != default {
            out.push_str(&format!("{:<MARGIN$}Default is: {default}\n", ""));
        }
        if let Some(min) = def.min_text() {
            out.push_str(&format!("{:<MARGIN$}Minimum is: {min}\n", ""));
        }
        if let Some(max) = def.max_text() {
            out.push_str(&format!("{:<MARGIN$}Maximum is: {max}\n", ""));
        }
        out.push('\n');
        wrap(&mut out, def.help);
        if def.flags & flags::OBJ_STICKY != 0 {
            wrap(&mut out, OBJ_STICKY_TEXT);
        }
        if def.flags & flags::DELAYED_EFFECT != 0 {
            wrap(&mut out, DELAYED_EFFECT_TEXT);
        }
        if !def.live() {
            wrap(&mut out, MUST_RESTART_TEXT);
        }
        out.push_str("\n\n");
    }
    match show {
        Some(s) if n == 0 => (status::PARAM, format!("{out}Unknown parameter \"{s}\".")),
        _ => (status::OK, out),
    }
}

/// Varnish's flag words, in its order.
fn flag_words(def: &ParamDef) -> Vec<&'static str> {
    let mut v = Vec::new();
    if def.flags & flags::OBJ_STICKY != 0 {
        v.push("obj_sticky");
    }
    if def.flags & flags::DELAYED_EFFECT != 0 {
        v.push("delayed_effect");
    }
    if !def.live() {
        v.push("must_restart");
    }
    v
}

/// `param.show -j` (`mcf_param_show_json`) for the arguments `av` (the command first).
pub fn show_json(params: &Params, av: &[String], now: f64) -> (u16, String) {
    let mut changed = false;
    let mut show: Option<&str> = None;
    for a in &av[1..] {
        match a.as_str() {
            "-l" => return (status::PARAM, "-l not permitted with param.show -j".into()),
            "changed" => changed = true,
            "-j" => {}
            name => {
                if show.is_some() {
                    return (status::TOOMANY, "Too many parameters".into());
                }
                show = Some(name);
            }
        }
    }
    let mut v = Vsb::new();
    v.printf(&commands::json_begin_at(2, av, now));
    v.indent(2);
    v.printf(",\n");
    let mut n = 0;
    let mut comma = false;
    for def in sorted() {
        if show.is_some_and(|s| s != def.name) {
            continue;
        }
        n += 1;
        let Some(value) = params.value(def.name) else {
            continue;
        };
        let default = def.default_text();
        if changed && def.show(value.clone()) == default {
            continue;
        }
        v.printf(if comma { ",\n" } else { "" });
        comma = true;
        v.printf("{\n");
        v.indent(2);
        v.printf(&format!("\"name\": {},\n", json_str(def.name)));
        v.printf("\"implemented\": true,\n");
        v.printf(&format!("\"value\": {},\n", def.json(value)));
        if !def.unit.is_empty() {
            v.printf(&format!("\"units\": {},\n", json_str(def.unit)));
        }
        v.printf(&format!("\"default\": {},\n", json_str(&default)));
        if let Some(min) = def.min_text() {
            v.printf(&format!("\"minimum\": {},\n", json_str(&min)));
        }
        if let Some(max) = def.max_text() {
            v.printf(&format!("\"maximum\": {},\n", json_str(&max)));
        }
        v.printf(&format!("\"description\": {},\n", json_str(def.help)));
        v.printf("\"flags\": [");
        v.indent(2);
        let words = flag_words(def);
        for (i, w) in words.iter().enumerate() {
            v.printf(if i == 0 { "\n" } else { ",\n" });
            v.printf(&format!("\"{w}\""));
        }
        if !words.is_empty() {
            v.printf("\n");
        }
        v.indent(-2);
        v.printf("]\n");
        v.indent(-2);
        v.printf("}");
    }
    v.indent(-2);
    v.printf("\n");
    v.printf("]\n");
    match show {
        Some(s) if n == 0 => (status::PARAM, format!("Unknown parameter \"{s}\".")),
        _ => (status::OK, v.into_string()),
    }
}

/// `param.show [-l] [<param>|changed]`.
pub fn cmd_param_show(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let mut long = false;
    let mut changed = false;
    let mut show: Option<&str> = None;
    for a in &av[1..] {
        match a.as_str() {
            "-l" => long = true,
            "changed" => changed = true,
            name => {
                if show.is_some() {
                    return (status::TOOMANY, "Too many parameters".into());
                }
                show = Some(name);
                long = true;
            }
        }
    }
    match control(ctx) {
        Ok(c) => show_text(&c.params(), long, changed, show),
        Err(e) => e,
    }
}

/// `param.show -j [<param>|changed]`.
pub fn cmd_param_show_json(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    match control(ctx) {
        Ok(c) => show_json(&c.params(), av, commands::now()),
        Err(e) => e,
    }
}

/// `MCF_ParamSet`: sets `name` to `value`, with varnishd's answers.
fn set(ctx: &Context, name: &str, value: &str) -> (u16, String) {
    let c = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    match (c.param_set(name, value), ParamDef::find(name)) {
        (Ok(()), _) => (status::OK, String::new()),
        (Err(ParamSetError::Invalid(e)), Some(def)) => (
            status::PARAM,
            format!(
                "{}\n(attempting to set param '{name}' to '{value}')",
                e.varnish_text(def)
            ),
        ),
        (Err(ParamSetError::NotLive), _) => (
            status::CANT,
            format!(
                "parameter \"{name}\" cannot be changed at runtime; restart with -p \
                 {name}={value}"
            ),
        ),
        (Err(_), _) => (status::PARAM, format!("Unknown parameter \"{name}\".")),
    }
}

/// `param.set <param> <value>`.
pub fn cmd_param_set(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    set(ctx, &av[1], &av[2])
}

/// `param.set -j <param> <value>`: on success, the parameter as `param.show -j` shows it.
pub fn cmd_param_set_json(ctx: &Context, s: &mut Session, av: &[String]) -> (u16, String) {
    let r = set(ctx, &av[2], &av[3]);
    if r.0 != status::OK {
        return r;
    }
    cmd_param_show_json(ctx, s, &av[..3])
}

/// `param.reset <param>`: back to the table's default.
pub fn cmd_param_reset(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    match ParamDef::find(&av[1]) {
        Some(def) => set(ctx, def.name, def.default),
        None => (status::PARAM, format!("Unknown parameter \"{}\".", av[1])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // Goal: the long form is varnishd 7.1.1's layout byte for byte (margin 8, wrap before
    // column 72, "Default is:" only when changed, the NB paragraph of obj_sticky).
    #[test]
    fn long_form_layout() {
        let mut p = Params::default();
        let (st, text) = show_text(&p, true, false, Some("default_ttl"));
        assert_eq!(st, 200);
        assert_eq!(
            text,
            "default_ttl\n        Value is: 120.000 [seconds] (default)\n        \
             Minimum is: 0.000\n\n        TTL of objects whose response gives no other \
             (Cache-Control,\n        Expires).\n\n        NB: This parameter is evaluated \
             only when objects are created.\n        To change it for all objects, restart \
             or ban everything.\n\n"
        );
        p.set("default_ttl", "1.5").expect("set");
        let (_, text) = show_text(&p, true, false, Some("default_ttl"));
        assert!(
            text.starts_with(
                "default_ttl\n        Value is: 1.500 [seconds]\n        Default is: \
                 120.000\n        Minimum is: 0.000\n\n"
            ),
            "{text}"
        );
        let (_, text) = show_text(&p, true, false, Some("http_req_size"));
        assert!(
            text.starts_with(
                "http_req_size\n        Value is: 32k [bytes] (default)\n        Minimum is: \
                 0.25k\n        Maximum is: 64M\n\n"
            ),
            "{text}"
        );
        let (_, text) = show_text(&p, true, false, Some("cores"));
        assert!(
            text.contains("NB: This parameter cannot be changed while"),
            "{text}"
        );
        for line in show_text(&p, true, false, None).1.lines() {
            assert!(line.len() <= WRAP_AT, "{line:?}");
        }
    }

    #[test]
    fn short_form_unknown_and_changed() {
        let mut p = Params::default();
        let (st, text) = show_text(&p, false, false, None);
        assert_eq!(st, 200);
        let width = name_column();
        let first = text.lines().next().unwrap_or("");
        let name = sorted()[0].name;
        assert!(first.starts_with(&format!("{name:<width$}")), "{first}");
        assert!(text.contains(&format!(
            "{:<width$}120.000 [seconds] (default)\n",
            "default_ttl"
        )));
        assert!(text.contains(&format!("{:<width$}on [bool] (default)\n", "cpu_affinity")));
        assert_eq!(text.lines().count(), TABLE.len());
        assert_eq!(
            show_text(&p, false, false, Some("nosuch")),
            (106, "Unknown parameter \"nosuch\".".to_string())
        );
        assert_eq!(show_text(&p, false, true, None).1, "");
        p.set("http_max_hdr", "100").expect("set");
        assert_eq!(
            show_text(&p, false, true, None).1,
            format!("{:<width$}100 [header lines]\n", "http_max_hdr")
        );
    }

    // Goal: `-j` is varnishd's JSON, whitespace included.
    #[test]
    fn json_form() {
        let p = Params::default();
        let av = words(&["param.show", "-j", "default_ttl"]);
        let (st, text) = show_json(&p, &av, 1_795_277_501.323);
        assert_eq!(st, 200);
        assert_eq!(
            text,
            format!(
                "[ 2, [\"param.show\", \"-j\", \"default_ttl\"], 1795277501.323,\n  {{\n    \
                 \"name\": \"default_ttl\",\n    \"implemented\": true,\n    \"value\": \
                 120.000,\n    \"units\": \"seconds\",\n    \"default\": \"120.000\",\n    \
                 \"minimum\": \"0.000\",\n    \"description\": {},\n    \"flags\": [\n      \
                 \"obj_sticky\"\n    ]\n  }}\n]\n",
                json_str(
                    TABLE
                        .iter()
                        .find(|d| d.name == "default_ttl")
                        .map_or("", |d| d.help)
                )
            )
        );
        let av = words(&["param.show", "-j", "max_retries"]);
        let text = show_json(&p, &av, 1.0).1;
        assert!(text.contains("\"value\": 4,\n"), "{text}");
        assert!(text.contains("    \"flags\": []\n  }\n]\n"), "{text}");
        let av = words(&["param.show", "-j", "cores"]);
        let text = show_json(&p, &av, 1.0).1;
        assert!(text.contains("\"value\": \"auto\",\n"), "{text}");
        assert!(text.contains("\"must_restart\""), "{text}");
        assert_eq!(
            show_json(&p, &words(&["param.show", "-j", "-l", "x"]), 1.0),
            (106, "-l not permitted with param.show -j".to_string())
        );
        assert_eq!(
            show_json(&p, &words(&["param.show", "-j", "nosuch"]), 1.0),
            (106, "Unknown parameter \"nosuch\".".to_string())
        );
        let all = show_json(&p, &words(&["param.show", "-j"]), 1.0).1;
        assert_eq!(all.matches("\"implemented\": true").count(), TABLE.len());
        let none = show_json(&p, &words(&["param.show", "-j", "changed"]), 1.0).1;
        assert_eq!(
            none,
            "[ 2, [\"param.show\", \"-j\", \"changed\"], 1.000,\n\n]\n"
        );
    }

    #[test]
    fn wrapping() {
        let mut out = String::new();
        wrap(
            &mut out,
            &format!("{} tail\n\nnext", "word ".repeat(20).trim_end()),
        );
        assert_eq!(
            out,
            format!(
                "        {}\n        word word word word word word word word tail\n\n        next",
                "word ".repeat(12).trim_end()
            )
        );
    }
}
