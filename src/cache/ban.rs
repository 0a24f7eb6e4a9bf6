//! Bans: Varnish's ban expressions, their evaluation against a cached object, and the ban list.
//!
//! Why bans and not purges: a purge removes one key at its owner; a ban ("every object whose
//! URL matches `^/news/`", "every object tagged `x-tag: 42`") can match any number of objects on
//! every shard, and walking a whole cache at once would stall the shards. So, as in Varnish, a
//! ban is an entry in a list, and each object is tested against the bans added since it was
//! last tested (its checkpoint, a ban sequence number) when it is looked up: a banned object is
//! removed there and the lookup misses. A test on `req.*` can only run at lookup, with the
//! request; a ban made only of `obj.*` tests can also be run by a background sweep (the shards'
//! upkeep, Varnish's ban lurker), which removes banned objects nobody asks for and moves the
//! checkpoints forward so old bans can be retired.
//!
//! This module is pure (the clock is an argument): the expression parser and evaluator, with
//! Varnish 7.1's syntax and error texts (`cache_ban_build.c`), and [`BanList`], the list the
//! control plane owns (`crate::bans` publishes its snapshots to the shards).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::cache::object::Object;
use crate::http::Headers;
use crate::vcl::re::Regex;

/// Size limit of a ban's compiled regex (as the VCL compiler's).
const REGEX_SIZE_LIMIT: usize = 1 << 22;

/// What a test looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    ReqUrl,
    /// `req.http.NAME` (the name as written).
    ReqHttp(String),
    ObjStatus,
    /// `obj.http.NAME` (the name as written).
    ObjHttp(String),
    /// Time to live left at the ban's time.
    ObjTtl,
    /// Age at the ban's time.
    ObjAge,
    ObjGrace,
    ObjKeep,
}

impl Field {
    fn parse(a: &str) -> Option<Field> {
        let header = |prefix: &str| {
            a.strip_prefix(prefix)
                .filter(|n| !n.is_empty() && n.bytes().all(is_token))
                .map(str::to_string)
        };
        Some(match a {
            "req.url" => Field::ReqUrl,
            "obj.status" => Field::ObjStatus,
            "obj.ttl" => Field::ObjTtl,
            "obj.age" => Field::ObjAge,
            "obj.grace" => Field::ObjGrace,
            "obj.keep" => Field::ObjKeep,
            _ => {
                if let Some(n) = header("req.http.") {
                    Field::ReqHttp(n)
                } else {
                    Field::ObjHttp(header("obj.http.")?)
                }
            }
        })
    }

    fn is_req(&self) -> bool {
        matches!(self, Field::ReqUrl | Field::ReqHttp(_))
    }

    fn is_duration(&self) -> bool {
        matches!(
            self,
            Field::ObjTtl | Field::ObjAge | Field::ObjGrace | Field::ObjKeep
        )
    }

    /// The operators it takes, in Varnish's order.
    fn operators(&self) -> &'static [Op] {
        const STRING: &[Op] = &[Op::Eq, Op::Ne, Op::Match, Op::NoMatch];
        const DURATION: &[Op] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
        // A ringcache extension: Varnish 7.1 compares obj.status as a string only.
        const STATUS: &[Op] = &[
            Op::Eq,
            Op::Ne,
            Op::Match,
            Op::NoMatch,
            Op::Gt,
            Op::Ge,
            Op::Lt,
            Op::Le,
        ];
        match self {
            Field::ObjStatus => STATUS,
            f if f.is_duration() => DURATION,
            _ => STRING,
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Field::ReqUrl => out.push_str("req.url"),
            Field::ReqHttp(n) => {
                out.push_str("req.http.");
                out.push_str(n);
            }
            Field::ObjStatus => out.push_str("obj.status"),
            Field::ObjHttp(n) => {
                out.push_str("obj.http.");
                out.push_str(n);
            }
            Field::ObjTtl => out.push_str("obj.ttl"),
            Field::ObjAge => out.push_str("obj.age"),
            Field::ObjGrace => out.push_str("obj.grace"),
            Field::ObjKeep => out.push_str("obj.keep"),
        }
    }
}

