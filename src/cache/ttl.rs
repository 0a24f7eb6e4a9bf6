//! How long a backend response may be cached: Varnish 7.1's `RFC2616_Ttl` and the cacheability
//! rules of its builtin `vcl_backend_response`.
//!
//! Why this shape: compatibility means reproducing Varnish's numbers, quirks included, so this is a
//! line-by-line port of `bin/varnishd/cache/cache_rfc2616.c` (with `rfc2616_time`,
//! `http_GetHdrField` and `VTIM_parse` semantics), not a fresh reading of RFC 9111. Where Varnish
//! and the RFC disagree Varnish wins: `max-age=abc` and `max-age="10"` give a TTL of 0 (b00066),
//! an unparseable `Expires` counts as absent (default TTL), and only a `Vary` that is exactly `*`
//! is uncacheable. Everything is pure (the time is an argument) and self-contained (dates are
//! parsed here, not by the HTTP module), so every rule is a unit test with a fixed clock. The
//! result is a [`Lifetime`] in Varnish's terms: `ttl` is relative to `t_origin`, which the `Age`
//! header moves into the past, so the *remaining* TTL is `t_origin + ttl - now`.

use crate::http::headers::trim;
use crate::http::Headers;

/// TTL is measured from `t_origin`; the builtin rules mark uncacheable responses hit-for-miss for
/// this long from now (Varnish 7.1 hard-codes `set beresp.ttl = 120s`).
pub const UNCACHEABLE_TTL: f64 = 120.0;

/// The runtime parameters `RFC2616_Ttl` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TtlParams {
    /// `default_ttl`: used when the response gives no freshness information (Varnish: 120 s).
    pub default_ttl: f64,
    /// `default_grace` (Varnish: 10 s).
    pub default_grace: f64,
    /// `default_keep` (Varnish: 0 s).
    pub default_keep: f64,
    /// `clock_skew`: how far the backend's `Date` may be from our clock before `Expires` is
    /// read relative to `Date` instead of to now (Varnish: 10 s).
    pub clock_skew: f64,
}

impl Default for TtlParams {
    fn default() -> Self {
        TtlParams {
            default_ttl: 120.0,
            default_grace: 10.0,
            default_keep: 0.0,
            clock_skew: 10.0,
        }
    }
}

/// An object's timing, as Varnish keeps it on the objcore. Times are seconds since the epoch;
/// `ttl`, `grace` and `keep` are durations, `ttl` counted from `t_origin`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lifetime {
    pub t_origin: f64,
    pub ttl: f64,
    pub grace: f64,
    pub keep: f64,
}

impl Lifetime {
    /// `beresp.ttl` / `obj.ttl` as VCL reads it: a non-positive stored TTL counts as 0, then the
    /// time since `t_origin` is subtracted, so it can be negative (b00043: `max-age=30` with
    /// `Age: 40` reads −10).
    pub fn remaining_ttl(&self, now: f64) -> f64 {
        let d = if self.ttl <= 0.0 { 0.0 } else { self.ttl };
        d - (now - self.t_origin)
    }

    /// `set beresp.ttl = remaining` as VCL does it: stored relative to `t_origin`, floored at 0.
    /// The builtin hit-for-miss rule is `set_remaining_ttl(now, UNCACHEABLE_TTL)`.
    pub fn set_remaining_ttl(&mut self, now: f64, remaining: f64) {
        let a = remaining + (now - self.t_origin);
        self.ttl = if a < 0.0 { 0.0 } else { a };
    }
}

/// Why the builtin `vcl_backend_response` makes a response hit-for-miss, in the order it tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncacheable {
    /// `beresp.ttl <= 0s` (remaining TTL, after `Age`).
    TtlNotPositive,
    /// `beresp.http.Set-Cookie` is present.
    SetCookie,
    /// `beresp.http.Surrogate-Control ~ "(?i)no-store"`.
    SurrogateNoStore,
    /// No `Surrogate-Control` and `Cache-Control ~ "(?i:no-cache|no-store|private)"`.
    CacheControlNoCache,
    /// `beresp.http.Vary == "*"`.
    VaryStar,
}

/// The statuses `RFC2616_Ttl` gives a TTL by default: 200 203 204 300 301 304 404 410 414.
/// (302 and 307 get one only from `Cache-Control` or `Expires`; see [`rfc2616_ttl`].)
pub fn cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 304 | 404 | 410 | 414)
}

