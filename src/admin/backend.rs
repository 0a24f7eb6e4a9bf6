//! `backend.list` and `backend.set_health`, answering as Varnish 7.1's `cache_director.c` does.
//!
//! Why ports of the C output code instead of a tidy formatter: operators' scripts and
//! monitoring parse these answers (the five VTE columns, the `-p` probe blocks, the `-j`
//! document), so the bytes must be varnishd's. The text goes through `vte` and the JSON
//! through `Vsb` in the same call order as `do_list`, `do_list_json`, `VBP_Status` and the
//! directors' `list` methods, which reproduces Varnish's column widths and indentation. The
//! data comes from the server as [`BackendRow`]s; everything here is pure but for the clock
//! read for the JSON stamp, and is tested with rows built in the tests.
//!
//! Backend patterns (`VCL_IterDirector`): none, empty or `*` is `<active vcl>.*`; a pattern
//! without a `.` is `<active vcl>.<pattern>`; one with a `.` is used as is against the
//! backends of every loaded VCL. Matching is [`fnmatch`] (`fnmatch(3)` with flags 0) on
//! `<vcl>.<backend>`.

use super::commands::{self, control, vte, Context, Session, Vsb};
use super::protocol::status;
use super::stat::json_str;
use super::{AdminHealth, BackendRow, ProbeView};

/// `VCL_IterDirector`'s pattern rules: the full pattern, and whether only the active VCL's
/// backends are candidates.
pub fn expand_pattern(active: &str, pattern: Option<&str>) -> (String, bool) {
    match pattern {
        None | Some("") | Some("*") => (format!("{active}.*"), true),
        Some(p) if !p.contains('.') => (format!("{active}.{p}"), true),
        Some(p) => (p.to_string(), false),
    }
}

/// The rows a pattern selects, in the order given (VCLs in load order, then each VCL's
/// backends and directors in creation order, as Varnish iterates them).
pub fn select<'a>(
    rows: &'a [BackendRow],
    active: &str,
    pattern: Option<&str>,
) -> Vec<&'a BackendRow> {
    let (pat, active_only) = expand_pattern(active, pattern);
    rows.iter()
        .filter(|r| !active_only || r.vcl == active)
        .filter(|r| fnmatch(pat.as_bytes(), cli_name(r).as_bytes()))
        .collect()
}

/// `<vcl>.<backend>`, the name `backend.list` shows (`vdir->cli_name`).
fn cli_name(r: &BackendRow) -> String {
    format!("{}.{}", r.vcl, r.name)
}

/// How a director kind reports itself, after the `vdi_methods` of Varnish 7.1: `backend`
/// (`vbe_list`), the vdir-based directors with their `-p` table, and `hash`, which has neither
/// a `list` nor a `healthy` method (so it always shows `healthy 0/0 healthy`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Backend,
    RoundRobin,
    Random,
    Fallback,
    Shard,
    Hash,
}

fn kind(r: &BackendRow) -> Kind {
    match r.kind {
        "backend" => Kind::Backend,
        "random" => Kind::Random,
        "fallback" => Kind::Fallback,
        "shard" => Kind::Shard,
        "hash" => Kind::Hash,
        // round-robin, and any other director kind: vdir's plain table.
        _ => Kind::RoundRobin,
    }
}

/// `VDI_Ahealth`: the forced state, else `probe` when the director can tell its own health
/// (a backend with a probe, any director but hash), else `healthy`.
fn admin_word(r: &BackendRow) -> &'static str {
    match r.admin {
        AdminHealth::Healthy => "healthy",
        AdminHealth::Sick => "sick",
        AdminHealth::Auto => {
            let has_healthy = match kind(r) {
                Kind::Backend => r.probe.is_some(),
                Kind::Hash => false,
                _ => true,
            };
            if has_healthy {
                "probe"
            } else {
                "healthy"
            }
        }
    }
}

fn health_word(healthy: bool) -> &'static str {
    if healthy {
        "healthy"
    } else {
        "sick"
    }
}

/// The probe's own verdict (`vt->backend->sick`, which `VBP_Update_Backend` sets to
/// `good < threshold`). Varnish's Health column shows this, not the admin override.
fn probe_healthy(p: &ProbeView) -> bool {
    p.good >= p.threshold
}

/// For a director: (healthy members, members).
fn member_counts(r: &BackendRow) -> (usize, usize) {
    (r.members.iter().filter(|m| m.1).count(), r.members.len())
}

/// The fallback director's `cur` after a resolve with the current health: its first healthy
/// member, or 0 when none is (the resolve loop wraps back to 0).
fn fallback_current(r: &BackendRow) -> usize {
    r.members.iter().position(|m| m.1).unwrap_or(0)
}

/// What the `list` method reports without `-p`: good probes (or healthy members), window (or
/// members) and health; a backend without probe and a hash director are `0/0 healthy`.
fn probe_summary(r: &BackendRow) -> (u32, u32, bool) {
    match kind(r) {
        Kind::Backend => r
            .probe
            .as_ref()
            .map_or((0, 0, true), |p| (p.good, p.window, probe_healthy(p))),
        Kind::Hash => (0, 0, true),
        _ => {
            let (nh, n) = member_counts(r);
            (nh as u32, n as u32, nh > 0)
        }
    }
}

/// The `X/Y\tHealth` cell pair (the `list` method with pflag 0, or `do_list`'s defaults).
fn probe_cells(r: &BackendRow) -> String {
    let (good, window, healthy) = probe_summary(r);
    format!("{good}/{window}\t{}", health_word(healthy))
}

