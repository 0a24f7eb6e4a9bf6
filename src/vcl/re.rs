//! VCL regular expressions: the `regex` crate's byte regex, plus a matcher without it for the
//! shapes routing VCLs use most, decided once at load from the pattern's syntax tree.
//!
//! Why: a VCL runs a handful of regexes per request on short subjects (a Host header, a URL);
//! there, the `regex` crate's fixed cost per call (strategy dispatch, its cache pool, the
//! search set-up) is most of the time. The shapes below need no automaton:
//!
//! * `^(a|b)` and the like, a finite set of fixed-length alternatives anchored at the start
//!   (`Fast::Prefix`): a compare at offset 0;
//! * a finite set anchored at the end, optionally also at the start, optionally followed by a
//!   run of one byte class before the end (`:[0-9]+$`, `[?&]$`, `^(api|rest)\.example\.com$`)
//!   (`Fast::Tail`): a backward scan of the run, then compares;
//! * an unanchored literal (`gzip`) (`Fast::Literal`): `memchr::memmem`;
//! * one byte of a class, unanchored (`[[:upper:]]`) (`Fast::Byte`): a bit-set scan.
//!
//! Everything else goes to the `regex` crate, after a quick rejection when every match must
//! start with one of at most three bytes and the subject holds none of them. Every form first
//! turns away a subject shorter than the shortest match (as the `regex` crate does).
//!
//! `cargo bench --bench vcl_path` prints both matchers' times on the load test's patterns
//! (when written: `:[0-9]+$` on a Host with a port 9 ns against 27, `[[:upper:]]` 8
//! against 23, the anchored sets 1 to 10 ns against 2.5 to 27).
//!
//! Exact semantics are kept: the fast forms are derived from the same syntax tree the `regex`
//! crate compiles (parsed with the same settings as `regex::bytes::RegexBuilder`), so
//! `(?i)`, `(?m)`, Unicode classes and the like are either translated exactly (a class whose
//! members are all ASCII, or a byte class in `(?-u)`) or not fast-pathed at all. A position is
//! a set of bytes, an alternative a fixed sequence of positions, and alternatives keep the
//! order of preference of leftmost-first matching (the order a backtracking engine tries
//! them), so the match found is the one the `regex` crate finds. Unit tests compare both on
//! many patterns and subjects.

use std::fmt;

use memchr::memmem;
use regex_syntax::hir::{self, Hir, HirKind, Look};

/// At most this many alternatives in a fast form (cross products of alternations grow).
const MAX_ALTS: usize = 32;
/// At most this many positions in one alternative.
const MAX_LEN: usize = 256;
/// At most this many positions in all the alternatives of a fast form that are not plain
/// bytes (32 bytes each).
const MAX_SETS: usize = 1024;

/// The `regex` crate's complaint as the VCL compiler (and a ban's regex) shows it: the last
/// `error:` line of a syntax error, else the error itself.
pub fn error_message(e: regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find(|l| l.starts_with("error: "))
            .map(|l| l.trim_start_matches("error: ").to_string())
            .unwrap_or(s),
        other => other.to_string(),
    }
}

/// A compiled VCL regex.
pub struct Regex {
    re: regex::bytes::Regex,
    /// No match is shorter (a subject shorter than this cannot match).
    min_len: usize,
    fast: Fast,
}

/// A set of bytes (bit `b` set: byte `b` is a member).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);

    fn single(b: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        s.insert(b);
        s
    }

    fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1u64 << (b & 63);
    }

    #[inline]
    fn has(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] >> (b & 63) & 1 != 0
    }

    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The position of the first member in `h`.
    #[inline(never)]
    fn find(&self, h: &[u8]) -> Option<usize> {
        h.iter().position(|b| self.has(*b))
    }

    fn members(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|b| self.has(*b))
    }
}

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m: Vec<u8> = self.members().collect();
        write!(f, "[{}]", m.escape_ascii())
    }
}

/// One alternative: a fixed sequence of byte sets, stored as bytes when each set has one
/// member.
#[derive(Clone, Debug)]
enum Alt {
    Lit(Box<[u8]>),
    Sets(Box<[ByteSet]>),
}