/// Varnish's `RFC2616_Ttl` for a response that is not a pass: derives `t_origin`, `ttl`,
/// `grace` and `keep` from the status and headers at fetch time `now`.
///
/// A pass fetch (Varnish's `OC_F_PRIVATE`) stops after the `Age` step with ttl −1, grace 0,
/// keep 0; callers handling a pass keep this `t_origin` and set those three themselves.
/// Varnish adds a `Date: now` header to responses without one *before* this runs; that changes
/// nothing here (an absent `Date` and one within `clock_skew` of now take the same branch), but
/// the caller must still add it to the stored response.
pub fn rfc2616_ttl(status: u16, headers: &Headers, now: f64, p: &TtlParams) -> Lifetime {
    let mut lt = Lifetime {
        t_origin: now,
        ttl: p.default_ttl,
        grace: p.default_grace,
        keep: p.default_keep,
    };

    if let Some(age) = headers.get("age") {
        lt.t_origin -= f64::from(rfc2616_time(trim(age)));
    }

    // VTIM_parse returns 0 for anything it cannot parse, and 0 means "absent" below.
    let h_expires = headers
        .get("expires")
        .map_or(0.0, |v| parse_http_date(v).unwrap_or(0.0));
    let h_date = headers
        .get("date")
        .map_or(0.0, |v| parse_http_date(v).unwrap_or(0.0));

    if status == 302 || status == 307 || cacheable_status(status) {
        if status == 302 || status == 307 {
            // Only an explicit Cache-Control or Expires makes a temporary redirect cacheable.
            lt.ttl = -1.0;
        }
        // `s-maxage` is looked up first and, if present at all, `max-age` is not consulted
        // (Varnish's `||` short-circuits even when s-maxage has no value).
        let field = cc_field(headers, "s-maxage").or_else(|| cc_field(headers, "max-age"));
        if let Some(Some(v)) = field {
            lt.ttl = f64::from(rfc2616_time(v));
        } else if h_expires == 0.0 {
            // No usable Expires: keep the default (or −1 for 302/307).
        } else if h_expires < h_date {
            // The backend says it is already expired.
            lt.ttl = 0.0;
        } else if h_date == 0.0 || (h_date - now).abs() < p.clock_skew {
            // No Date, or a Date close to our clock: trust Expires against our own clock.
            lt.ttl = if h_expires < now {
                0.0
            } else {
                h_expires - now
            };
        } else {
            // Clocks disagree: the distance between the backend's two headers still holds.
            lt.ttl = (h_expires - h_date).trunc();
        }
    } else {
        lt.ttl = -1.0;
    }

    // RFC 5861 stale-while-revalidate seeds grace.
    if lt.ttl >= 0.0 {
        if let Some(Some(v)) = cc_field(headers, "stale-while-revalidate") {
            lt.grace = f64::from(rfc2616_time(v));
        }
    }
    lt
}

/// The builtin `vcl_backend_response` (Varnish 7.1) verdict for a cacheable fetch: `Some(reason)`
/// means the response becomes hit-for-miss (`beresp.uncacheable = true`, remaining TTL
/// [`UNCACHEABLE_TTL`], grace and keep unchanged); `None` means it is stored as is.
/// (The builtin skips all of this when `bereq.uncacheable`, i.e. for pass fetches.)
pub fn builtin_uncacheable(headers: &Headers, lt: &Lifetime, now: f64) -> Option<Uncacheable> {
    if lt.remaining_ttl(now) <= 0.0 {
        return Some(Uncacheable::TtlNotPositive);
    }
    if headers.contains("set-cookie") {
        return Some(Uncacheable::SetCookie);
    }
    // VCL reads the first Surrogate-Control field; Cache-Control fields were joined into one
    // before VCL ran, which for these comma-free patterns is the same as testing each field.
    match headers.get("surrogate-control") {
        Some(sc) => {
            if contains_ci(sc, b"no-store") {
                return Some(Uncacheable::SurrogateNoStore);
            }
        }
        None => {
            let hit = headers.get_all("cache-control").any(|v| {
                contains_ci(v, b"no-cache")
                    || contains_ci(v, b"no-store")
                    || contains_ci(v, b"private")
            });
            if hit {
                return Some(Uncacheable::CacheControlNoCache);
            }
        }
    }
    // Vary fields are joined with ", " before VCL runs and compared with `== "*"`, so only a
    // single `Vary: *` matches (a `*` inside a list is ignored by `VarySpec` just as Varnish
    // ignores it: no request carries a header called `*`).
    let mut vary = headers.get_all("vary");
    if let (Some(v), None) = (vary.next(), vary.next()) {
        if trim(v) == b"*" {
            return Some(Uncacheable::VaryStar);
        }
    }
    None
}