/// `VBP_Status(vsb, be, 1, 0)`: the `-p` block after a backend's row.
fn probe_details_text(p: &ProbeView, out: &mut String) {
    out.push_str(&format!(
        "\n Current states  good: {:2} threshold: {:2} window: {:2}\n",
        p.good, p.threshold, p.window
    ));
    out.push_str(&format!(
        "  Average response time of good probes: {:.6}\n",
        p.avg
    ));
    out.push_str("  Oldest ================================================== Newest\n");
    for (i, (c, label)) in BITMAPS.iter().enumerate() {
        let map = p.bits[i];
        // Happy is always shown, the others only once they have a bit set.
        if map != 0 || *c == 'H' {
            out.push_str("  ");
            for bit in (0..64).rev() {
                out.push(if map >> bit & 1 == 1 { *c } else { '-' });
            }
            out.push(' ');
            out.push_str(label);
            out.push('\n');
        }
    }
}

/// `include/tbl/backend_poll.h`: letter and label of each history bitmap, in `bits` order.
const BITMAPS: [(char, &str); 8] = [
    ('4', "Good IPv4"),
    ('6', "Good IPv6"),
    ('U', "Good UNIX"),
    ('x', "Error Xmit"),
    ('X', "Good Xmit"),
    ('r', "Error Recv"),
    ('R', "Good Recv"),
    ('H', "Happy"),
];

/// The directors' `list` with pflag 1 (`vdir_list`, `vmod_fallback_list`, `vmod_shard_list`).
fn director_details_text(r: &BackendRow, out: &mut String) {
    let k = kind(r);
    let n = r.members.len();
    match k {
        Kind::Fallback => out.push_str("\n\n\tBackend\tCurrent\tHealth\n"),
        Kind::Shard => out.push_str("\n\n\tBackend\tIdent\tHealth\tRampup  Remaining\n"),
        _ => out.push_str("\n\n\tBackend\tWeight\tHealth\n"),
    }
    let cur = fallback_current(r);
    for (u, (name, h)) in r.members.iter().enumerate() {
        let health = health_word(*h);
        match k {
            Kind::Random => {
                // Every member weighs 1 in ringcache: a healthy one holds 1/n of the total.
                let w = if *h { 1.0 } else { 0.0 };
                out.push_str(&format!(
                    "\t{name}\t{:6.2}%\t{health}\n",
                    100.0 * w / n as f64
                ));
            }
            Kind::Fallback => {
                let mark = if u == cur { "*" } else { "" };
                out.push_str(&format!("\t{name}\t{mark}\t{health}\n"));
            }
            Kind::Shard => {
                // No rampup in ringcache: a healthy member is fully up.
                let p = if *h { 100.0 } else { 0.0 };
                out.push_str(&format!(
                    "\t{name}\t{name}\t{health}\t{p:6.2}% {:8.3}s\n",
                    0.0
                ));
            }
            _ => out.push_str(&format!("\t{name}\t-\t{health}\n")),
        }
    }
}

/// `backend.list` without `-j`: the header and one row per backend (with `-p`, each followed by
/// its probe or director block), laid out by VTE at width 80.
pub fn list_text(rows: &[&BackendRow], probe: bool) -> String {
    let mut s = String::from("Backend name\tAdmin\tProbe\tHealth\tLast change\n");
    for r in rows {
        s.push_str(&cli_name(r));
        s.push('\t');
        s.push_str(admin_word(r));
        s.push('\t');
        s.push_str(&probe_cells(r));
        s.push('\t');
        s.push_str(&rfc1123(r.last_change));
        if probe {
            match kind(r) {
                Kind::Backend => {
                    if let Some(p) = &r.probe {
                        probe_details_text(p, &mut s);
                    }
                }
                Kind::Hash => {}
                _ => director_details_text(r, &mut s),
            }
        }
        s.push('\n');
    }
    vte(&s, 80)
}

/// The `list` method with jflag 1 and pflag 0: `[good, window, "health"]`.
fn probe_message_json(r: &BackendRow) -> String {
    let (good, window, healthy) = probe_summary(r);
    format!("[{good}, {window}, \"{}\"]", health_word(healthy))
}

/// The `list` method with jflag 1 and pflag 1, written after `"probe_details": ` (it ends with
/// `},\n` itself, as Varnish's do).
fn probe_details_json(r: &BackendRow, v: &mut Vsb) {
    let k = kind(r);
    if k == Kind::Backend {
        let Some(p) = &r.probe else {
            v.cat("{},\n");
            return;
        };
        v.cat("{\n");
        v.indent(2);
        for (i, (c, _)) in BITMAPS.iter().enumerate() {
            v.printf(&format!("\"bits_{c}\": {},\n", p.bits[i]));
        }
        v.printf(&format!("\"good\": {},\n", p.good));
        v.printf(&format!("\"threshold\": {},\n", p.threshold));
        v.printf(&format!("\"window\": {}", p.window));
        v.indent(-2);
        v.cat("\n");
        v.cat("},\n");
        return;
    }
    let n = r.members.len();
    v.cat("{\n");
    v.indent(2);
    match k {
        Kind::Random => v.printf(&format!("\"total_weight\": {:.6},\n", n as f64)),
        Kind::Fallback => v.printf("\"sticky\": false,\n"),
        Kind::Shard => {
            v.printf(&format!("\"warmup\": {:.6},\n", 0.0));
            v.printf(&format!("\"rampup_duration\": {:.6},\n", 0.0));
        }
        _ => {}
    }
    v.cat("\"backends\": {\n");
    v.indent(2);
    let cur = fallback_current(r);
    for (u, (name, h)) in r.members.iter().enumerate() {
        if u > 0 {
            v.cat(",\n");
        }
        v.printf(&format!("\"{name}\": {{\n"));
        v.indent(2);
        match k {
            Kind::Random => {
                let w = if *h { 1.0 } else { 0.0 };
                v.printf(&format!("\"weight\": {w:.6},\n"));
                v.cat(&format!("\"health\": \"{}\"\n", health_word(*h)));
            }
            Kind::Fallback => {
                v.cat(if u == cur {
                    "\"current\": true,\n"
                } else {
                    "\"current\": false,\n"
                });
                v.cat(&format!("\"health\": \"{}\"\n", health_word(*h)));
            }
            Kind::Shard => {
                v.printf(&format!("\"ident\": \"{name}\",\n"));
                v.printf(&format!("\"health\": \"{}\",\n", health_word(*h)));
                let p = if *h { 1.0 } else { 0.0 };
                v.printf(&format!("\"rampup\": {p:.6},\n"));
                v.printf(&format!("\"rampup_remaining\": {:.3}\n", 0.0));
            }
            _ => v.cat(&format!("\"health\": \"{}\"\n", health_word(*h))),
        }
        v.indent(-2);
        v.cat("}");
    }
    v.cat("\n");
    v.indent(-2);
    v.cat("}\n");
    v.indent(-2);
    v.cat("},\n");
}