impl Alt {
    fn new(sets: Vec<ByteSet>) -> Alt {
        let lit = sets
            .iter()
            .map(|s| (s.len() == 1).then(|| s.members().next().unwrap_or(0)))
            .collect::<Option<Vec<u8>>>();
        match lit {
            Some(l) => Alt::Lit(l.into_boxed_slice()),
            None => Alt::Sets(sets.into_boxed_slice()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Alt::Lit(l) => l.len(),
            Alt::Sets(s) => s.len(),
        }
    }

    /// Whether `h[at..]` starts with this alternative.
    #[inline]
    fn matches_at(&self, h: &[u8], at: usize) -> bool {
        let Some(rest) = h.get(at..at + self.len()) else {
            return false;
        };
        match self {
            Alt::Lit(l) => rest == &l[..],
            Alt::Sets(sets) => sets.iter().zip(rest).all(|(s, b)| s.has(*b)),
        }
    }
}

#[derive(Clone, Debug)]
enum Fast {
    /// `^(alts)`: a match at 0, the first alternative (in preference order) there.
    Prefix(Box<[Alt]>),
    /// `[^](head)C{min,max}$`: a match from the leftmost start where an alternative of `head`
    /// is followed by `min..=max` bytes of `run` up to the end (a plain `(alts)$` has an empty
    /// run and `max` 0). Anchored at `start` when `start`.
    Tail {
        start: bool,
        head: Box<[Alt]>,
        /// The length of the longest alternative of `head`.
        longest: usize,
        run: ByteSet,
        min: usize,
        max: usize,
    },
    /// An unanchored, non-empty literal.
    Literal(Box<memmem::Finder<'static>>),
    /// An unanchored single byte out of a set.
    Byte(ByteSet),
    /// The `regex` crate, after a check that the subject holds one of the bytes every match
    /// starts with (when there are at most three).
    Regex(Option<Reject>),
}

/// The bytes every match starts with (one to three).
#[derive(Clone, Copy, Debug)]
struct Reject {
    n: u8,
    b: [u8; 3],
}

impl Reject {
    #[inline]
    fn may_match(&self, h: &[u8]) -> bool {
        // A short subject is scanned directly (memchr's set-up costs more).
        if h.len() < 16 {
            let b = &self.b[..self.n as usize];
            return h.iter().any(|c| b.contains(c));
        }
        match self.n {
            1 => memchr::memchr(self.b[0], h).is_some(),
            2 => memchr::memchr2(self.b[0], self.b[1], h).is_some(),
            _ => memchr::memchr3(self.b[0], self.b[1], self.b[2], h).is_some(),
        }
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&self.re.as_str()).finish()
    }
}

impl Regex {
    /// Compiles `pattern` as `regex::bytes::RegexBuilder` with `size_limit` does, and derives
    /// the fast form.
    pub fn new(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
        let re = regex::bytes::RegexBuilder::new(pattern)
            .size_limit(size_limit)
            .build()?;
        // The settings of regex::bytes (`utf8(false)`), everything else at its default.
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
            .ok();
        let min_len = hir
            .as_ref()
            .and_then(|h| h.properties().minimum_len())
            .unwrap_or(0);
        let fast = hir.as_ref().map_or(Fast::Regex(None), fast_form);
        Ok(Regex { re, min_len, fast })
    }

    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }

    /// The `regex` crate's regex (for capture groups).
    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.re
    }

    /// Whether the matcher needs the `regex` crate (no fast form).
    pub fn is_general(&self) -> bool {
        matches!(self.fast, Fast::Regex(_))
    }

    #[inline]
    pub fn is_match(&self, h: &[u8]) -> bool {
        if h.len() < self.min_len {
            return false;
        }
        match &self.fast {
            Fast::Prefix(alts) => prefix(alts, h).is_some(),
            Fast::Tail { .. } => self.tail(h).is_some(),
            Fast::Literal(f) => f.find(h).is_some(),
            Fast::Byte(set) => set.find(h).is_some(),
            Fast::Regex(reject) => self.general(*reject, h),
        }
    }

    #[inline(never)]
    fn general(&self, reject: Option<Reject>, h: &[u8]) -> bool {
        if let Some(r) = reject {
            if !r.may_match(h) {
                return false;
            }
        }
        self.re.is_match(h)
    }

    /// Calls `f(start, end)` for each match, in order, as `regex::bytes::Regex::find_iter`
    /// reports them; the first only unless `all`.
    pub fn each_match(&self, h: &[u8], all: bool, mut f: impl FnMut(usize, usize)) {
        if h.len() < self.min_len {
            return;
        }
        match &self.fast {
            Fast::Prefix(alts) => {
                if let Some(n) = prefix(alts, h) {
                    f(0, n);
                }
            }
            // Both end at the end of the subject: a second match could only be empty there,
            // which find_iter does not report right after a match.
            Fast::Tail { .. } => {
                if let Some(s) = self.tail(h) {
                    f(s, h.len());
                }
            }
            Fast::Literal(finder) => {
                let n = finder.needle().len();
                let mut at = 0;
                while let Some(i) = finder.find(&h[at..]) {
                    f(at + i, at + i + n);
                    at += i + n;
                    if !all {
                        break;
                    }
                }
            }
            Fast::Byte(set) => {
                let mut at = 0;
                while let Some(i) = set.find(&h[at..]) {
                    f(at + i, at + i + 1);
                    at += i + 1;
                    if !all {
                        break;
                    }
                }
            }
            Fast::Regex(reject) => {
                if let Some(r) = reject {
                    if !r.may_match(h) {
                        return;
                    }
                }
                for m in self.re.find_iter(h) {
                    f(m.start(), m.end());
                    if !all {
                        break;
                    }
                }
            }
        }
    }

    /// [`Fast::Tail`]: the start of the match (it ends at `h.len()`).
    #[inline(never)]
    fn tail(&self, h: &[u8]) -> Option<usize> {
        let Fast::Tail {
            start,
            head,
            longest,
            run,
            min,
            max,
        } = &self.fast
        else {
            return None;
        };
        let n = h.len();
        // The run of `run` bytes before the end: h[r..] (at most `max` of it can be used).
        let stop = n.saturating_sub(*max);
        let mut r = n;
        while r > stop && run.has(h[r - 1]) {
            r -= 1;
        }
        // An alternative starting at s ends at e = s + len with r <= e <= n - min.
        let last = n.checked_sub(*min)?;
        if r > last {
            return None;
        }
        let fits = |s: usize| {
            head.iter().any(|a| {
                let e = s + a.len();
                r <= e && e <= last && a.matches_at(h, s)
            })
        };
        if *start {
            return fits(0).then_some(0);
        }
        (r.saturating_sub(*longest)..=last).find(|&s| fits(s))
    }
}

/// [`Fast::Prefix`]: the length of the first alternative `h` starts with.
#[inline(never)]
fn prefix(alts: &[Alt], h: &[u8]) -> Option<usize> {
    alts.iter().find(|a| a.matches_at(h, 0)).map(Alt::len)
}

/// The fast form of a pattern, or `Fast::Regex`.
fn fast_form(hir: &Hir) -> Fast {
    let items: &[Hir] = match hir.kind() {
        HirKind::Concat(items) => items,
        _ => std::slice::from_ref(hir),
    };
    let start = matches!(
        items.first().map(Hir::kind),
        Some(HirKind::Look(Look::Start))
    );
    let end = items.len() > usize::from(start)
        && matches!(items.last().map(Hir::kind), Some(HirKind::Look(Look::End)));
    let mid = &items[usize::from(start)..items.len() - usize::from(end)];
    if end {
        // A trailing run of one class (`+`, `*`, `{m,}`, `{m,n}`), else none.
        let (body, run, min, max) = match mid.last().map(Hir::kind) {
            Some(HirKind::Repetition(rep)) => match byte_set(&rep.sub) {
                Some(set) => (
                    &mid[..mid.len() - 1],
                    set,
                    rep.min as usize,
                    rep.max.map_or(usize::MAX, |m| m as usize),
                ),
                None => (mid, ByteSet::EMPTY, 0, 0),
            },
            _ => (mid, ByteSet::EMPTY, 0, 0),
        };
        if let Some(head) = stored_alts(body) {
            return Fast::Tail {
                start,
                longest: head.iter().map(Alt::len).max().unwrap_or(0),
                head,
                run,
                min,
                max,
            };
        }
    } else if start {
        if let Some(alts) = stored_alts(mid) {
            return Fast::Prefix(alts);
        }
    } else if let Some(alts) = stored_alts(mid) {
        match &alts[..] {
            [Alt::Lit(l)] if !l.is_empty() => {
                return Fast::Literal(Box::new(memmem::Finder::new(&l[..]).into_owned()))
            }
            [Alt::Sets(sets)] if sets.len() == 1 => return Fast::Byte(sets[0]),
            _ => {}
        }
    }
    Fast::Regex(reject_of(hir))
}

