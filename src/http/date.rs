//! HTTP dates (IMF-fixdate) from and to Unix seconds.
//!
//! Why seconds and a cache: the proxy's clock is read once per loop iteration by the caller and
//! passed in, so these functions stay pure and testable. Every synthetic response needs a `Date`
//! header, and formatting one costs more than the rest of a small response head, so
//! [`DateCache`] formats at most once per second per shard. Parsing accepts all three formats
//! RFC 9110 §5.6.7 requires recipients to accept (IMF-fixdate, RFC 850, asctime) via `httpdate`.

use std::time::{Duration, UNIX_EPOCH};

/// The last second `httpdate` can format (9999-12-31T23:59:59Z); later times are clamped to it.
const MAX_SECS: u64 = 253_402_300_799;

/// Formats `unix_secs` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn fmt_http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs.min(MAX_SECS)))
}

/// Parses an HTTP date in any of the three accepted formats; `None` if invalid or before 1970.
/// Surrounding whitespace is tolerated.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(crate::http::headers::trim(v)).ok()?;
    let t = httpdate::parse_http_date(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The formatted `Date` value for the current second, re-formatted only when the second changes.
#[derive(Clone, Debug)]
pub struct DateCache {
    secs: Option<u64>,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    /// An empty cache; the first `get` formats.
    pub fn new() -> Self {
        DateCache {
            secs: None,
            text: *b"Thu, 01 Jan 1970 00:00:00 GMT",
        }
    }

    /// The IMF-fixdate for `unix_secs` (always 29 bytes).
    pub fn get(&mut self, unix_secs: u64) -> &[u8] {
        if self.secs != Some(unix_secs) {
            let s = fmt_http_date(unix_secs);
            // IMF-fixdate is always 29 bytes for years 1970..=9999.
            if s.len() == self.text.len() {
                self.text.copy_from_slice(s.as_bytes());
            }
            self.secs = Some(unix_secs);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        assert_eq!(fmt_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(fmt_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fmt_http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn parse_all_three_formats() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date(b"Sun Nov  6 08:49:37 1994"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT "),
            Some(784111777)
        );
    }

    #[test]
    fn parse_invalid() {
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"yesterday",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn round_trip() {
        for t in [0u64, 1, 86399, 951782400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_http_date(fmt_http_date(t).as_bytes()), Some(t));
        }
    }

    #[test]
    fn cache() {
        let mut c = DateCache::new();
        assert_eq!(c.get(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.get(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.get(784111778), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(c.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(DateCache::default().get(0).len(), 29);
    }
}