/// `backend.list -j`: `cli_backend_list`'s JSON branch with `do_list_json` per row; `av` is the
/// request's words (they are echoed), `now` the stamp.
pub fn list_json(av: &[String], rows: &[&BackendRow], probe: bool, now: f64) -> String {
    let mut v = Vsb::new();
    v.printf(&commands::json_begin_at(3, av, now));
    v.indent(2);
    v.printf(",\n");
    v.printf("{\n");
    v.indent(2);
    let mut sep = "";
    for r in rows {
        v.printf(sep);
        sep = ",\n";
        v.printf(&json_str(&cli_name(r)));
        v.printf(": {\n");
        v.indent(2);
        v.printf(&format!("\"type\": \"{}\",\n", r.kind));
        v.printf(&format!("\"admin_health\": \"{}\",\n", admin_word(r)));
        v.printf("\"probe_message\": ");
        v.printf(&probe_message_json(r));
        v.printf(",\n");
        if probe && kind(r) != Kind::Hash {
            v.printf("\"probe_details\": ");
            probe_details_json(r, &mut v);
        }
        v.printf(&format!("\"last_change\": {:.3}\n", r.last_change));
        v.indent(-2);
        v.printf("}");
    }
    v.indent(-2);
    v.printf("\n");
    v.printf("}");
    // VCLI_JSON_end
    v.indent(-2);
    v.printf("\n");
    v.printf("]\n");
    v.into_string()
}

/// `VTIM_format`: RFC 1123 date of the whole seconds of `t`.
pub fn rfc1123(t: f64) -> String {
    // Clamp into what the formatter takes (years 1970..=9999); NaN becomes 0.
    let secs = if t.is_finite() {
        t.clamp(0.0, 253_402_300_799.0) as u64
    } else {
        0
    };
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// `backend.list [-j] [-p] [<backend_pattern>]`.
pub fn cmd_backend_list(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let (mut json, mut probe) = (false, false);
    let mut i = 1;
    while let Some(flags) = av.get(i).filter(|a| a.starts_with('-')) {
        for c in flags.chars().skip(1) {
            match c {
                'j' => json = true,
                'p' => probe = !probe,
                _ => return (status::PARAM, format!("Invalid flag {c}")),
            }
        }
        i += 1;
    }
    if av.len() > i + 1 {
        return (status::PARAM, "Too many arguments".into());
    }
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let rows = ctl.backends();
    let active = ctl.active_vcl();
    let chosen = select(&rows, &active, av.get(i).map(String::as_str));
    let body = if json {
        list_json(av, &chosen, probe, commands::now())
    } else {
        list_text(&chosen, probe)
    };
    (status::OK, body)
}

/// `vdi_str2ahealth`, case-insensitive; `deleted` is a state but not one to set.
pub fn parse_state(s: &str) -> Option<AdminHealth> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Some(AdminHealth::Auto),
        "healthy" => Some(AdminHealth::Healthy),
        "sick" => Some(AdminHealth::Sick),
        _ => None,
    }
}

/// `backend.set_health <backend_pattern> auto|healthy|sick`.
pub fn cmd_backend_set_health(ctx: &Context, _: &mut Session, av: &[String]) -> (u16, String) {
    let Some(state) = parse_state(&av[2]) else {
        return (status::PARAM, format!("Invalid state {}", av[2]));
    };
    let ctl = match control(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let rows = ctl.backends();
    let active = ctl.active_vcl();
    let targets: Vec<(String, String)> = select(&rows, &active, Some(&av[1]))
        .into_iter()
        .map(|r| (r.vcl.clone(), r.name.clone()))
        .collect();
    if targets.is_empty() {
        return (status::PARAM, "No Backends matches".into());
    }
    ctl.set_health(&targets, state);
    (status::OK, String::new())
}

/// `fnmatch(pattern, name, 0)` as glibc does it in the C locale: `*`, `?`, `\` escapes and
/// bracket expressions (`!` or `^` negation, ranges by byte value, `[:class:]`, and the
/// one-character `[=c=]` and `[.c.]`). No special meaning for `/` or a leading `.`. Odd cases
/// follow glibc 2.36: a trailing `\` matches nothing; an unterminated `[` is a literal `[`
/// and what follows it is pattern again; `]` first in a set is literal.
///
/// `*` backtracks only to the latest star (what glibc's `ends` bookkeeping does too), so the
/// time is O(pattern × name) whatever the pattern.
pub fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    // C strings: a NUL ends either.
    let cut = |b: &[u8]| b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let p = &pattern[..cut(pattern)];
    let s = &name[..cut(name)];
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p.get(pi) == Some(&b'*') {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        let step = match (p.get(pi), s.get(si)) {
            (None, None) => return true,
            (Some(_), Some(&c)) => match_one(p, pi, c),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) if ss < s.len() => {
                    star = Some((sp, ss + 1));
                    pi = sp;
                    si = ss + 1;
                }
                _ => return false,
            },
        }
    }
}

