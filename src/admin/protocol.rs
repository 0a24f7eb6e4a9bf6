//! The Varnish CLI wire protocol: framing, argument splitting, authentication (pure).
//!
//! A request is one line of words split as Varnish's `VAV_Parse` splits them (double quotes,
//! backslash escapes), optionally followed by a here-document (`cmd arg << NONCE`, authenticated
//! sessions only). A response is a 13-byte status line, `"%-3d %-8u\n"` (status, body length),
//! then the body, then `"\n"`. Everything here is a port of `lib/libvarnish/vcli_proto.c`,
//! `vcli_serve.c` (`cls_feed`) and `vav.c` from Varnish 7.1, so `varnishadm` and scripts written
//! for it see the same bytes.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// Status codes (`include/vcli.h`).
pub mod status {
    pub const SYNTAX: u16 = 100;
    pub const UNKNOWN: u16 = 101;
    pub const UNIMPL: u16 = 102;
    pub const TOOFEW: u16 = 104;
    pub const TOOMANY: u16 = 105;
    pub const PARAM: u16 = 106;
    pub const AUTH: u16 = 107;
    pub const OK: u16 = 200;
    pub const TRUNCATED: u16 = 201;
    pub const CANT: u16 = 300;
    pub const COMMS: u16 = 400;
    pub const CLOSE: u16 = 500;
}

/// Length of a response's status line (`CLI_LINE0_LEN`).
pub const LINE0_LEN: usize = 13;

/// Longest command line accepted from an authenticated session (Varnish has no limit; a line
/// longer than this is refused and the connection closed).
pub const MAX_LINE: usize = 64 << 10;

/// Longest here-document body accepted.
pub const MAX_HEREDOC: usize = 1 << 20;

/// Until a session is authenticated its command lines are cut at this length (as Varnish).
pub const PREAUTH_LINE: usize = 80;

/// The challenge's length in characters.
pub const CHALLENGE_LEN: usize = 32;

