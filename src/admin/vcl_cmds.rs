//! `vcl.load`, `vcl.inline`, `vcl.use`, `vcl.discard`, `vcl.list` and `vcl.show`, answering as
//! Varnish 7.1's manager (`mgt_vcl.c`) and child (`cache_vcl.c`) do together.
//!
//! Why the manager's checks and texts, in its order: deploy scripts (varnishreload and its
//! many home-grown cousins) run `vcl.load` / `vcl.use` / `vcl.discard` and branch on the status
//! codes and messages, so a name clash, an unknown name, a compile error or an attempt to
//! discard the active VCL must answer exactly as varnishd does. The loading itself is the
//! server's ([`super::Control`]); this module validates, orders, and formats.
//!
//! One deliberate difference: ringcache keeps every loaded VCL warm (its probes run until it
//! is discarded), so the `cold` state is refused rather than silently ignored; `auto` and
//! `warm` are accepted and mean the same.

use super::backend::fnmatch;
use super::commands::{self, control, vte, Context, Session, Vsb};
use super::protocol::status;
use super::{VclRow, VclText};

/// `mcf_invalid_vclname` (`VCT_invalid_name`): a letter first, then letters, digits, `_`, `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let bad = match b.first() {
        None => Some(0),
        Some(c) if !c.is_ascii_alphabetic() => Some(*c),
        Some(_) => b
            .iter()
            .copied()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')),
    };
    match bad {
        None => Ok(()),
        Some(c) if c > 0x20 && c < 0x7f => Err(format!(
            "Illegal character in VCL name ('{}')",
            char::from(c)
        )),
        Some(c) => Err(format!("Illegal character in VCL name (0x{c:02x})")),
    }
}

/// The optional state word of `vcl.load` / `vcl.inline` (`mcf_vcl_parse_state`, exact case).
fn check_state(state: Option<&str>) -> Result<(), (u16, String)> {
    match state {
        None | Some("auto") | Some("warm") => Ok(()),
        Some("cold") => Err((
            status::CANT,
            "ringcache keeps every loaded VCL warm: load it as auto or warm".into(),
        )),
        Some(_) => Err((
            status::PARAM,
            "State must be one of auto, cold or warm.".into(),
        )),
    }
}