/// The pattern element at `p[i]` (not `*`) against character `c`: where the pattern goes on,
/// or `None` if it does not match.
fn match_one(p: &[u8], i: usize, c: u8) -> Option<usize> {
    match p[i] {
        b'?' => Some(i + 1),
        b'\\' => {
            let e = *p.get(i + 1)?;
            (e == c).then_some(i + 2)
        }
        b'[' => match bracket(p, i + 1, c) {
            Bracket::Match(next) => Some(next),
            Bracket::NoMatch => None,
            Bracket::Unterminated => (c == b'[').then_some(i + 1),
        },
        l => (l == c).then_some(i + 1),
    }
}

enum Bracket {
    Match(usize),
    NoMatch,
    /// No closing `]`: the `[` is an ordinary character.
    Unterminated,
}

/// Longest `[:name:]` glibc reads before giving up on the pattern.
const CHAR_CLASS_MAX_LENGTH: usize = 256;

/// What glibc accepts inside `[:name:]` while reading it: `a` to `y` (its test is
/// `c < 'a' || c >= 'z'`; no class name has a `z`).
fn class_name_char(c: u8) -> bool {
    (b'a'..=b'y').contains(&c)
}

/// `[:name:]` in the C locale; `None` for an unknown name.
fn char_class(name: &[u8], c: u8) -> Option<bool> {
    Some(match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    })
}

/// A bracket expression whose `[` is just before `p[start]`, against `f`: a port of the `[`
/// case of glibc's `fnmatch_loop.c` for flags 0 in the C locale (byte order for ranges).
fn bracket(p: &[u8], start: usize, f: u8) -> Bracket {
    // The C code reads the pattern as a NUL-terminated string.
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    let mut i = start;
    let negated = matches!(at(i), b'!' | b'^');
    if negated {
        i += 1;
    }
    // `c` is the element being looked at, `i` the index just after it (C's `p`).
    let mut c = at(i);
    i += 1;
    let matched = 'set: loop {
        // Each arm leaves `c`/`i` on the element after the one handled, or jumps to the range
        // handling with `lo` set ("normal_bracket").
        let lo: u8;
        if c == b'\\' {
            if at(i) == 0 {
                return Bracket::NoMatch;
            }
            c = at(i);
            i += 1;
            lo = c;
        } else if c == b'[' && at(i) == b':' {
            let startp = i;
            let mut name = Vec::new();
            let mut plain = false;
            loop {
                if name.len() == CHAR_CLASS_MAX_LENGTH {
                    return Bracket::NoMatch;
                }
                i += 1;
                let d = at(i);
                if d == b':' && at(i + 1) == b']' {
                    i += 2;
                    break;
                }
                if !class_name_char(d) {
                    plain = true;
                    break;
                }
                name.push(d);
            }
            if plain {
                i = startp;
                lo = b'[';
            } else {
                match char_class(&name, f) {
                    None => return Bracket::NoMatch,
                    Some(true) => break 'set true,
                    Some(false) => {}
                }
                c = at(i);
                i += 1;
                if c == b']' {
                    break 'set false;
                }
                continue;
            }
        } else if c == b'[' && at(i) == b'=' {
            let startp = i;
            let e = at(i + 1);
            if e == 0 || at(i + 2) != b'=' || at(i + 3) != b']' {
                i = startp;
                lo = b'[';
            } else {
                i += 4;
                if f == e {
                    break 'set true;
                }
                c = at(i);
                i += 1;
                if c == b']' {
                    break 'set false;
                }
                continue;
            }
        } else if c == 0 {
            return Bracket::Unterminated;
        } else if c == b'[' && at(i) == b'.' {
            let startp = i;
            let mut n = 0;
            loop {
                i += 1;
                let d = at(i);
                if d == b'.' && at(i + 1) == b']' {
                    i += 2;
                    break;
                }
                if d == 0 {
                    return Bracket::NoMatch;
                }
                n += 1;
            }
            if n != 1 {
                return Bracket::NoMatch;
            }
            let sym = at(startp + 1);
            let is_range = at(i) == b'-' && at(i + 1) != 0;
            if !is_range && f == sym {
                break 'set true;
            }
            c = at(i);
            i += 1;
            match range(p, &mut i, &mut c, sym, f) {
                Some(true) => break 'set true,
                Some(false) => {}
                None => return Bracket::NoMatch,
            }
            if c == b']' {
                break 'set false;
            }
            continue;
        } else {
            lo = c;
        }
        // normal_bracket: `lo` alone, or the start of a range.
        let is_range = at(i) == b'-' && at(i + 1) != 0 && at(i + 1) != b']';
        if !is_range && lo == f {
            break 'set true;
        }
        c = at(i);
        i += 1;
        match range(p, &mut i, &mut c, lo, f) {
            Some(true) => break 'set true,
            Some(false) => {}
            None => return Bracket::NoMatch,
        }
        if c == b']' {
            break 'set false;
        }
    };
    if !matched {
        return if negated {
            Bracket::Match(i)
        } else {
            Bracket::NoMatch
        };
    }
    // matched: skip the rest of the set.
    loop {
        let c = at(i);
        i += 1;
        match c {
            b']' => break,
            // glibc 2.35 on (bug 28792): unterminated after all, so the `[` is ordinary.
            0 => return Bracket::Unterminated,
            b'\\' => {
                if at(i) == 0 {
                    return Bracket::NoMatch;
                }
                i += 1;
            }
            b'[' if at(i) == b':' => {
                // A class name is skipped whole; anything else from the `:` on is read as
                // ordinary characters.
                let startp = i;
                let mut n = 0;
                loop {
                    i += 1;
                    n += 1;
                    if n == CHAR_CLASS_MAX_LENGTH {
                        return Bracket::NoMatch;
                    }
                    if at(i) == b':' && at(i + 1) == b']' {
                        i += 2;
                        break;
                    }
                    if !class_name_char(at(i)) {
                        i = startp;
                        break;
                    }
                }
            }
            b'[' if at(i) == b'=' => {
                if at(i + 1) == 0 || at(i + 2) != b'=' || at(i + 3) != b']' {
                    return Bracket::NoMatch;
                }
                i += 4;
            }
            b'[' if at(i) == b'.' => loop {
                i += 1;
                if at(i) == 0 {
                    return Bracket::NoMatch;
                }
                if at(i) == b'.' && at(i + 1) == b']' {
                    i += 2;
                    break;
                }
            },
            _ => {}
        }
    }
    if negated {
        Bracket::NoMatch
    } else {
        Bracket::Match(i)
    }
}