/// A whole response on the wire: status line, body, newline.
pub fn frame(status: u16, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(LINE0_LEN + body.len() + 1);
    out.extend_from_slice(format!("{:<3} {:<8}\n", status, body.len()).as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
    out
}

/// Parses a status line; `None` if it is not one (as `VCLI_ReadResult` checks it).
pub fn parse_status_line(line: &[u8]) -> Option<(u16, usize)> {
    if line.len() != LINE0_LEN || line[3] != b' ' || line[LINE0_LEN - 1] != b'\n' {
        return None;
    }
    let text = std::str::from_utf8(&line[..LINE0_LEN - 1]).ok()?;
    let mut words = text.split_ascii_whitespace();
    let status = words.next()?.parse().ok()?;
    let len = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some((status, len))
}

/// Reads one response (status, body) from `r`, refusing bodies longer than `max_body`.
pub fn read_response(r: &mut impl Read, max_body: usize) -> io::Result<(u16, String)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut line = [0u8; LINE0_LEN];
    r.read_exact(&mut line)?;
    let (status, len) =
        parse_status_line(&line).ok_or_else(|| bad("CLI communication error (hdr)"))?;
    if len > max_body {
        return Err(bad("CLI communication error (body too long)"));
    }
    let mut body = vec![0u8; len + 1];
    r.read_exact(&mut body)?;
    if body.pop() != Some(b'\n') {
        return Err(bad("CLI communication error (body)"));
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The answer to a challenge: lowercase hex SHA-256 of challenge, "\n", secret, challenge, "\n"
/// (`VCLI_AuthResponse`; only the challenge's first 32 bytes count).
pub fn auth_response(challenge: &[u8], secret: &[u8]) -> String {
    let ch = &challenge[..challenge.len().min(CHALLENGE_LEN)];
    let mut h = Sha256::new();
    h.update(ch);
    h.update(b"\n");
    h.update(secret);
    h.update(ch);
    h.update(b"\n");
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Decodes one backslash sequence at the start of `s` (`vav_backslash_txt`): the byte it
/// stands for and how many input bytes it used, or `None` if it is invalid.
fn backslash(s: &[u8]) -> Option<(u8, usize)> {
    if s.len() < 2 {
        return None;
    }
    match s[1] {
        b'n' => Some((b'\n', 2)),
        b'r' => Some((b'\r', 2)),
        b't' => Some((b'\t', 2)),
        b'"' => Some((b'"', 2)),
        b'\\' => Some((b'\\', 2)),
        b'0'..=b'7' => {
            let mut c: u8 = 0;
            let mut r = 1;
            while r < 4 && r < s.len() && (b'0'..=b'7').contains(&s[r]) {
                c = (c << 3) | (s[r] - b'0');
                r += 1;
            }
            Some((c, r))
        }
        b'x' if s.len() >= 4 => {
            let hex = std::str::from_utf8(&s[2..4]).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            hex.bytes().all(|b| b.is_ascii_hexdigit()).then_some((v, 4))
        }
        _ => None,
    }
}

/// Splits a command line into words as Varnish's `VAV_Parse(s, &ac, 0)` does; `Err` carries
/// Varnish's message (`Missing '"'` ...).
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut args = Vec::new();
    let mut b = 0;
    let e = line.len();
    // The separator that ended the previous word: whitespace, or the closing quote.
    let mut sep: Option<u8> = None;
    while b < e {
        if is_space(line[b]) {
            b += 1;
            continue;
        }
        if sep == Some(b'"') && line[b] == b'"' {
            return Err("Missing separator between arguments");
        }
        sep = None;
        let quote = line[b] == b'"';
        if quote {
            b += 1;
        }
        let mut word = Vec::new();
        let mut closed = false;
        while b < e {
            let c = line[b];
            if c == b'\\' {
                let (v, n) = backslash(&line[b..]).ok_or("Invalid backslash sequence")?;
                word.push(v);
                b += n;
                continue;
            }
            if !quote {
                if is_space(c) {
                    sep = Some(c);
                    break;
                }
                if c == b'"' {
                    return Err("Invalid '\"'");
                }
            } else if c == b'"' {
                sep = Some(c);
                closed = true;
                break;
            }
            word.push(c);
            b += 1;
        }
        if quote && !closed {
            return Err("Missing '\"'");
        }
        args.push(word);
        if b < e {
            b += 1;
        }
    }
    Ok(args)
}

/// Quotes `arg` so that [`split_args`] gives it back unchanged (bare when that is already so).
pub fn quote_arg(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for ch in arg.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One request taken off the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// The words (command first) or the split error.
    Args(Result<Vec<Vec<u8>>, &'static str>),
    /// A line (or here-document) over the limit: answer and close.
    TooLong,
}

#[derive(Debug)]
struct HereDoc {
    /// The words before `<< NONCE`.
    args: Vec<Vec<u8>>,
    nonce: Vec<u8>,
    /// How much of the nonce the latest input bytes matched.
    matched: usize,
    body: Vec<u8>,
}

/// Cuts a byte stream into requests (`cls_feed`): leading whitespace skipped, lines end at CR
/// or LF, a leading `-` ignored, `<< NONCE` here-documents collected.
#[derive(Debug, Default)]
pub struct Reader {
    pending: Vec<u8>,
    pos: usize,
    cmd: Option<Vec<u8>>,
    heredoc: Option<HereDoc>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
        }
        self.pending.extend_from_slice(data);
    }

    /// The next complete request, if the bytes pushed so far hold one. `authenticated` decides
    /// the pre-authentication line cut and whether here-documents are allowed, and may change
    /// between calls (after an `auth`), exactly as Varnish's byte-at-a-time feed.
    pub fn next_request(&mut self, authenticated: bool) -> Option<Request> {
        while self.pos < self.pending.len() {
            let c = self.pending[self.pos];
            if let Some(hd) = self.heredoc.as_mut() {
                self.pos += 1;
                if hd.matched == hd.nonce.len() && (c == b'\r' || c == b'\n') {
                    let mut hd = self.heredoc.take()?;
                    self.cmd = None;
                    hd.args.push(std::mem::take(&mut hd.body));
                    return Some(Request::Args(Ok(hd.args)));
                } else if hd.matched < hd.nonce.len() && c == hd.nonce[hd.matched] {
                    hd.matched += 1;
                } else {
                    let m = std::mem::take(&mut hd.matched);
                    hd.body.extend_from_slice(&hd.nonce[..m]);
                    hd.body.push(c);
                }
                if hd.body.len() > MAX_HEREDOC {
                    return Some(Request::TooLong);
                }
                continue;
            }
            if self.cmd.is_none() && is_space(c) {
                self.pos += 1;
                continue;
            }
            let cmd = self.cmd.get_or_insert_with(Vec::new);
            self.pos += 1;
            if c != b'\n' && c != b'\r' && (authenticated || cmd.len() < PREAUTH_LINE) {
                if cmd.len() >= MAX_LINE {
                    return Some(Request::TooLong);
                }
                cmd.push(c);
                continue;
            }
            // End of the line (or of what an unauthenticated peer may send on one).
            let line = self.cmd.take().unwrap_or_default();
            let text = line.strip_prefix(b"-").unwrap_or(&line);
            let parsed = split_args(text);
            if let Ok(args) = &parsed {
                let n = args.len();
                if authenticated && n >= 2 && args[n - 2] == b"<<" && !args[n - 1].is_empty() {
                    let mut args = args.clone();
                    let nonce = args.pop().unwrap_or_default();
                    args.pop();
                    self.cmd = Some(Vec::new());
                    self.heredoc = Some(HereDoc {
                        args,
                        nonce,
                        matched: 0,
                        body: Vec::new(),
                    });
                    continue;
                }
            }
            return Some(Request::Args(parsed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Result<Vec<String>, &'static str> {
        split_args(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|w| String::from_utf8_lossy(&w).into_owned())
                .collect()
        })
    }

    #[test]
    fn status_line_widths_match_varnish() {
        assert_eq!(
            frame(200, "PONG 1 1.0"),
            b"200 10      \nPONG 1 1.0\n".to_vec()
        );
        assert_eq!(frame(500, ""), b"500 0       \n\n".to_vec());
        assert_eq!(frame(200, "").len(), LINE0_LEN + 1);
        assert_eq!(parse_status_line(b"107 59      \n"), Some((107, 59)));
        assert_eq!(parse_status_line(b"107 59      x"), None);
        assert_eq!(parse_status_line(b"1070 59     \n"), None);
        let mut r: &[u8] = b"101 3       \nabc\n";
        assert_eq!(read_response(&mut r, 10).expect("ok"), (101, "abc".into()));
        let mut r: &[u8] = b"101 3       \nabcd";
        assert!(read_response(&mut r, 10).is_err());
        let mut r: &[u8] = b"101 30      \nabc\n";
        assert!(read_response(&mut r, 10).is_err());
    }

    #[test]
    fn splits_like_vav_parse() {
        assert_eq!(words("ping"), Ok(vec!["ping".into()]));
        assert_eq!(words("  a\tb  "), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(
            words("a \"b c\" d"),
            Ok(vec!["a".into(), "b c".into(), "d".into()])
        );
        assert_eq!(
            words(r#"a "x\"y\\z\n""#),
            Ok(vec!["a".into(), "x\"y\\z\n".into()])
        );
        assert_eq!(words(r"a\x41\101\t"), Ok(vec!["aAA\t".into()]));
        assert_eq!(words("\"\""), Ok(vec!["".into()]));
        // A word may follow a closing quote directly (Varnish accepts it).
        assert_eq!(words("\"a\"b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(words("\"ping"), Err("Missing '\"'"));
        assert_eq!(words("a\"b"), Err("Invalid '\"'"));
        assert_eq!(
            words("\"a\"\"b\""),
            Err("Missing separator between arguments")
        );
        assert_eq!(words(r"a \q"), Err("Invalid backslash sequence"));
        assert_eq!(words(r"a \"), Err("Invalid backslash sequence"));
        assert_eq!(words(r"\xzz"), Err("Invalid backslash sequence"));
    }

    #[test]
    fn quoting_round_trips() {
        for s in [
            "MAIN.*",
            "",
            "a b",
            "x\"y",
            "back\\slash",
            "tab\tnl\n",
            "ünï",
        ] {
            let line = format!("cmd {}", quote_arg(s));
            assert_eq!(
                words(&line),
                Ok(vec!["cmd".to_string(), s.to_string()]),
                "{s:?}"
            );
        }
        assert_eq!(quote_arg("MAIN.*"), "MAIN.*");
    }

    #[test]
    fn auth_response_is_sha256_of_challenge_secret_challenge() {
        // Computed with: printf 'abc\nsecret\nabc\n' | sha256sum (challenge cut to 32 bytes
        // does not matter for a short one).
        let r = auth_response(b"abc", b"secret\n");
        assert_eq!(r.len(), 64);
        let mut h = Sha256::new();
        h.update(b"abc\nsecret\nabc\n");
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r, want);
        let long = [b'q'; 40];
        assert_eq!(auth_response(&long, b"s"), auth_response(&long[..32], b"s"));
    }

    fn all(r: &mut Reader, auth: bool) -> Vec<Request> {
        std::iter::from_fn(|| r.next_request(auth)).collect()
    }

    fn args(v: &[&str]) -> Request {
        Request::Args(Ok(v.iter().map(|s| s.as_bytes().to_vec()).collect()))
    }

    #[test]
    fn reader_cuts_lines_and_skips_blank_ones() {
        let mut r = Reader::new();
        r.push(b"\n\n  ping\r\nsta");
        assert_eq!(all(&mut r, true), vec![args(&["ping"])]);
        r.push(b"tus\n-help\n-\n");
        assert_eq!(
            all(&mut r, true),
            vec![args(&["status"]), args(&["help"]), args(&[])]
        );
    }

    #[test]
    fn reader_cuts_unauthenticated_lines_at_80() {
        let mut r = Reader::new();
        let long = format!("ping {}\n", "x".repeat(100));
        r.push(long.as_bytes());
        let got = all(&mut r, false);
        // The first 80 bytes make one request, the 81st is dropped, the rest makes another.
        assert_eq!(got[0], args(&["ping", &"x".repeat(75)]));
        assert_eq!(got[1], args(&[&"x".repeat(24)]));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn reader_refuses_overlong_lines() {
        let mut r = Reader::new();
        r.push(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(r.next_request(true), Some(Request::TooLong));
    }

    #[test]
    fn here_documents() {
        let mut r = Reader::new();
        r.push(b"vcl.inline x << EOF\nvcl 4.1;\nbackend b { }\nEOF\nping\n");
        assert_eq!(
            all(&mut r, true),
            vec![
                args(&["vcl.inline", "x", "vcl 4.1;\nbackend b { }\n"]),
                args(&["ping"])
            ]
        );
        // A partial match of the nonce goes into the body.
        let mut r = Reader::new();
        r.push(b"a << END\nENx\nEND\n");
        assert_eq!(all(&mut r, true), vec![args(&["a", "ENx\n"])]);
        // Not before authentication.
        let mut r = Reader::new();
        r.push(b"a << END\n");
        assert_eq!(all(&mut r, false), vec![args(&["a", "<<", "END"])]);
    }
}