/// ASCII case-insensitive substring test (a VCL `~ "(?i)…"` regex on a literal).
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Varnish's `http_GetHdrField` on the (joined) Cache-Control fields: `None` when no element is
/// the token `name`; `Some(None)` when the first such element has no `=value`; otherwise the
/// value with leading white space removed (quotes are *not* stripped, as in Varnish).
fn cc_field<'a>(headers: &'a Headers, name: &str) -> Option<Option<&'a [u8]>> {
    for v in headers.get_all("cache-control") {
        for elem in v.split(|&b| b == b',') {
            let elem = trim(elem);
            if elem.is_empty() {
                continue;
            }
            if let Some(rest) = match_token(elem, name.as_bytes()) {
                return Some(field_value(rest));
            }
        }
    }
    None
}

/// `http_istoken`: a quoted token matches case-sensitively, a bare one case-insensitively and
/// must not be followed by another token character. Returns what follows the token.
fn match_token<'a>(elem: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    let fl = token.len();
    if elem.len() >= fl + 2
        && elem.first() == Some(&b'"')
        && elem.get(1..fl + 1) == Some(token)
        && elem.get(fl + 1) == Some(&b'"')
    {
        return elem.get(fl + 2..);
    }
    match (elem.get(..fl), elem.get(fl)) {
        (Some(head), next) if head.eq_ignore_ascii_case(token) => match next {
            None => Some(&[]),
            Some(&c) if !is_tchar(c) => elem.get(fl..),
            Some(_) => None,
        },
        _ => None,
    }
}

/// What `http_GetHdrField` makes of the text after a matched token.
fn field_value(rest: &[u8]) -> Option<&[u8]> {
    let rest = skip_while(rest, |c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    if rest.is_empty() {
        return None;
    }
    match rest.split_first() {
        Some((b'=', v)) => Some(skip_while(v, |c| matches!(c, b' ' | b'\t'))),
        _ => None,
    }
}

fn skip_while(mut s: &[u8], pred: impl Fn(u8) -> bool) -> &[u8] {
    while let Some((&c, rest)) = s.split_first() {
        if !pred(c) {
            break;
        }
        s = rest;
    }
    s
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Varnish's `rfc2616_time`: a leading `-` is 0; otherwise `strtoul` saturated to `u32::MAX`,
/// accepted only if followed (after spaces) by the end, `,` or `.`; anything else is 0.
fn rfc2616_time(p: &[u8]) -> u32 {
    if p.first() == Some(&b'-') {
        return 0;
    }
    // strtoul: C isspace, then an optional sign, then digits.
    let mut s = skip_while(p, |c| {
        matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
    });
    let mut negative = false;
    match s.first() {
        Some(b'+') => s = &s[1..],
        Some(b'-') => {
            negative = true;
            s = &s[1..];
        }
        _ => {}
    }
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return 0;
    }
    let mut val: u64 = 0;
    let mut overflow = false;
    for &c in &s[..digits] {
        match val
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
        {
            Some(v) => val = v,
            None => overflow = true,
        }
    }
    let val = if overflow || (negative && val != 0) {
        // strtoul saturates, and negates in unsigned arithmetic: both exceed UINT_MAX.
        u32::MAX
    } else {
        u32::try_from(val).unwrap_or(u32::MAX)
    };
    let rest = skip_while(&s[digits..], |c| matches!(c, b' ' | b'\t'));
    match rest.first() {
        None | Some(b',') | Some(b'.') => val,
        Some(_) => 0,
    }
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MORE_WEEKDAY: [&[u8]; 7] = [
    b"day", b"day", b"sday", b"nesday", b"rsday", b"day", b"urday",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS_IN_MONTH: [i64; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const DAYS_BEFORE_MONTH: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// A byte cursor for the date grammar; every step returns `None` on mismatch.
struct Cur<'a> {
    s: &'a [u8],
}

impl Cur<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.first().copied()
    }

    fn bump(&mut self) {
        self.s = self.s.get(1..).unwrap_or(&[]);
    }

    fn must(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.bump();
            Some(())
        } else {
            None
        }
    }

    fn digit(&mut self) -> Option<i64> {
        match self.peek() {
            Some(c @ b'0'..=b'9') => {
                self.bump();
                Some(i64::from(c - b'0'))
            }
            _ => None,
        }
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0;
        for _ in 0..n {
            v = v * 10 + self.digit()?;
        }
        Some(v)
    }

    /// Case-sensitive three-letter name from `names`; returns its index.
    fn name3(&mut self, names: &[&[u8; 3]]) -> Option<usize> {
        let i = names.iter().position(|n| self.s.starts_with(&n[..]))?;
        self.s = self.s.get(3..).unwrap_or(&[]);
        Some(i)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.bump();
        }
    }

    /// `HH:MM:SS`.
    fn timestamp(&mut self) -> Option<(i64, i64, i64)> {
        let h = self.digits(2)?;
        self.must(b':')?;
        let m = self.digits(2)?;
        self.must(b':')?;
        let s = self.digits(2)?;
        Some((h, m, s))
    }

    fn gmt(&mut self) -> Option<()> {
        self.must(b' ')?;
        self.must(b'G')?;
        self.must(b'M')?;
        self.must(b'T')
    }
}