/// A token character of RFC 9110 (a header field name).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Match,
    NoMatch,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Eq,
        Op::Ne,
        Op::Match,
        Op::NoMatch,
        Op::Gt,
        Op::Ge,
        Op::Lt,
        Op::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Match => "~",
            Op::NoMatch => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    fn ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }
}

/// The right-hand side of a test, ready to compare.
#[derive(Clone)]
enum Arg {
    Text(String),
    Regex(Arc<Regex>),
    /// Seconds.
    Duration(f64),
    /// An `obj.status` compared in order.
    Number(u16),
}

/// One `<field> <operator> <argument>` condition.
#[derive(Clone)]
pub struct Test {
    field: Field,
    op: Op,
    /// The argument as written (regex source, duration text, string).
    text: String,
    arg: Arg,
}

impl std::fmt::Debug for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} {:?}", self.field, self.op.as_str(), self.text)
    }
}

impl PartialEq for Test {
    fn eq(&self, other: &Test) -> bool {
        self.field == other.field && self.op == other.op && self.text == other.text
    }
}

/// The request side a `req.*` test reads.
#[derive(Clone, Copy)]
pub struct ReqView<'a> {
    pub url: &'a [u8],
    pub headers: &'a Headers,
}

impl Test {
    /// Varnish's `BAN_AddTest`: checks the field, the operator for it and the argument.
    fn new(a1: &str, a2: &str, a3: &str) -> Result<Test, String> {
        let field =
            Field::parse(a1).ok_or_else(|| format!("Unknown or unsupported field \"{a1}\""))?;
        let op = field
            .operators()
            .iter()
            .copied()
            .find(|o| o.as_str() == a2)
            .ok_or_else(|| {
                format!(
                    "expected conditional ({}) got \"{a2}\"",
                    operator_help(field.operators())
                )
            })?;
        let arg = if field.is_duration() {
            let d = parse_duration(a3)
                .ok_or_else(|| format!("expected duration <n.nn>[ms|s|m|h|d|w|y] got \"{a3}\""))?;
            Arg::Duration(d)
        } else if op.ordering() {
            // Only obj.status takes an ordering operator.
            let n = a3
                .parse::<u16>()
                .ok()
                .filter(|n| *n <= 999)
                .ok_or_else(|| format!("expected a status code (0 to 999) got \"{a3}\""))?;
            Arg::Number(n)
        } else if matches!(op, Op::Match | Op::NoMatch) {
            let re = Regex::new(a3, REGEX_SIZE_LIMIT).map_err(|e| {
                format!("Regex compile error: {}", crate::vcl::re::error_message(e))
            })?;
            Arg::Regex(Arc::new(re))
        } else {
            Arg::Text(a3.to_string())
        };
        Ok(Test {
            field,
            op,
            text: a3.to_string(),
            arg,
        })
    }

    /// Does this condition hold for `obj` (and the request, for `req.*`) at a ban made at
    /// `ban_time`? A `req.*` test without a request does not hold.
    fn holds(&self, obj: &Object, req: Option<ReqView<'_>>, ban_time: f64) -> bool {
        if self.field.is_req() && req.is_none() {
            return false;
        }
        let status;
        let subject: Option<&[u8]> = match &self.field {
            Field::ReqUrl => req.map(|r| r.url),
            Field::ReqHttp(n) => req.and_then(|r| r.headers.get(n)).map(|v| &v[..]),
            Field::ObjHttp(n) => obj.headers.get(n).map(|v| &v[..]),
            Field::ObjStatus => {
                if let Arg::Number(want) = self.arg {
                    return compare(self.op, f64::from(obj.status), f64::from(want));
                }
                status = obj.status.to_string();
                Some(status.as_bytes())
            }
            // As Varnish: fix the point in time to the ban's, so a ban means the same
            // objects whenever it is evaluated.
            Field::ObjTtl => return self.timed(obj.t_origin + obj.ttl, ban_time),
            Field::ObjAge => return self.timed(-obj.t_origin, -ban_time),
            Field::ObjGrace => return self.timed(obj.grace, 0.0),
            Field::ObjKeep => return self.timed(obj.keep, 0.0),
        };
        // Varnish's rules for a missing field: only `!=` holds.
        let Some(s) = subject else {
            return self.op == Op::Ne;
        };
        match (&self.arg, self.op) {
            (Arg::Text(t), Op::Eq) => s == t.as_bytes(),
            (Arg::Text(t), Op::Ne) => s != t.as_bytes(),
            (Arg::Regex(re), Op::Match) => re.is_match(s),
            (Arg::Regex(re), Op::NoMatch) => !re.is_match(s),
            _ => false,
        }
    }