/// The alternatives of a concatenation as a fast form keeps them (within [`MAX_SETS`]).
fn stored_alts(items: &[Hir]) -> Option<Box<[Alt]>> {
    let alts: Box<[Alt]> = alts_of_seq(items)?.into_iter().map(Alt::new).collect();
    let sets: usize = alts
        .iter()
        .map(|a| match a {
            Alt::Sets(s) => s.len(),
            Alt::Lit(_) => 0,
        })
        .sum();
    (sets <= MAX_SETS).then_some(alts)
}

/// The bytes every match must start with, when there are one to three.
fn reject_of(hir: &Hir) -> Option<Reject> {
    let seq = hir::literal::Extractor::new().extract(hir);
    let lits = seq.literals()?;
    let mut b = [0u8; 3];
    let mut n = 0usize;
    for l in lits {
        let first = *l.as_bytes().first()?;
        if !b[..n].contains(&first) {
            if n == 3 {
                return None;
            }
            b[n] = first;
            n += 1;
        }
    }
    (n > 0).then_some(Reject { n: n as u8, b })
}

/// The members of a class as bytes, when the class matches exactly one byte from a set: an
/// ASCII-only Unicode class or a byte class.
fn byte_set(h: &Hir) -> Option<ByteSet> {
    let mut set = ByteSet::EMPTY;
    match h.kind() {
        HirKind::Class(hir::Class::Unicode(c)) => {
            for r in c.ranges() {
                if r.end() > '\x7f' {
                    return None;
                }
                for b in r.start() as u8..=r.end() as u8 {
                    set.insert(b);
                }
            }
        }
        HirKind::Class(hir::Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set.insert(b);
                }
            }
        }
        HirKind::Literal(hir::Literal(l)) if l.len() == 1 => set.insert(l[0]),
        _ => return None,
    }
    Some(set)
}

/// The alternatives of a concatenation, in preference order.
fn alts_of_seq(items: &[Hir]) -> Option<Vec<Vec<ByteSet>>> {
    let mut acc: Vec<Vec<ByteSet>> = vec![Vec::new()];
    for h in items {
        acc = cross(acc, alts(h)?)?;
    }
    Some(acc)
}

/// Every `a` followed by every `b`, `a` varying slowest (a backtracking engine's order).
fn cross(a: Vec<Vec<ByteSet>>, b: Vec<Vec<ByteSet>>) -> Option<Vec<Vec<ByteSet>>> {
    if a.len() * b.len() > MAX_ALTS {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in &a {
        for y in &b {
            if x.len() + y.len() > MAX_LEN {
                return None;
            }
            let mut v = x.clone();
            v.extend_from_slice(y);
            out.push(v);
        }
    }
    Some(out)
}

/// The fixed-length alternatives `h` matches, in preference order; `None` when `h` is not a
/// small finite set of fixed sequences of byte sets.
fn alts(h: &Hir) -> Option<Vec<Vec<ByteSet>>> {
    match h.kind() {
        HirKind::Empty => Some(vec![Vec::new()]),
        HirKind::Literal(hir::Literal(l)) => {
            (l.len() <= MAX_LEN).then(|| vec![l.iter().map(|b| ByteSet::single(*b)).collect()])
        }
        HirKind::Class(_) => byte_set(h).map(|s| vec![vec![s]]),
        HirKind::Capture(c) => alts(&c.sub),
        HirKind::Concat(items) => alts_of_seq(items),
        HirKind::Alternation(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(alts(i)?);
                if out.len() > MAX_ALTS {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Repetition(r) => {
            let sub = alts(&r.sub)?;
            match (r.min, r.max) {
                (n, Some(m)) if n == m && n <= 16 => {
                    let mut acc = vec![Vec::new()];
                    for _ in 0..n {
                        acc = cross(acc, sub.clone())?;
                    }
                    Some(acc)
                }
                // `?`: greedy tries the sub first, lazy the empty string first.
                (0, Some(1)) => {
                    let mut out = Vec::with_capacity(sub.len() + 1);
                    if r.greedy {
                        out.extend(sub);
                        out.push(Vec::new());
                    } else {
                        out.push(Vec::new());
                        out.extend(sub);
                    }
                    (out.len() <= MAX_ALTS).then_some(out)
                }
                _ => None,
            }
        }
        HirKind::Look(_) => None,
    }
}

#[cfg(test)]
mod tests;