/// After a set element `lo` (with `c` the character after it, `i` just past `c`): when `c` is
/// a `-` that starts a range, reads the range's end and moves on. `Some(true)`: `f` is in the
/// range; `None`: the pattern is malformed (no match at all).
fn range(p: &[u8], i: &mut usize, c: &mut u8, lo: u8, f: u8) -> Option<bool> {
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    if *c != b'-' || at(*i) == b']' {
        return Some(false);
    }
    let mut hi = at(*i);
    *i += 1;
    if hi == b'[' && at(*i) == b'.' {
        let startp = *i;
        let mut n = 0;
        loop {
            *i += 1;
            let d = at(*i);
            if d == b'.' && at(*i + 1) == b']' {
                *i += 2;
                break;
            }
            if d == 0 {
                return None;
            }
            n += 1;
        }
        if n != 1 {
            return None;
        }
        hi = at(startp + 1);
    } else {
        if hi == b'\\' {
            hi = at(*i);
            *i += 1;
        }
        if hi == 0 {
            return None;
        }
    }
    if lo <= f && f <= hi {
        return Some(true);
    }
    *c = at(*i);
    *i += 1;
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(good: u32, threshold: u32, window: u32, happy: u64) -> ProbeView {
        ProbeView {
            good,
            threshold,
            window,
            avg: 0.002185,
            bits: [happy, 0, 0, 0, happy, 0, happy, happy],
        }
    }

    fn row(vcl: &str, name: &str, kind: &'static str) -> BackendRow {
        BackendRow {
            vcl: vcl.into(),
            name: name.into(),
            kind,
            admin: AdminHealth::Auto,
            probe: None,
            healthy: true,
            // Sat, 21 Nov 2026 13:36:38 GMT
            last_change: 1_795_268_198.991,
            ipv4: None,
            ipv6: None,
            members: Vec::new(),
        }
    }

    /// The VCL of the varnishd session the expected texts below were captured from:
    /// s1 (probe, window 8, threshold 3), s2 (no probe), longer_name_backend (probe, refused),
    /// then directors rr(s1, s2), fb(longer_name_backend, s1), rd(s1, s2), h(s1), sh(s1, s2).
    fn session() -> Vec<BackendRow> {
        let mut s1 = row("boot", "s1", "backend");
        let mut p1 = probe(8, 3, 8, 0x3f);
        p1.bits[7] = 0xff;
        s1.probe = Some(p1);
        let s2 = row("boot", "s2", "backend");
        let mut ln = row("boot", "longer_name_backend", "backend");
        ln.probe = Some(ProbeView {
            good: 2,
            threshold: 3,
            window: 8,
            avg: 0.0,
            bits: [0, 0, 0, 0, 0, 0, 0, 0xc0],
        });
        ln.healthy = false;
        let mut rr = row("boot", "rr", "round-robin");
        rr.members = vec![("s1".into(), true), ("s2".into(), true)];
        let mut fb = row("boot", "fb", "fallback");
        fb.members = vec![("longer_name_backend".into(), false), ("s1".into(), true)];
        let mut rd = row("boot", "rd", "random");
        rd.members = vec![("s1".into(), true), ("s2".into(), true)];
        let mut h = row("boot", "h", "hash");
        h.members = vec![("s1".into(), true)];
        let mut sh = row("boot", "sh", "shard");
        sh.members = vec![("s1".into(), true), ("s2".into(), true)];
        vec![s1, s2, ln, rr, fb, rd, h, sh]
    }

    fn all(rows: &[BackendRow]) -> Vec<&BackendRow> {
        rows.iter().collect()
    }

    #[test]
    fn plain_list_is_varnishd_bytes() {
        let rows = session();
        // varnishd 7.1.1's `backend.list` for this VCL.
        let want = "Backend name              Admin     Probe   Health    Last change\n\
boot.s1                   probe     8/8     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.s2                   healthy   0/0     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.longer_name_backend  probe     2/8     sick      Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.rr                   probe     2/2     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.fb                   probe     1/2     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.rd                   probe     2/2     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.h                    healthy   0/0     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.sh                   probe     2/2     healthy   Sat, 21 Nov 2026 13:36:38 GMT\n";
        assert_eq!(list_text(&all(&rows), false), want);
        // Nothing selected: the header alone, spaced for its own width.
        assert_eq!(
            list_text(&[], false),
            "Backend name   Admin    Probe    Health    Last change\n"
        );
        // One short row: wider gaps (3), as varnishd's `backend.list -p s2`.
        assert_eq!(
            list_text(&[&rows[1]], true),
            "Backend name   Admin      Probe    Health     Last change\n\
boot.s2        healthy    0/0      healthy    Sat, 21 Nov 2026 13:36:38 GMT\n"
        );
    }

    #[test]
    fn probe_list_is_varnishd_bytes() {
        let mut rows = session();
        // In the capture, s1's history held 6 good pokes after 2 initial happy ones.
        if let Some(p) = rows[0].probe.as_mut() {
            p.bits = [0x3f, 0, 0, 0, 0x3f, 0, 0x3f, 0xff];
        }
        let want = "Backend name              Admin                 Probe     Health    Last change\n\
boot.s1                   probe                 8/8       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n \
Current states  good:  8 threshold:  3 window:  8\n  \
Average response time of good probes: 0.002185\n  \
Oldest ================================================== Newest\n  \
----------------------------------------------------------444444 Good IPv4\n  \
----------------------------------------------------------XXXXXX Good Xmit\n  \
----------------------------------------------------------RRRRRR Good Recv\n  \
--------------------------------------------------------HHHHHHHH Happy\n\
\n\
boot.s2                   healthy               0/0       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.longer_name_backend  probe                 2/8       sick      Sat, 21 Nov 2026 13:36:38 GMT\n \
Current states  good:  2 threshold:  3 window:  8\n  \
Average response time of good probes: 0.000000\n  \
Oldest ================================================== Newest\n  \
--------------------------------------------------------HH------ Happy\n\
\n\
boot.rr                   probe                 2/2       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
\n                          \
Backend               Weight    Health\n                          \
s1                    -         healthy\n                          \
s2                    -         healthy\n\
\n\
boot.fb                   probe                 1/2       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
\n                          \
Backend               Current   Health\n                          \
longer_name_backend             sick\n                          \
s1                    *         healthy\n\
\n\
boot.rd                   probe                 2/2       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
\n                          \
Backend               Weight    Health\n                          \
s1                     50.00%   healthy\n                          \
s2                     50.00%   healthy\n\
\n\
boot.h                    healthy               0/0       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.sh                   probe                 2/2       healthy   Sat, 21 Nov 2026 13:36:38 GMT\n\
\n                          \
Backend               Ident     Health    Rampup  Remaining\n                          \
s1                    s1        healthy   100.00%    0.000s\n                          \
s2                    s2        healthy   100.00%    0.000s\n\
\n";
        let got = list_text(&all(&rows), true);
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn json_list_is_varnishd_bytes() {
        let rows = session();
        let av: Vec<String> = ["backend.list", "-j"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = list_json(&av, &all(&rows[..2]), false, 1_795_268_204.634);
        let want = "[ 3, [\"backend.list\", \"-j\"], 1795268204.634,\n  {\n    \"boot.s1\": {\n      \"type\": \"backend\",\n      \"admin_health\": \"probe\",\n      \"probe_message\": [8, 8, \"healthy\"],\n      \"last_change\": 1795268198.991\n    },\n    \"boot.s2\": {\n      \"type\": \"backend\",\n      \"admin_health\": \"healthy\",\n      \"probe_message\": [0, 0, \"healthy\"],\n      \"last_change\": 1795268198.991\n    }\n  }\n]\n";
        assert_eq!(got, want);
        // Nothing selected (varnishd's `backend.list -j nomatch`).
        let av: Vec<String> = ["backend.list", "-j", "nomatch"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            list_json(&av, &[], false, 1_795_268_212.604),
            "[ 3, [\"backend.list\", \"-j\", \"nomatch\"], 1795268212.604,\n  {\n  \n  }\n]\n"
        );
    }

    #[test]
    fn json_probe_details_are_varnishd_bytes() {
        let mut rows = session();
        if let Some(p) = rows[0].probe.as_mut() {
            p.bits = [16383, 0, 0, 0, 16383, 0, 16383, 65535];
        }
        if let Some(p) = rows[2].probe.as_mut() {
            p.good = 0;
            p.bits = [0, 0, 0, 0, 0, 0, 0, 49152];
        }
        let av: Vec<String> = ["backend.list", "-j", "-p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = list_json(&av, &all(&rows), true, 1_795_268_212.603);
        // varnishd 7.1.1 `backend.list -j -p`, but for the random director's weights (1 each
        // here, 1 and 3 in the captured VCL).
        let want = r#"[ 3, ["backend.list", "-j", "-p"], 1795268212.603,
  {
    "boot.s1": {
      "type": "backend",
      "admin_health": "probe",
      "probe_message": [8, 8, "healthy"],
      "probe_details": {
        "bits_4": 16383,
        "bits_6": 0,
        "bits_U": 0,
        "bits_x": 0,
        "bits_X": 16383,
        "bits_r": 0,
        "bits_R": 16383,
        "bits_H": 65535,
        "good": 8,
        "threshold": 3,
        "window": 8
      },
      "last_change": 1795268198.991
    },
    "boot.s2": {
      "type": "backend",
      "admin_health": "healthy",
      "probe_message": [0, 0, "healthy"],
      "probe_details": {},
      "last_change": 1795268198.991
    },
    "boot.longer_name_backend": {
      "type": "backend",
      "admin_health": "probe",
      "probe_message": [0, 8, "sick"],
      "probe_details": {
        "bits_4": 0,
        "bits_6": 0,
        "bits_U": 0,
        "bits_x": 0,
        "bits_X": 0,
        "bits_r": 0,
        "bits_R": 0,
        "bits_H": 49152,
        "good": 0,
        "threshold": 3,
        "window": 8
      },
      "last_change": 1795268198.991
    },
    "boot.rr": {
      "type": "round-robin",
      "admin_health": "probe",
      "probe_message": [2, 2, "healthy"],
      "probe_details": {
        "backends": {
          "s1": {
            "health": "healthy"
          },
          "s2": {
            "health": "healthy"
          }
        }
      },
      "last_change": 1795268198.991
    },
    "boot.fb": {
      "type": "fallback",
      "admin_health": "probe",
      "probe_message": [1, 2, "healthy"],
      "probe_details": {
        "sticky": false,
        "backends": {
          "longer_name_backend": {
            "current": false,
            "health": "sick"
          },
          "s1": {
            "current": true,
            "health": "healthy"
          }
        }
      },
      "last_change": 1795268198.991
    },
    "boot.rd": {
      "type": "random",
      "admin_health": "probe",
      "probe_message": [2, 2, "healthy"],
      "probe_details": {
        "total_weight": 2.000000,
        "backends": {
          "s1": {
            "weight": 1.000000,
            "health": "healthy"
          },
          "s2": {
            "weight": 1.000000,
            "health": "healthy"
          }
        }
      },
      "last_change": 1795268198.991
    },
    "boot.h": {
      "type": "hash",
      "admin_health": "healthy",
      "probe_message": [0, 0, "healthy"],
      "last_change": 1795268198.991
    },
    "boot.sh": {
      "type": "shard",
      "admin_health": "probe",
      "probe_message": [2, 2, "healthy"],
      "probe_details": {
        "warmup": 0.000000,
        "rampup_duration": 0.000000,
        "backends": {
          "s1": {
            "ident": "s1",
            "health": "healthy",
            "rampup": 1.000000,
            "rampup_remaining": 0.000
          },
          "s2": {
            "ident": "s2",
            "health": "healthy",
            "rampup": 1.000000,
            "rampup_remaining": 0.000
          }
        }
      },
      "last_change": 1795268198.991
    }
  }
]
"#;
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn admin_and_health_columns() {
        let rows = session();
        let mut s1 = rows[0].clone();
        // Forced sick: Admin says so, Health keeps showing the probe's verdict (as varnishd).
        s1.admin = AdminHealth::Sick;
        s1.healthy = false;
        let mut s2 = rows[1].clone();
        s2.admin = AdminHealth::Healthy;
        let mut rr = rows[3].clone();
        rr.members[0].1 = false;
        let mut fb = rows[4].clone();
        fb.members[1].1 = false;
        let got = list_text(&[&s1, &s2, &rr, &fb], false);
        let want = "Backend name   Admin      Probe    Health     Last change\n\
boot.s1        sick       8/8      healthy    Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.s2        healthy    0/0      healthy    Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.rr        probe      1/2      healthy    Sat, 21 Nov 2026 13:36:38 GMT\n\
boot.fb        probe      0/2      sick       Sat, 21 Nov 2026 13:36:38 GMT\n";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn patterns_follow_vcl_iterdirector() {
        assert_eq!(expand_pattern("boot", None), ("boot.*".into(), true));
        assert_eq!(expand_pattern("boot", Some("")), ("boot.*".into(), true));
        assert_eq!(expand_pattern("boot", Some("*")), ("boot.*".into(), true));
        assert_eq!(expand_pattern("boot", Some("s?")), ("boot.s?".into(), true));
        assert_eq!(expand_pattern("boot", Some("*.s1")), ("*.s1".into(), false));
        let mut rows = session();
        let mut other = row("v2", "s1", "backend");
        other.last_change = 0.0;
        rows.push(other);
        let names = |pat: Option<&str>, active: &str| -> Vec<String> {
            select(&rows, active, pat)
                .iter()
                .map(|r| cli_name(r))
                .collect()
        };
        assert_eq!(names(Some("s1"), "boot"), vec!["boot.s1"]);
        assert_eq!(names(Some("s1"), "v2"), vec!["v2.s1"]);
        assert_eq!(names(Some("*.s1"), "v2"), vec!["boot.s1", "v2.s1"]);
        assert_eq!(names(Some("s"), "boot"), Vec::<String>::new());
        assert_eq!(
            names(Some("s?"), "boot"),
            vec!["boot.s1", "boot.s2", "boot.sh"]
        );
        assert_eq!(
            names(Some("*.s[!2]"), "boot"),
            vec!["boot.s1", "boot.sh", "v2.s1"]
        );
        assert_eq!(names(None, "v2"), vec!["v2.s1"]);
        assert_eq!(names(Some("v2.*"), "boot"), vec!["v2.s1"]);
        assert_eq!(names(Some("nosuch.*"), "boot"), Vec::<String>::new());
        assert_eq!(select(&rows, "boot", Some("*")).len(), 8);
    }

    #[test]
    fn states_parse_case_insensitively() {
        assert_eq!(parse_state("SICK"), Some(AdminHealth::Sick));
        assert_eq!(parse_state("Healthy"), Some(AdminHealth::Healthy));
        assert_eq!(parse_state("auto"), Some(AdminHealth::Auto));
        assert_eq!(parse_state("deleted"), None);
        assert_eq!(parse_state("foo"), None);
    }

    #[test]
    fn rfc1123_dates() {
        assert_eq!(rfc1123(1_795_268_198.991), "Sat, 21 Nov 2026 13:36:38 GMT");
        assert_eq!(rfc1123(0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(f64::NAN), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(-5.0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    /// glibc's answer for `fnmatch(p, s, 0)`.
    fn libc_fnmatch(p: &[u8], s: &[u8]) -> bool {
        let (Ok(p), Ok(s)) = (std::ffi::CString::new(p), std::ffi::CString::new(s)) else {
            return false;
        };
        // SAFETY: both are valid NUL-terminated strings that outlive the call; fnmatch only
        // reads them.
        unsafe { libc::fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
    }

    #[test]
    fn fnmatch_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("boot.*", "boot.s1", true),
            ("boot.*", "boot.a.b", true),
            ("boot.b", "boot.b1", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("?", "", false),
            ("a?c", "abc", true),
            ("a\\*c", "a*c", true),
            ("a\\*c", "abc", false),
            ("a\\", "a\\", false),
            ("a\\", "a", false),
            ("[abc]", "b", true),
            ("[!abc]", "b", false),
            ("[^abc]", "d", true),
            ("[a-c]x", "bx", true),
            ("[c-a]", "b", false),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[[:digit:]]", "5", true),
            ("[[:alpha:][:digit:]]", "x", true),
            ("[[:nope:]]", "x", false),
            ("[[:alpha]", ":", true),
            ("[", "[", true),
            ("[a", "[a", true),
            ("[a", "a", false),
            ("[\\[", "[[", true),
            ("[\\]]", "]", true),
            ("[\\", "[\\", false),
            ("[[=a=]]", "a", true),
            ("[[.a.]]", "a", true),
            ("[[.a.]-c]", "b", true),
            ("[[.ab.]]", "a", false),
            ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true),
            ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("*[a", "x[a", true),
            ("*\\", "x\\", false),
            ("*?", "", false),
            ("*?*", "a", true),
        ];
        for &(p, s, want) in cases {
            assert_eq!(fnmatch(p.as_bytes(), s.as_bytes()), want, "{p:?} vs {s:?}");
            assert_eq!(
                libc_fnmatch(p.as_bytes(), s.as_bytes()),
                want,
                "libc: {p:?} vs {s:?}"
            );
        }
    }

    #[test]
    fn fnmatch_agrees_with_libc() {
        // A small xorshift so the run is repeatable.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let palphabet = b"ab.-*?[]!^\\:=z";
        let salphabet = b"ab.-[]!^\\:z";
        let mut matched = 0;
        for _ in 0..200_000 {
            let p: Vec<u8> = (0..next(9))
                .map(|_| palphabet[next(palphabet.len())])
                .collect();
            let s: Vec<u8> = (0..next(6))
                .map(|_| salphabet[next(salphabet.len())])
                .collect();
            let want = libc_fnmatch(&p, &s);
            matched += usize::from(want);
            assert_eq!(
                fnmatch(&p, &s),
                want,
                "{:?} vs {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&s)
            );
        }
        // Patterns derived from the name, so that most of them should match.
        let elems: [&[u8]; 8] = [
            b"a",
            b"b",
            b"-",
            b"]",
            b"[:alpha:]",
            b"[:digit:]",
            b"\\]",
            b"!",
        ];
        for _ in 0..100_000 {
            let s: Vec<u8> = (0..next(7))
                .map(|_| salphabet[next(salphabet.len())])
                .collect();
            let mut p = Vec::new();
            let mut i = 0;
            while i < s.len() {
                match next(7) {
                    0 => p.push(b'?'),
                    1 => {
                        p.push(b'*');
                        i += next(3);
                    }
                    2 | 3 => {
                        p.push(b'[');
                        if next(3) == 0 {
                            p.push(if next(2) == 0 { b'!' } else { b'^' });
                        }
                        for _ in 0..next(3) {
                            p.extend_from_slice(elems[next(elems.len())]);
                        }
                        if next(2) == 0 {
                            p.push(s[i]);
                        } else {
                            p.extend_from_slice(b"a-z");
                        }
                        if next(8) != 0 {
                            p.push(b']');
                        }
                    }
                    4 => p.extend_from_slice(&[b'\\', s[i]]),
                    _ => p.push(s[i]),
                }
                i += 1;
            }
            let want = libc_fnmatch(&p, &s);
            matched += usize::from(want);
            assert_eq!(
                fnmatch(&p, &s),
                want,
                "{:?} vs {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&s)
            );
        }
        // The samples must exercise matches, not only misses.
        assert!(matched > 30_000, "{matched}");
        // Classes and ranges over every byte.
        for p in [
            "[[:alnum:]]",
            "[[:alpha:]]",
            "[[:blank:]]",
            "[[:cntrl:]]",
            "[[:digit:]]",
            "[[:graph:]]",
            "[[:lower:]]",
            "[[:print:]]",
            "[[:punct:]]",
            "[[:space:]]",
            "[[:upper:]]",
            "[[:xdigit:]]",
            "[!a-y]",
            "[%-/]",
        ] {
            for b in 1..=255u8 {
                assert_eq!(
                    fnmatch(p.as_bytes(), &[b]),
                    libc_fnmatch(p.as_bytes(), &[b]),
                    "{p} {b}"
                );
            }
        }
    }
}