    /// A duration test: `value` against the argument offset by `base`.
    fn timed(&self, value: f64, base: f64) -> bool {
        let Arg::Duration(d) = self.arg else {
            return false;
        };
        compare(self.op, value, base + d)
    }

    fn render(&self, out: &mut String, quote: bool) {
        self.field.render(out);
        out.push(' ');
        out.push_str(self.op.as_str());
        out.push(' ');
        match self.arg {
            Arg::Duration(d) => out.push_str(&render_duration(d)),
            _ if quote => crate::admin::stat::json_escape_into(out, &self.text),
            _ => out.push_str(&self.text),
        }
    }
}

fn compare(op: Op, a: f64, b: f64) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Match | Op::NoMatch => false,
    }
}

/// `==, != or ~`: Varnish's operator list for an error message.
fn operator_help(ops: &[Op]) -> String {
    let names: Vec<&str> = Op::ALL
        .iter()
        .filter(|o| ops.contains(o))
        .map(|o| o.as_str())
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

/// Varnish's `VNUM_duration`: a number and a unit (`ms s m h d w y`), spaces allowed between.
pub fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .filter(|&i| i > 0)?;
    let (num, unit) = s.split_at(split);
    let num = num.trim();
    if num.is_empty() || num.contains(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')) {
        return None;
    }
    let x: f64 = num.parse().ok()?;
    let mult = crate::vcl::ast::duration_unit_scale(unit)?;
    Some(x * mult).filter(|v| v.is_finite())
}

/// Varnish's `vdur_render`: `0s`, `250ms`, `1.500s`, or whole seconds in the largest unit that
/// divides them (`1h`, `90s`, `2w`).
pub fn render_duration(d: f64) -> String {
    let whole = d.floor().max(0.0) as u64;
    let frac = ((d * 1e3).floor().max(0.0) as u64) % 1000;
    if whole == 0 && frac == 0 {
        return "0s".to_string();
    }
    if whole == 0 {
        return format!("{frac}ms");
    }
    if frac != 0 {
        return format!("{whole}.{frac:03}s");
    }
    for (secs, unit) in [
        (365 * 86400, "y"),
        (7 * 86400, "w"),
        (86400, "d"),
        (3600, "h"),
        (60, "m"),
    ] {
        if whole >= secs && whole % secs == 0 {
            return format!("{}{unit}", whole / secs);
        }
    }
    format!("{whole}s")
}

/// A ban's conditions, all of which must hold.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BanSpec {
    tests: Vec<Test>,
}