/// Varnish's `VTIM_parse` (with the default strict `http_date_postel` off): RFC 1123
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`), asctime
/// (`Sun Nov  6 08:49:37 1994`) and ISO 8601 (`1994-11-06T08:49:37`). Names are case-sensitive
/// and a weekday must be the right one. Returns seconds since the epoch.
fn parse_http_date(p: &[u8]) -> Option<f64> {
    let mut c = Cur { s: p };
    if c.s.is_empty() {
        return None;
    }
    c.skip_spaces();
    let (year, month, mday, weekday, (hour, min, sec));
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        year = c.digits(4)?;
        c.must(b'-')?;
        month = c.digits(2)?;
        c.must(b'-')?;
        mday = c.digits(2)?;
        c.must(b'T')?;
        weekday = None;
        (hour, min, sec) = c.timestamp()?;
    } else {
        let wd = c.name3(&WEEKDAYS)?;
        weekday = Some(wd);
        match c.peek() {
            Some(b',') => {
                c.bump();
                c.must(b' ')?;
                mday = c.digits(2)?;
                c.must(b' ')?;
                month = c.name3(&MONTHS)? as i64 + 1;
                c.must(b' ')?;
                year = c.digits(4)?;
                c.must(b' ')?;
                (hour, min, sec) = c.timestamp()?;
                c.gmt()?;
            }
            Some(b' ') => {
                c.bump();
                month = c.name3(&MONTHS)? as i64 + 1;
                c.must(b' ')?;
                let tens = if c.peek() == Some(b' ') {
                    c.bump();
                    0
                } else {
                    c.digit()?
                };
                mday = tens * 10 + c.digit()?;
                c.must(b' ')?;
                (hour, min, sec) = c.timestamp()?;
                c.must(b' ')?;
                year = c.digits(4)?;
            }
            _ => {
                let more = MORE_WEEKDAY.get(wd)?;
                if !c.s.starts_with(more) {
                    return None;
                }
                c.s = c.s.get(more.len()..).unwrap_or(&[]);
                c.must(b',')?;
                c.must(b' ')?;
                mday = c.digits(2)?;
                c.must(b'-')?;
                month = c.name3(&MONTHS)? as i64 + 1;
                c.must(b'-')?;
                let mut y = c.digits(2)? + 1900;
                if y < 1969 {
                    y += 100;
                }
                year = y;
                c.must(b' ')?;
                (hour, min, sec) = c.timestamp()?;
                c.gmt()?;
            }
        }
    }
    c.skip_spaces();
    if !c.s.is_empty() {
        return None;
    }

    if !(0..=60).contains(&sec) || !(0..=59).contains(&min) || !(0..=23).contains(&hour) {
        return None;
    }
    if !(1..=12).contains(&month) {
        return None;
    }
    let mi = usize::try_from(month - 1).ok()?;
    if mday < 1 || mday > *DAYS_IN_MONTH.get(mi)? || year < 1899 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if month == 2 && mday > 28 && !leap {
        return None;
    }
    let sec = if sec == 60 { 59 } else { sec }; // leap seconds are ignored

    // Varnish's day count relative to 2000-01-01, kept verbatim.
    let mut d = (mday - 1) + DAYS_BEFORE_MONTH.get(mi)?;
    if month > 2 && leap {
        d += 1;
    }
    d += (year % 100) * 365;
    if year % 100 > 0 {
        d += ((year % 100) - 1) / 4;
    }
    d += ((year / 100) - 20) * (100 * 365 + 24);
    d += ((year - 1) / 400) - 4;
    if let Some(wd) = weekday {
        // 2000-01-01 was a Saturday.
        if (d + 6 + 7 * 10000).rem_euclid(7) != wd as i64 {
            return None;
        }
    }
    let t = ((hour * 60 + min) * 60 + sec) + d * 86400 + 10957 * 86400;
    Some(t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn h(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut hs = Headers::new();
        for (n, v) in pairs {
            hs.append(*n, *v);
        }
        hs
    }

    fn ttl(status: u16, pairs: &[(&'static str, &'static str)]) -> Lifetime {
        rfc2616_ttl(status, &h(pairs), NOW, &TtlParams::default())
    }

    /// An RFC 1123 date for `t` (test helper; the inverse of `parse_http_date`).
    fn fmt_date(t: i64) -> String {
        let days = t.div_euclid(86400);
        let secs = t.rem_euclid(86400);
        // Civil-from-days (Howard Hinnant).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let wd = (days + 4).rem_euclid(7) as usize;
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            std::str::from_utf8(WEEKDAYS[wd]).unwrap_or("?"),
            d,
            std::str::from_utf8(MONTHS[(m - 1) as usize]).unwrap_or("?"),
            y,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    fn hd(pairs: Vec<(&'static str, String)>) -> Headers {
        let mut hs = Headers::new();
        for (n, v) in pairs {
            hs.append(n, v);
        }
        hs
    }

    #[test]
    fn defaults_apply_without_freshness_headers() {
        let lt = ttl(200, &[]);
        assert_eq!(
            lt,
            Lifetime {
                t_origin: NOW,
                ttl: 120.0,
                grace: 10.0,
                keep: 0.0
            }
        );
        assert_eq!(lt.remaining_ttl(NOW), 120.0);
    }

    #[test]
    fn uncacheable_statuses_get_minus_one() {
        for s in [500, 503, 201, 206, 403] {
            assert_eq!(ttl(s, &[("Cache-Control", "max-age=60")]).ttl, -1.0, "{s}");
        }
        // Grace is untouched (stale-while-revalidate needs ttl >= 0): b00043 /4.
        let lt = ttl(
            500,
            &[("Cache-Control", "max-age=30, stale-while-revalidate=30")],
        );
        assert_eq!((lt.ttl, lt.grace), (-1.0, 10.0));
        assert_eq!(lt.remaining_ttl(NOW), 0.0);
        for s in [200, 203, 204, 300, 301, 304, 404, 410, 414] {
            assert!(cacheable_status(s));
            assert_eq!(ttl(s, &[]).ttl, 120.0);
        }
        assert!(!cacheable_status(302) && !cacheable_status(307));
    }

    #[test]
    fn temporary_redirects_need_explicit_freshness() {
        assert_eq!(ttl(302, &[]).ttl, -1.0);
        assert_eq!(ttl(307, &[]).ttl, -1.0);
        assert_eq!(ttl(302, &[("Cache-Control", "max-age=30")]).ttl, 30.0);
        assert_eq!(ttl(307, &[("Cache-Control", "s-maxage=5")]).ttl, 5.0);
        let exp = fmt_date(NOW as i64 + 50);
        let lt = rfc2616_ttl(302, &hd(vec![("Expires", exp)]), NOW, &TtlParams::default());
        assert_eq!(lt.ttl, 50.0);
        // A 302 with CC but no max-age stays uncacheable.
        assert_eq!(ttl(302, &[("Cache-Control", "public")]).ttl, -1.0);
    }

    #[test]
    fn age_moves_origin_b00043() {
        let lt = ttl(
            200,
            &[
                ("Cache-Control", "max-age=30, stale-while-revalidate=30"),
                ("Age", "40"),
            ],
        );
        assert_eq!(lt.t_origin, NOW - 40.0);
        assert_eq!(lt.ttl, 30.0);
        assert_eq!(lt.grace, 30.0);
        assert_eq!(lt.remaining_ttl(NOW), -10.0);
        assert_eq!(
            builtin_uncacheable(&Headers::new(), &lt, NOW),
            Some(Uncacheable::TtlNotPositive)
        );
        // b00043 /1 and /2.
        let lt = ttl(
            200,
            &[("Cache-Control", "max-age=30, stale-while-revalidate=30")],
        );
        assert_eq!(
            (lt.ttl, lt.grace, lt.remaining_ttl(NOW)),
            (30.0, 30.0, 30.0)
        );
        let lt = ttl(
            200,
            &[("Cache-Control", "max-age=0, stale-while-revalidate=30")],
        );
        assert_eq!((lt.ttl, lt.grace), (0.0, 30.0));
    }

    #[test]
    fn age_parsing_follows_rfc2616_time() {
        assert_eq!(ttl(200, &[("Age", "abc")]).t_origin, NOW);
        assert_eq!(ttl(200, &[("Age", "-5")]).t_origin, NOW);
        assert_eq!(ttl(200, &[("Age", " 7 ")]).t_origin, NOW - 7.0);
        assert_eq!(ttl(200, &[("Age", "7.9")]).t_origin, NOW - 7.0);
        assert_eq!(ttl(200, &[("Age", "7x")]).t_origin, NOW);
        assert_eq!(
            ttl(200, &[("Age", "99999999999")]).t_origin,
            NOW - f64::from(u32::MAX)
        );
        // The first Age header counts.
        assert_eq!(ttl(200, &[("Age", "3"), ("Age", "9")]).t_origin, NOW - 3.0);
    }

    #[test]
    fn s_maxage_beats_max_age_b00066() {
        assert_eq!(
            ttl(200, &[("Cache-Control", "max-age=5, s-maxage=1")]).ttl,
            1.0
        );
        assert_eq!(
            ttl(200, &[("Cache-Control", "s-maxage=2, max-age=5")]).ttl,
            2.0
        );
        assert_eq!(
            ttl(
                200,
                &[
                    ("Cache-Control", "max-age=5"),
                    ("Cache-Control", "s-maxage=3")
                ]
            )
            .ttl,
            3.0
        );
        // Directive names are case-insensitive, white space around '=' is allowed.
        assert_eq!(
            ttl(200, &[("Cache-Control", "Public, MAX-AGE = 42")]).ttl,
            42.0
        );
        // A token must match whole: "max-ages" is not "max-age".
        assert_eq!(ttl(200, &[("Cache-Control", "max-ages=9")]).ttl, 120.0);
        // s-maxage without a value hides max-age (Varnish short-circuits) → default.
        assert_eq!(
            ttl(200, &[("Cache-Control", "s-maxage, max-age=9")]).ttl,
            120.0
        );
        // A quoted directive name matches (case-sensitively).
        assert_eq!(ttl(200, &[("Cache-Control", "\"max-age\"=9")]).ttl, 9.0);
        // Quoted values elsewhere do not confuse the splitter.
        assert_eq!(
            ttl(
                200,
                &[("Cache-Control", "no-cache=\"Set-Cookie\", max-age=8")]
            )
            .ttl,
            8.0
        );
    }

    #[test]
    fn bad_numbers_give_zero_like_varnish_b00066() {
        for v in [
            "max-age=-2",
            "max-age=a2",
            "max-age=2a",
            "s-maxage=-2",
            "s-maxage=a2",
            "s-maxage=2a",
        ] {
            let hs = h(&[("Cache-Control", v)]);
            assert_eq!(
                rfc2616_ttl(200, &hs, NOW, &TtlParams::default()).ttl,
                0.0,
                "{v}"
            );
        }
        assert_eq!(ttl(200, &[("Cache-Control", "max-age=\"10\"")]).ttl, 0.0);
        assert_eq!(ttl(200, &[("Cache-Control", "max-age=")]).ttl, 0.0);
        assert_eq!(ttl(200, &[("Cache-Control", "max-age=10.7")]).ttl, 10.0);
        assert_eq!(ttl(200, &[("Cache-Control", "max-age=+10")]).ttl, 10.0);
        assert_eq!(
            ttl(200, &[("Cache-Control", "max-age=10 , public")]).ttl,
            10.0
        );
        assert_eq!(
            ttl(200, &[("Cache-Control", "max-age=99999999999")]).ttl,
            f64::from(u32::MAX)
        );
    }

    #[test]
    fn expires_relative_to_now_when_clocks_agree() {
        let p = TtlParams::default();
        let n = NOW as i64;
        // No Date: Expires - now.
        let lt = rfc2616_ttl(200, &hd(vec![("Expires", fmt_date(n + 300))]), NOW, &p);
        assert_eq!(lt.ttl, 300.0);
        // Expires in the past, no Date: 0.
        let lt = rfc2616_ttl(200, &hd(vec![("Expires", fmt_date(n - 300))]), NOW, &p);
        assert_eq!(lt.ttl, 0.0);
        // Date 9 s off either way is within clock_skew: still Expires - now.
        for off in [-9, 9] {
            let hs = hd(vec![
                ("Date", fmt_date(n + off)),
                ("Expires", fmt_date(n + 300)),
            ]);
            assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 300.0, "{off}");
        }
        // Expires before Date: 0, whatever the clocks.
        let hs = hd(vec![("Date", fmt_date(n)), ("Expires", fmt_date(n - 1))]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 0.0);
        // Fractional now.
        let hs = hd(vec![("Expires", fmt_date(n + 10))]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW + 0.25, &p).ttl, 9.75);
    }

    #[test]
    fn expires_relative_to_date_when_clocks_skew() {
        let p = TtlParams::default();
        let n = NOW as i64;
        // Backend clock 1 h ahead: Expires - Date.
        let hs = hd(vec![
            ("Date", fmt_date(n + 3600)),
            ("Expires", fmt_date(n + 3600 + 60)),
        ]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 60.0);
        // Backend clock 1 h behind: Expires - Date, though Expires is before our now.
        let hs = hd(vec![
            ("Date", fmt_date(n - 3600)),
            ("Expires", fmt_date(n - 3600 + 60)),
        ]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 60.0);
        // Exactly clock_skew away is "skewed".
        let hs = hd(vec![
            ("Date", fmt_date(n - 10)),
            ("Expires", fmt_date(n + 20)),
        ]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 30.0);
        // Max-age wins over Expires.
        let hs = hd(vec![
            ("Expires", fmt_date(n + 300)),
            ("Cache-Control", "max-age=5".into()),
        ]);
        assert_eq!(rfc2616_ttl(200, &hs, NOW, &p).ttl, 5.0);
    }

    #[test]
    fn unparseable_expires_is_ignored_like_varnish() {
        // VTIM_parse returns 0 and RFC2616_Ttl treats 0 as "no Expires": default TTL.
        for v in [
            "0",
            "-1",
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
        ] {
            assert_eq!(ttl(200, &[("Expires", v)]).ttl, 120.0, "{v}");
        }
        let p = TtlParams {
            default_ttl: 0.0,
            ..TtlParams::default()
        };
        assert_eq!(rfc2616_ttl(200, &h(&[("Expires", "0")]), NOW, &p).ttl, 0.0);
    }

    #[test]
    fn stale_while_revalidate_sets_grace() {
        let lt = ttl(
            200,
            &[("Cache-Control", "max-age=10, stale-while-revalidate=300")],
        );
        assert_eq!((lt.ttl, lt.grace, lt.keep), (10.0, 300.0, 0.0));
        let lt = ttl(200, &[("Cache-Control", "stale-while-revalidate=5")]);
        assert_eq!((lt.ttl, lt.grace), (120.0, 5.0));
        let lt = ttl(302, &[("Cache-Control", "stale-while-revalidate=5")]);
        assert_eq!((lt.ttl, lt.grace), (-1.0, 10.0));
        let lt = ttl(200, &[("Cache-Control", "stale-while-revalidate")]);
        assert_eq!(lt.grace, 10.0);
    }

    #[test]
    fn builtin_rules() {
        let lt = ttl(200, &[]);
        let none = Headers::new();
        assert_eq!(builtin_uncacheable(&none, &lt, NOW), None);
        assert_eq!(
            builtin_uncacheable(&none, &lt, NOW + 120.0),
            Some(Uncacheable::TtlNotPositive)
        );
        assert_eq!(
            builtin_uncacheable(&h(&[("Set-Cookie", "a=b")]), &lt, NOW),
            Some(Uncacheable::SetCookie)
        );
        assert_eq!(
            builtin_uncacheable(&h(&[("Surrogate-Control", "No-Store")]), &lt, NOW),
            Some(Uncacheable::SurrogateNoStore)
        );
        let no_cache = Some(Uncacheable::CacheControlNoCache);
        for (cc, want) in [
            ("no-cache", no_cache),
            ("No-Store", no_cache),
            ("private, max-age=3", no_cache),
            ("no-cache=\"Set-Cookie\"", no_cache),
            ("max-age=3", None),
            ("public", None),
        ] {
            assert_eq!(
                builtin_uncacheable(&h(&[("Cache-Control", cc)]), &lt, NOW),
                want,
                "{cc}"
            );
        }
        // A second Cache-Control field counts too.
        let hs = h(&[("Cache-Control", "public"), ("Cache-Control", "private")]);
        assert_eq!(
            builtin_uncacheable(&hs, &lt, NOW),
            Some(Uncacheable::CacheControlNoCache)
        );
        // Surrogate-Control present overrides Cache-Control.
        let hs = h(&[
            ("Surrogate-Control", "max-age=3"),
            ("Cache-Control", "private"),
        ]);
        assert_eq!(builtin_uncacheable(&hs, &lt, NOW), None);
        assert_eq!(
            builtin_uncacheable(&h(&[("Vary", "*")]), &lt, NOW),
            Some(Uncacheable::VaryStar)
        );
        assert_eq!(
            builtin_uncacheable(&h(&[("Vary", " * ")]), &lt, NOW),
            Some(Uncacheable::VaryStar)
        );
        assert_eq!(
            builtin_uncacheable(&h(&[("Vary", "Accept, *")]), &lt, NOW),
            None
        );
        assert_eq!(
            builtin_uncacheable(&h(&[("Vary", "Accept-Encoding")]), &lt, NOW),
            None
        );
    }

    #[test]
    fn hit_for_miss_ttl_is_from_now() {
        let mut lt = ttl(200, &[("Cache-Control", "max-age=30"), ("Age", "40")]);
        lt.set_remaining_ttl(NOW, UNCACHEABLE_TTL);
        assert_eq!(lt.ttl, 160.0);
        assert_eq!(lt.remaining_ttl(NOW), 120.0);
        lt.set_remaining_ttl(NOW, -500.0);
        assert_eq!(lt.ttl, 0.0);
    }

    #[test]
    fn date_formats() {
        let t = 784_111_777.0;
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date(b"1994-11-06T08:49:37"), Some(t));
        assert_eq!(
            parse_http_date(b"  Sun, 06 Nov 1994 08:49:37 GMT  "),
            Some(t)
        );
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0.0));
        assert_eq!(
            parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400.0)
        );
        assert_eq!(
            parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT"),
            Some(1_483_228_799.0)
        );
        assert_eq!(parse_http_date(b"Mon, 06 Nov 1994 08:49:37 GMT"), None); // wrong weekday
        assert_eq!(parse_http_date(b"Sun, 6 Nov 1994 08:49:37 GMT"), None); // postel off
        assert_eq!(parse_http_date(b"Thu, 29 Feb 2001 00:00:00 GMT"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 24:00:00 GMT"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT x"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b""), None);
        assert_eq!(parse_http_date(b"0"), None);
        // Round trip against an independent civil-date formatter.
        for t in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            1_234_567_890,
        ] {
            assert_eq!(
                parse_http_date(fmt_date(t).as_bytes()),
                Some(t as f64),
                "{}",
                fmt_date(t)
            );
        }
        let mut t = -2_000_000_000i64;
        while t < 5_000_000_000 {
            assert_eq!(
                parse_http_date(fmt_date(t).as_bytes()),
                Some(t as f64),
                "{}",
                fmt_date(t)
            );
            t += 7_777_777;
        }
    }
}