/// How varnishd relays its compiler's output (`VSUB_run`): a header before the first line,
/// each line newline-terminated.
fn compiler_output(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let mut out = String::from("Message from VCC-compiler:\n");
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A failed `vcl.load`'s answer: the compiler's output, then varnishd's two closing lines.
pub fn compile_failure(err: &str) -> String {
    format!(
        "{}Running VCC-compiler failed, exited with 2\nVCL compilation failed",
        compiler_output(err)
    )
}

fn known(rows: &[VclRow], name: &str) -> bool {
    rows.iter().any(|r| r.name == name)
}

/// `vcl.load` and `vcl.inline` (`mcf_vcl_load`, `mcf_vcl_inline`, `mgt_new_vcl`).
fn load(ctx: &Context, av: &[String], text: VclText) -> (u16, String) {
    let name = &av[1];
    if let Err(e) = check_name(name) {
        return (status::PARAM, e);
    }
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if known(&ctl.vcls(), name) {
        return (status::PARAM, format!("Already a VCL named {name}"));
    }
    if let Err(e) = check_state(av.get(3).map(String::as_str)) {
        return e;
    }
    match ctl.vcl_load(name, text) {
        // varnishd with its child running says nothing else on success.
        Ok(warnings) => (status::OK, compiler_output(&warnings)),
        Err(e) => (status::PARAM, compile_failure(&e)),
    }
}

/// `vcl.load <configname> <filename> [auto|cold|warm]`.
pub fn cmd_vcl_load(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    load(ctx, av, VclText::File(av[2].clone().into()))
}

/// `vcl.inline <configname> <quoted_VCLstring> [auto|cold|warm]`.
pub fn cmd_vcl_inline(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    load(ctx, av, VclText::Inline(av[2].clone()))
}

/// `vcl.use <configname>` (`mcf_vcl_use`).
pub fn cmd_vcl_use(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let name = &av[1];
    if let Err(e) = check_name(name) {
        return (status::PARAM, e);
    }
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let rows = ctl.vcls();
    let Some(row) = rows.iter().find(|r| &r.name == name) else {
        return (status::PARAM, format!("No VCL named {name} known\n"));
    };
    if row.active {
        return (status::OK, String::new());
    }
    match ctl.vcl_use(name) {
        Ok(()) => (status::OK, format!("VCL '{name}' now active")),
        Err(e) => (status::CANT, e),
    }
}

/// Which VCLs `vcl.discard <name_pattern>...` takes, in the order they are discarded
/// (`mgt_vcl_discard_mark`): every pattern must match a VCL and none may match the active one;
/// on the first failure the answer, and nothing is discarded.
pub fn discard_targets(rows: &[VclRow], patterns: &[String]) -> Result<Vec<String>, (u16, String)> {
    let mut marked: Vec<String> = Vec::new();
    for glob in patterns {
        let mut n = 0;
        for r in rows {
            if !fnmatch(glob.as_bytes(), r.name.as_bytes()) {
                continue;
            }
            if r.active {
                return Err((
                    status::CANT,
                    format!("Cannot discard active VCL program {}\n", r.name),
                ));
            }
            if !marked.contains(&r.name) {
                marked.push(r.name.clone());
            }
            n += 1;
        }
        if n == 0 {
            return Err((status::PARAM, format!("No VCL name matches {glob}\n")));
        }
    }
    Ok(marked)
}

/// `vcl.discard <name_pattern>...`.
pub fn cmd_vcl_discard(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let targets = match discard_targets(&ctl.vcls(), &av[1..]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    for name in &targets {
        if let Err(e) = ctl.vcl_discard(name) {
            return (status::CANT, e);
        }
    }
    (status::OK, String::new())
}

/// `vcl.list`: status, state, temperature, busy (`%6u`) and name, laid out by VTE.
pub fn list_text(rows: &[VclRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let flag = if r.active { "active" } else { "available" };
        s.push_str(&format!(
            "{flag}\t{}\t{}\t{:6}\t{}\n",
            r.state, r.temperature, r.busy, r.name
        ));
    }
    vte(&s, 80)
}

/// `vcl.list -j` (`vcl_cli_list_json`, objects closed in column 0 as varnishd does).
pub fn list_json(av: &[String], rows: &[VclRow], now: f64) -> String {
    let mut v = Vsb::new();
    v.printf(&commands::json_begin_at(2, av, now));
    v.indent(2);
    v.printf(",\n");
    for (i, r) in rows.iter().enumerate() {
        v.printf("{\n");
        v.indent(2);
        v.printf("\"status\": ");
        v.printf(if r.active {
            "\"active\",\n"
        } else {
            "\"available\",\n"
        });
        v.printf(&format!("\"state\": \"{}\",\n", r.state));
        v.printf(&format!("\"temperature\": \"{}\",\n", r.temperature));
        v.printf(&format!("\"busy\": {},\n", r.busy));
        v.printf(&format!("\"name\": \"{}\"", r.name));
        v.indent(-2);
        v.printf("\n}");
        if i + 1 < rows.len() {
            v.printf(",\n");
        }
    }
    v.indent(-2);
    v.printf("\n");
    v.printf("]\n");
    v.into_string()
}

/// `vcl.list`.
pub fn cmd_vcl_list(ctx: &Context, _: &mut Session, _: &[String]) -> (u16, String) {
    match control(ctx) {
        Ok(ctl) => (status::OK, list_text(&ctl.vcls())),
        Err(e) => e,
    }
}

/// `vcl.list -j`.
pub fn cmd_vcl_list_json(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    match control(ctx) {
        Ok(ctl) => (status::OK, list_json(av, &ctl.vcls(), commands::now())),
        Err(e) => e,
    }
}

/// `vcl.show` of `sources` (main file first): its main file as is, or with `-v` every file
/// under a `// VCL.SHOW <n> <bytes> <name>` line, the built-in VCL last (as varnishd lists
/// `<builtin>`).
pub fn show_text(sources: &[(String, String)], verbose: bool) -> String {
    if !verbose {
        return sources.first().map(|s| s.1.clone()).unwrap_or_default();
    }
    let builtin = ("<builtin>".to_string(), crate::vcl::BUILTIN_VCL.to_string());
    let has_builtin = sources.last().is_some_and(|s| s.0 == builtin.0);
    let mut out = String::new();
    let all = sources
        .iter()
        .chain(std::iter::once(&builtin).filter(|_| !has_builtin));
    for (i, (name, body)) in all.enumerate() {
        out.push_str(&format!("// VCL.SHOW {i} {} {name}\n{body}\n", body.len()));
    }
    out
}

/// `vcl.show [-v] [<configname>]` (`vcl_cli_show`).
pub fn cmd_vcl_show(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let mut i = 1;
    let verbose = av.get(i).is_some_and(|a| a == "-v");
    if verbose {
        i += 1;
    }
    let name = av.get(i).cloned();
    if name.is_some() {
        i += 1;
    }
    if let Some(extra) = av.get(i) {
        return (status::PARAM, format!("Too many parameters: '{extra}'"));
    }
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let name = name.unwrap_or_else(|| ctl.active_vcl());
    match ctl.vcl_source(&name) {
        Some(sources) => (status::OK, show_text(&sources, verbose)),
        None => (status::PARAM, format!("No VCL named '{name}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcl(name: &str, active: bool) -> VclRow {
        VclRow {
            name: name.into(),
            active,
            state: "auto",
            temperature: "warm",
            busy: 0,
        }
    }

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn names_follow_vct_invalid_name() {
        assert_eq!(check_name("boot"), Ok(()));
        assert_eq!(check_name("v-2_x"), Ok(()));
        assert_eq!(
            check_name("4x"),
            Err("Illegal character in VCL name ('4')".into())
        );
        assert_eq!(
            check_name("a.b"),
            Err("Illegal character in VCL name ('.')".into())
        );
        assert_eq!(
            check_name("a b"),
            Err("Illegal character in VCL name (0x20)".into())
        );
        assert_eq!(
            check_name("aé"),
            Err("Illegal character in VCL name (0xc3)".into())
        );
        assert_eq!(
            check_name(""),
            Err("Illegal character in VCL name (0x00)".into())
        );
    }

    #[test]
    fn states() {
        assert!(check_state(None).is_ok());
        assert!(check_state(Some("auto")).is_ok());
        assert!(check_state(Some("warm")).is_ok());
        assert_eq!(check_state(Some("cold")).map_err(|e| e.0), Err(300));
        assert_eq!(
            check_state(Some("WARM")),
            Err((106, "State must be one of auto, cold or warm.".into()))
        );
    }

    #[test]
    fn compiler_texts() {
        assert_eq!(
            compile_failure("Symbol not found: 'req.foo'\nAt: x\n"),
            "Message from VCC-compiler:\nSymbol not found: 'req.foo'\nAt: x\n\
             Running VCC-compiler failed, exited with 2\nVCL compilation failed"
        );
        assert_eq!(
            compile_failure("no newline"),
            "Message from VCC-compiler:\nno newline\n\
             Running VCC-compiler failed, exited with 2\nVCL compilation failed"
        );
        assert_eq!(
            compile_failure(""),
            "Running VCC-compiler failed, exited with 2\nVCL compilation failed"
        );
        assert_eq!(compiler_output(""), "");
        assert_eq!(
            compiler_output("warning: x"),
            "Message from VCC-compiler:\nwarning: x\n"
        );
    }

    #[test]
    fn list_is_varnishd_bytes() {
        // varnishd 7.1.1 `vcl.list` after `vcl.use v2`.
        let rows = [vcl("boot", false), vcl("v2", true)];
        assert_eq!(
            list_text(&rows),
            "available   auto    warm         0    boot\nactive      auto    warm         0    v2\n"
        );
        assert_eq!(
            list_text(&rows[1..]),
            "active   auto    warm         0    v2\n"
        );
        let mut busy = vcl("boot", true);
        busy.busy = 1234567;
        assert_eq!(
            list_text(&[busy]),
            "active   auto    warm    1234567    boot\n"
        );
        assert_eq!(list_text(&[]), "");
    }

    #[test]
    fn list_json_is_varnishd_bytes() {
        let av = words(&["vcl.list", "-j"]);
        assert_eq!(
            list_json(&av, &[vcl("boot", true)], 1_795_268_219.25),
            "[ 2, [\"vcl.list\", \"-j\"], 1795268219.250,\n  {\n    \"status\": \"active\",\n    \"state\": \"auto\",\n    \"temperature\": \"warm\",\n    \"busy\": 0,\n    \"name\": \"boot\"\n}\n]\n"
        );
        assert_eq!(
            list_json(&av, &[vcl("boot", false), vcl("v2", true)], 1_795_268_219.495),
            "[ 2, [\"vcl.list\", \"-j\"], 1795268219.495,\n  {\n    \"status\": \"available\",\n    \"state\": \"auto\",\n    \"temperature\": \"warm\",\n    \"busy\": 0,\n    \"name\": \"boot\"\n},\n  {\n    \"status\": \"active\",\n    \"state\": \"auto\",\n    \"temperature\": \"warm\",\n    \"busy\": 0,\n    \"name\": \"v2\"\n}\n]\n"
        );
    }

    #[test]
    fn discard_is_all_or_nothing() {
        let rows = [
            vcl("boot", false),
            vcl("v2", true),
            vcl("v6", false),
            vcl("v7", false),
        ];
        assert_eq!(
            discard_targets(&rows, &words(&["v6", "v7"])),
            Ok(vec!["v6".to_string(), "v7".to_string()])
        );
        assert_eq!(
            discard_targets(&rows, &words(&["v[67]", "v6", "boot"])),
            Ok(vec!["v6".to_string(), "v7".to_string(), "boot".to_string()])
        );
        assert_eq!(
            discard_targets(&rows, &words(&["v*"])),
            Err((300, "Cannot discard active VCL program v2\n".into()))
        );
        assert_eq!(
            discard_targets(&rows, &words(&["v6", "nosuch"])),
            Err((106, "No VCL name matches nosuch\n".into()))
        );
        assert_eq!(
            discard_targets(&rows, &words(&["4x"])),
            Err((106, "No VCL name matches 4x\n".into()))
        );
    }

    #[test]
    fn show_texts() {
        let src = vec![
            (
                "/tmp/vt/main2.vcl".to_string(),
                "vcl 4.1;\ninclude \"i.vcl\";\n".to_string(),
            ),
            (
                "/tmp/vt/inc.vcl".to_string(),
                "sub vcl_recv { return (pass); }\n".to_string(),
            ),
        ];
        assert_eq!(show_text(&src, false), src[0].1);
        let v = show_text(&src, true);
        let builtin = crate::vcl::BUILTIN_VCL;
        assert_eq!(
            v,
            format!(
                "// VCL.SHOW 0 26 /tmp/vt/main2.vcl\nvcl 4.1;\ninclude \"i.vcl\";\n\n\
                 // VCL.SHOW 1 32 /tmp/vt/inc.vcl\nsub vcl_recv {{ return (pass); }}\n\n\
                 // VCL.SHOW 2 {} <builtin>\n{builtin}\n",
                builtin.len()
            )
        );
        // A list that already ends with the built-in VCL is shown as given.
        let mut with = src.clone();
        with.push(("<builtin>".into(), "x".into()));
        assert!(show_text(&with, true).ends_with("// VCL.SHOW 2 1 <builtin>\nx\n"));
        assert_eq!(show_text(&[], false), "");
    }
}