impl BanSpec {
    /// The admin command's arguments (after `ban`), checked as varnishd's `ccf_ban` checks them.
    pub fn parse_cli(args: &[String]) -> Result<BanSpec, String> {
        if args.len() % 4 != 3 {
            return Err("Wrong number of arguments".into());
        }
        for sep in args.iter().skip(3).step_by(4) {
            if sep != "&&" {
                return Err(format!("Found \"{sep}\" expected &&"));
            }
        }
        let tests = args
            .chunks(4)
            .map(|c| Test::new(&c[0], &c[1], &c[2]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BanSpec { tests })
    }

    /// VCL's `ban("...")` / `std.ban("...")` string, split on white space as varnishd's
    /// `VRT_ban_string` splits it (quotes are not special), with its error texts.
    pub fn parse_vcl(s: &str) -> Result<BanSpec, String> {
        // C's isspace: space, \t, \n, \v, \f, \r.
        let words: Vec<&str> = s
            .split([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
            .filter(|w| !w.is_empty())
            .collect();
        let mut tests = Vec::new();
        let mut i = 0;
        loop {
            let a1 = words.get(i).ok_or("No ban conditions found.")?;
            let a2 = words.get(i + 1).ok_or("Expected comparison operator.")?;
            let a3 = words.get(i + 2).ok_or("Expected second operand.")?;
            tests.push(Test::new(a1, a2, a3)?);
            match words.get(i + 3) {
                None => return Ok(BanSpec { tests }),
                Some(&"&&") => i += 4,
                Some(other) => {
                    return Err(format!("Expected && between conditions, found \"{other}\""))
                }
            }
        }
    }

    /// Has a `req.*` test (so it can only be tested at lookup).
    pub fn has_req(&self) -> bool {
        self.tests.iter().any(|t| t.field.is_req())
    }

    /// Has an `obj.*` test.
    pub fn has_obj(&self) -> bool {
        self.tests.iter().any(|t| !t.field.is_req())
    }

    /// Compares with the time it is made (`obj.ttl`, `obj.age`), so an identical later ban is
    /// not the same ban (Varnish's `BANS_FLAG_NODEDUP`).
    fn time_relative(&self) -> bool {
        self.tests
            .iter()
            .any(|t| matches!(t.field, Field::ObjTtl | Field::ObjAge))
    }

    /// Do all the conditions hold? `tests` counts the conditions evaluated.
    pub fn matches(
        &self,
        obj: &Object,
        req: Option<ReqView<'_>>,
        ban_time: f64,
        tests: &mut u64,
    ) -> bool {
        for t in &self.tests {
            *tests += 1;
            if !t.holds(obj, req, ban_time) {
                return false;
            }
        }
        true
    }

    /// The spec as `ban.list` shows it; `quote`: escaped for a JSON string.
    pub fn render(&self, quote: bool) -> String {
        let mut out = String::new();
        for (i, t) in self.tests.iter().enumerate() {
            if i > 0 {
                out.push_str(" && ");
            }
            t.render(&mut out, quote);
        }
        out
    }
}

/// One ban of the list.
#[derive(Debug)]
pub struct Ban {
    /// Its place in the list: later bans have larger numbers; the boot placeholder is 0.
    pub seq: u64,
    /// When it was added (seconds since the epoch).
    pub time: f64,
    pub spec: BanSpec,
    /// Nothing is tested against it any more (a newer identical ban replaced it, or it is the
    /// placeholder).
    pub completed: bool,
}

impl Ban {
    fn live(&self) -> bool {
        !self.completed
    }
}

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A ban matches: the object must go.
    Banned,
    /// No ban matched: the object has now been tested up to this sequence number.
    Clean(u64),
}

/// The bans as the shards see them: immutable, newest first, published by the control plane.
#[derive(Debug, Default)]
pub struct BanSnapshot {
    /// Newest first.
    pub bans: Vec<Arc<Ban>>,
    /// The newest ban's sequence number (0: none was ever added).
    pub newest: u64,
}

impl BanSnapshot {
    /// How many bans are newer than `checked`.
    fn newer(&self, checked: u64) -> usize {
        self.bans.partition_point(|b| b.seq > checked)
    }

    /// A lookup's check: `obj`, tested up to `checked`, against every newer ban, newest first
    /// (as Varnish's `BAN_CheckObject`). `tests` counts the conditions evaluated.
    pub fn check(&self, obj: &Object, checked: u64, req: ReqView<'_>, tests: &mut u64) -> Verdict {
        let n = self.newer(checked);
        for b in self.bans[..n].iter().filter(|b| b.live()) {
            if b.spec.matches(obj, Some(req), b.time, tests) {
                return Verdict::Banned;
            }
        }
        Verdict::Clean(self.newest.max(checked))
    }

    /// The background sweep's check (no request): the newer bans oldest first, up to the first
    /// one with a `req.*` test, which only a lookup can run. The checkpoint moves past the
    /// bans tested.
    pub fn check_without_request(&self, obj: &Object, checked: u64, tests: &mut u64) -> Verdict {
        let n = self.newer(checked);
        let mut upto = checked;
        for b in self.bans[..n].iter().rev() {
            if b.live() {
                if b.spec.has_req() {
                    break;
                }
                if b.spec.matches(obj, None, b.time, tests) {
                    return Verdict::Banned;
                }
            }
            upto = b.seq;
        }
        Verdict::Clean(upto)
    }
}

/// What adding a ban did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Added {
    pub seq: u64,
    /// Older identical bans marked completed.
    pub dups: u64,
}

/// The ban list (owned by the control plane; pure).
///
/// It starts with a completed placeholder (sequence 0), as varnishd's does, so every object
/// has a ban to refer to. New bans go on top with the next sequence number. An object's
/// checkpoint says which bans it has been tested against; [`BanList::retire`] drops the
/// oldest bans that no object refers to or still needs (every checkpoint is newer), never the
/// newest, so the list stays as long as the oldest untested object needs it.
#[derive(Debug)]
pub struct BanList {
    /// Oldest first.
    bans: VecDeque<Arc<Ban>>,
    next_seq: u64,
}

impl BanList {
    pub fn new(now: f64) -> BanList {
        let mut bans = VecDeque::new();
        bans.push_back(Arc::new(Ban {
            seq: 0,
            time: now,
            spec: BanSpec::default(),
            completed: true,
        }));
        BanList { bans, next_seq: 1 }
    }

    /// Adds `spec` on top. With `dedup` (Varnish's `ban_dups`), older identical bans are
    /// marked completed, so objects are not tested twice against the same conditions.
    pub fn add(&mut self, spec: BanSpec, now: f64, dedup: bool) -> Added {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut dups = 0;
        if dedup && !spec.time_relative() {
            for b in self.bans.iter_mut() {
                if b.live() && b.spec == spec {
                    *b = Arc::new(Ban {
                        seq: b.seq,
                        time: b.time,
                        spec: b.spec.clone(),
                        completed: true,
                    });
                    dups += 1;
                }
            }
        }
        self.bans.push_back(Arc::new(Ban {
            seq,
            time: now,
            spec,
            completed: false,
        }));
        Added { seq, dups }
    }

    /// Drops the oldest bans older than `floor` (the oldest checkpoint of any object, now or
    /// to come), keeping the newest. Returns how many went.
    pub fn retire(&mut self, floor: u64) -> u64 {
        let mut n = 0;
        while self.bans.len() > 1 && self.bans.front().is_some_and(|b| b.seq < floor) {
            self.bans.pop_front();
            n += 1;
        }
        n
    }

    pub fn newest(&self) -> u64 {
        self.bans.back().map_or(0, |b| b.seq)
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Ban>> {
        self.bans.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    pub fn snapshot(&self) -> BanSnapshot {
        BanSnapshot {
            bans: self.iter().cloned().collect(),
            newest: self.newest(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::ObjKind;
    use bytes::Bytes;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn obj(status: u16, headers: &[(&str, &str)], t_origin: f64, ttl: f64) -> Object {
        let mut h = Headers::with_capacity(headers.len());
        for (k, v) in headers {
            h.append(Bytes::from(k.to_string()), Bytes::from(v.to_string()));
        }
        Object {
            xid: 1,
            kind: ObjKind::Normal,
            status,
            reason: Bytes::from_static(b"OK"),
            headers: h,
            head: Bytes::new(),
            body: Bytes::new(),
            t_origin,
            ttl,
            grace: 10.0,
            keep: 0.0,
            vary: None,
        }
    }

    fn req_headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::with_capacity(pairs.len());
        for (k, v) in pairs {
            h.append(Bytes::from(k.to_string()), Bytes::from(v.to_string()));
        }
        h
    }

    /// Does `spec` (CLI form) match `o` for a request to `url` with `headers`?
    fn hit(spec: &str, o: &Object, url: &str, headers: &Headers) -> bool {
        let s = BanSpec::parse_cli(&args(spec)).expect(spec);
        let mut n = 0;
        s.matches(
            o,
            Some(ReqView {
                url: url.as_bytes(),
                headers,
            }),
            1000.0,
            &mut n,
        )
    }

    // Goal: every bad ban gets varnishd 7.1.1's text (checked against a running varnishd),
    // and what varnishd accepts by accident (a field name with trailing junk) is refused.
    #[test]
    fn parse_errors_are_varnish_texts() {
        let err = |s: &str| BanSpec::parse_cli(&args(s)).expect_err(s);
        assert_eq!(err("req.url ~ a b"), "Wrong number of arguments");
        assert_eq!(err("req.url ~ a b c d"), "Wrong number of arguments");
        assert_eq!(
            err("req.url ~ a || req.url ~ b"),
            "Found \"||\" expected &&"
        );
        assert_eq!(
            err("req.foo ~ a"),
            "Unknown or unsupported field \"req.foo\""
        );
        assert_eq!(err("foo == bar"), "Unknown or unsupported field \"foo\"");
        assert_eq!(
            err("req.urlx ~ a"),
            "Unknown or unsupported field \"req.urlx\""
        );
        assert_eq!(
            err("req.http. == x"),
            "Unknown or unsupported field \"req.http.\""
        );
        assert_eq!(
            err("req.url > a"),
            "expected conditional (==, !=, ~ or !~) got \">\""
        );
        assert_eq!(
            err("obj.ttl ~ 1"),
            "expected conditional (==, !=, >, >=, < or <=) got \"~\""
        );
        assert_eq!(
            err("obj.ttl > abc"),
            "expected duration <n.nn>[ms|s|m|h|d|w|y] got \"abc\""
        );
        assert_eq!(
            err("obj.grace == 1.5"),
            "expected duration <n.nn>[ms|s|m|h|d|w|y] got \"1.5\""
        );
        assert!(err("req.url ~ (").starts_with("Regex compile error: "));
        assert_eq!(
            err("obj.status > abc"),
            "expected a status code (0 to 999) got \"abc\""
        );
        assert_eq!(
            err("obj.status === 1"),
            "expected conditional (==, !=, ~, !~, >, >=, < or <=) got \"===\""
        );
        // The second condition is checked too.
        assert_eq!(
            err("req.url ~ a && obj.nope == 1"),
            "Unknown or unsupported field \"obj.nope\""
        );
    }

    #[test]
    fn vcl_strings_split_like_varnish() {
        let err = |s: &str| BanSpec::parse_vcl(s).expect_err(s);
        assert_eq!(err(""), "No ban conditions found.");
        assert_eq!(err("  "), "No ban conditions found.");
        assert_eq!(err("req.url"), "Expected comparison operator.");
        assert_eq!(err("req.url ~"), "Expected second operand.");
        assert_eq!(
            err("req.url ~ a || x"),
            "Expected && between conditions, found \"||\""
        );
        assert_eq!(err("req.url ~ a &&"), "No ban conditions found.");
        let s = BanSpec::parse_vcl("req.http.host == example.com\t&&  req.url ~ ^/a").expect("ok");
        assert_eq!(
            s.render(false),
            "req.http.host == example.com && req.url ~ ^/a"
        );
        // Quotes are not special in VCL's form.
        let s = BanSpec::parse_vcl("obj.http.x == \"a\"").expect("ok");
        assert_eq!(s.render(false), "obj.http.x == \"a\"");
        assert_eq!(s.render(true), "obj.http.x == \\\"a\\\"");
    }

    // Goal: each field and operator evaluates as Varnish's ban_evaluate does, including the
    // missing-header rule (only != holds) and the conjunction of several conditions.
    #[test]
    fn evaluation() {
        let o = obj(
            200,
            &[("X-Tag", "news sports"), ("Content-Type", "text/html")],
            0.0,
            0.0,
        );
        let h = req_headers(&[("Host", "example.com")]);
        let yes = |s: &str| assert!(hit(s, &o, "/news/1", &h), "{s} should match");
        let no = |s: &str| assert!(!hit(s, &o, "/news/1", &h), "{s} should not match");
        yes("req.url ~ ^/news/");
        yes("req.url == /news/1");
        no("req.url == /news");
        yes("req.url != /news");
        yes("req.url !~ ^/sport");
        no("req.url !~ ^/news");
        yes("req.http.host == example.com");
        yes("req.http.HOST ~ ^example\\.");
        no("req.http.host == other.com");
        // A missing header: only != holds.
        yes("req.http.cookie != a");
        no("req.http.cookie == a");
        no("req.http.cookie ~ .");
        no("req.http.cookie !~ .");
        yes("obj.http.x-tag ~ sports");
        no("obj.http.x-tag ~ ^sports");
        yes("obj.http.content-type == text/html");
        yes("obj.status == 200");
        yes("obj.status ~ ^2");
        no("obj.status != 200");
        yes("obj.status < 300");
        yes("obj.status >= 200");
        no("obj.status > 200");
        yes("obj.status <= 200");
        yes("req.url ~ ^/news && obj.status == 200 && req.http.host ~ example");
        no("req.url ~ ^/news && obj.status == 404");
    }

    // Goal: obj.ttl and obj.age are fixed at the ban's time (1000 s here), grace and keep are
    // absolute, as in Varnish.
    #[test]
    fn duration_fields() {
        // Made at 900, ttl 300: expires at 1200, so 200 s left at the ban's time; age 100 s.
        let o = obj(200, &[], 900.0, 300.0);
        let h = req_headers(&[]);
        let yes = |s: &str| assert!(hit(s, &o, "/", &h), "{s} should match");
        let no = |s: &str| assert!(!hit(s, &o, "/", &h), "{s} should not match");
        yes("obj.ttl > 199s");
        no("obj.ttl > 200s");
        yes("obj.ttl <= 200s");
        yes("obj.age >= 100s");
        no("obj.age > 100s");
        yes("obj.age < 2m");
        yes("obj.grace == 10s");
        yes("obj.keep == 0s");
        no("obj.keep > 0s");
    }

    #[test]
    fn durations_render_like_varnish() {
        assert_eq!(render_duration(0.0), "0s");
        assert_eq!(render_duration(0.25), "250ms");
        assert_eq!(render_duration(1.5), "1.500s");
        assert_eq!(render_duration(90.0), "90s");
        assert_eq!(render_duration(3600.0), "1h");
        assert_eq!(render_duration(7200.0), "2h");
        assert_eq!(render_duration(86400.0 * 14.0), "2w");
        assert_eq!(parse_duration("90s"), Some(90.0));
        assert_eq!(parse_duration("1.5 h"), Some(5400.0));
        assert_eq!(parse_duration("100ms"), Some(0.1));
        assert_eq!(parse_duration("1.5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1x"), None);
        let s = BanSpec::parse_cli(&args("obj.ttl > 60m && obj.age < 90s")).expect("ok");
        assert_eq!(s.render(false), "obj.ttl > 1h && obj.age < 90s");
    }

    // Goal: the list numbers bans, dedups identical ones (not time-relative ones), and retires
    // only bans older than every checkpoint, never the newest.
    #[test]
    fn list_add_dedup_retire() {
        let spec = |s: &str| BanSpec::parse_cli(&args(s)).expect(s);
        let mut l = BanList::new(1.0);
        assert_eq!((l.len(), l.newest()), (1, 0));
        assert!(l.iter().next().is_some_and(|b| b.completed));
        assert_eq!(
            l.add(spec("req.url ~ a"), 2.0, true),
            Added { seq: 1, dups: 0 }
        );
        assert_eq!(
            l.add(spec("req.url ~ b"), 3.0, true),
            Added { seq: 2, dups: 0 }
        );
        assert_eq!(
            l.add(spec("req.url ~ a"), 4.0, true),
            Added { seq: 3, dups: 1 }
        );
        assert_eq!(
            l.add(spec("obj.ttl > 1h"), 5.0, true),
            Added { seq: 4, dups: 0 }
        );
        assert_eq!(
            l.add(spec("obj.ttl > 1h"), 6.0, true),
            Added { seq: 5, dups: 0 }
        );
        let completed: Vec<(u64, bool)> = l.iter().map(|b| (b.seq, b.completed)).collect();
        assert_eq!(
            completed,
            vec![
                (5, false),
                (4, false),
                (3, false),
                (2, false),
                (1, true),
                (0, true)
            ]
        );
        assert_eq!(l.retire(0), 0);
        assert_eq!(l.retire(2), 2);
        assert_eq!(l.iter().last().map(|b| b.seq), Some(2));
        assert_eq!(l.retire(u64::MAX), 3);
        assert_eq!((l.len(), l.newest()), (1, 5));
        let snap = l.snapshot();
        assert_eq!((snap.newest, snap.bans.len()), (5, 1));
    }

    // Goal: a lookup's check tests only bans newer than the checkpoint and skips completed
    // ones; the sweep's check stops at the first req.* ban and moves the checkpoint to it.
    #[test]
    fn snapshot_checks() {
        let spec = |s: &str| BanSpec::parse_cli(&args(s)).expect(s);
        let mut l = BanList::new(0.0);
        l.add(spec("obj.status == 404"), 1.0, true); // 1
        l.add(spec("obj.http.x ~ a"), 2.0, true); // 2
        l.add(spec("req.url ~ ^/r"), 3.0, true); // 3
        l.add(spec("obj.http.x ~ b"), 4.0, true); // 4
        let snap = l.snapshot();
        let h = req_headers(&[]);
        let r = |url: &'static str| ReqView {
            url: url.as_bytes(),
            headers: &h,
        };
        let plain = obj(200, &[("X", "zzz")], 0.0, 100.0);
        let mut n = 0;
        assert_eq!(snap.check(&plain, 0, r("/"), &mut n), Verdict::Clean(4));
        assert_eq!(n, 4);
        assert_eq!(snap.check(&plain, 0, r("/r1"), &mut n), Verdict::Banned);
        // Checked up to 3: only ban 4 is tested.
        let b = obj(200, &[("X", "b")], 0.0, 100.0);
        let mut n = 0;
        assert_eq!(snap.check(&b, 3, r("/r1"), &mut n), Verdict::Banned);
        assert_eq!(n, 1);
        assert_eq!(snap.check(&b, 4, r("/r1"), &mut n), Verdict::Clean(4));
        // The sweep: bans 1 and 2, then stops before the req.* ban 3.
        let mut n = 0;
        assert_eq!(
            snap.check_without_request(&plain, 0, &mut n),
            Verdict::Clean(2)
        );
        let a = obj(200, &[("X", "a")], 0.0, 100.0);
        assert_eq!(snap.check_without_request(&a, 0, &mut n), Verdict::Banned);
        assert_eq!(snap.check_without_request(&b, 3, &mut n), Verdict::Banned);
        assert_eq!(
            snap.check_without_request(&plain, 3, &mut n),
            Verdict::Clean(4)
        );
        // A completed ban is skipped but passed.
        l.add(spec("obj.http.x ~ a"), 5.0, true); // 5; 2 completed
        let snap = l.snapshot();
        let mut n = 0;
        assert_eq!(snap.check_without_request(&a, 1, &mut n), Verdict::Clean(2));
        assert_eq!(n, 0);
    }
}
