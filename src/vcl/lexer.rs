//! The VCL lexer: source text to tokens, following Varnish 7.1's `vcc_token.c`.
//!
//! Why it mirrors Varnish token for token instead of being "nicer": operators bring VCL that
//! varnishd accepts, and whatever varnishd rejects should fail here at the same place. So an
//! identifier is `[A-Za-z][A-Za-z0-9_-]*` and the dot is its own token (`req.http.X-Forwarded-For`
//! is five tokens; the parser joins them into a path), a number followed by a unit is two tokens
//! (`10s`, as Varnish, where `10 s` is also a duration), strings have no escapes and a plain
//! `"..."` cannot span lines, `{"` always opens a long string, and the fixed operators are
//! matched longest first (`++ -- << >> & |` exist as tokens only so that errors name them).
//!
//! Errors stop nothing: the lexer records each one and carries on, but the parser does not
//! parse a file whose lexing failed (one precise message is worth more than the cascade).

use super::diag::{Diagnostic, FileId, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `[A-Za-z][A-Za-z0-9_-]*`
    Ident,
    /// Digits only (`CNUM`).
    Int,
    /// Digits, a dot, digits (`FNUM`).
    Real,
    /// `"..."`, `{"..."}` or `"""..."""`; the value is the text between the delimiters.
    Str,
    /// `:base64:` (a BLOB literal, as `.preamble` takes).
    Blob,
    /// `C{ ... }C` (always refused; kept so the parser could name it).
    CSrc,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Semi,
    Comma,
    Dot,
    /// `=`
    Assign,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `~`
    Match,
    /// `!~`
    NoMatch,
    /// `!`
    Not,
    /// `&&`
    And,
    /// `||`
    Or,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    /// `+=`
    AddAssign,
    /// `-=`
    SubAssign,
    /// `*=`
    MulAssign,
    /// `/=`
    DivAssign,
    /// `++` (no meaning in VCL)
    Inc,
    /// `--` (no meaning in VCL)
    Dec,
    /// `<<` (no meaning in VCL)
    Shl,
    /// `>>` (no meaning in VCL)
    Shr,
    /// `&` (no meaning in VCL)
    Amp,
    /// `|` (no meaning in VCL)
    Pipe,
    Eof,
}

impl TokenKind {
    /// How an *expected* token is named in "Expected X got Y".
    pub fn describe(self) -> &'static str {
        use TokenKind::*;
        match self {
            Ident => "an identifier",
            Int => "an integer",
            Real => "a number",
            Str => "a string",
            Blob => "a BLOB",
            CSrc => "C{ ... }C",
            LBrace => "'{'",
            RBrace => "'}'",
            LParen => "'('",
            RParen => "')'",
            Semi => "';'",
            Comma => "','",
            Dot => "'.'",
            Assign => "'='",
            Eq => "'=='",
            Ne => "'!='",
            Lt => "'<'",
            Gt => "'>'",
            Le => "'<='",
            Ge => "'>='",
            Match => "'~'",
            NoMatch => "'!~'",
            Not => "'!'",
            And => "'&&'",
            Or => "'||'",
            Plus => "'+'",
            Minus => "'-'",
            Star => "'*'",
            Slash => "'/'",
            Percent => "'%'",
            AddAssign => "'+='",
            SubAssign => "'-='",
            MulAssign => "'*='",
            DivAssign => "'/='",
            Inc => "'++'",
            Dec => "'--'",
            Shl => "'<<'",
            Shr => "'>>'",
            Amp => "'&'",
            Pipe => "'|'",
            Eof => "end of input",
        }
    }
}

/// One token: its kind and where it is. The text is `SourceMap::snippet(span)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
    /// For `Str`: length of the opening (and closing) delimiter: 1, 2 (`{"`) or 3 (`"""`).
    pub delim: u8,
}

impl Token {
    /// The token's text in `src` (the text of the token's file).
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.span.start as usize..self.span.end as usize)
            .unwrap_or("")
    }

    /// For a `Str` token: the string's value (the text between the delimiters).
    pub fn str_value<'a>(&self, src: &'a str) -> &'a str {
        let d = self.delim as usize;
        let s = self.span.start as usize + d;
        let e = (self.span.end as usize).saturating_sub(d);
        if s > e {
            return "";
        }
        src.get(s..e).unwrap_or("")
    }
}

/// Lexes one file. Always ends with an `Eof` token; the `Eof` span is empty and sits just after
/// the last token, so "got end of input" points where the missing text belongs.
pub fn lex(file: FileId, src: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lx = Lexer {
        file,
        src,
        b: src.as_bytes(),
        pos: 0,
        toks: Vec::new(),
        diags: Vec::new(),
    };
    lx.run();
    let end = lx.toks.last().map_or(0, |t| t.span.end);
    lx.toks.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(file, end, end),
        delim: 0,
    });
    (lx.toks, lx.diags)
}

struct Lexer<'a> {
    file: FileId,
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    toks: Vec<Token>,
    diags: Vec<Diagnostic>,
}

/// Fixed tokens, longest first within each starting byte.
const FIXED2: &[(&[u8; 2], TokenKind)] = &[
    (b"++", TokenKind::Inc),
    (b"--", TokenKind::Dec),
    (b"&&", TokenKind::And),
    (b"||", TokenKind::Or),
    (b"<=", TokenKind::Le),
    (b"==", TokenKind::Eq),
    (b"!=", TokenKind::Ne),
    (b">=", TokenKind::Ge),
    (b">>", TokenKind::Shr),
    (b"<<", TokenKind::Shl),
    (b"+=", TokenKind::AddAssign),
    (b"-=", TokenKind::SubAssign),
    (b"*=", TokenKind::MulAssign),
    (b"/=", TokenKind::DivAssign),
    (b"!~", TokenKind::NoMatch),
];

fn fixed1(c: u8) -> Option<TokenKind> {
    use TokenKind::*;
    Some(match c {
        b'{' => LBrace,
        b'}' => RBrace,
        b'(' => LParen,
        b')' => RParen,
        b'*' => Star,
        b'+' => Plus,
        b'-' => Minus,
        b'/' => Slash,
        b'%' => Percent,
        b'>' => Gt,
        b'<' => Lt,
        b'=' => Assign,
        b';' => Semi,
        b'!' => Not,
        b'&' => Amp,
        b'.' => Dot,
        b'|' => Pipe,
        b'~' => Match,
        b',' => Comma,
        _ => return None,
    })
}

fn is_base64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

impl Lexer<'_> {
    fn span(&self, s: usize, e: usize) -> Span {
        Span::new(self.file, s as u32, e as u32)
    }

    fn push(&mut self, kind: TokenKind, s: usize, e: usize, delim: u8) {
        self.toks.push(Token {
            kind,
            span: self.span(s, e),
            delim,
        });
    }

    fn err(&mut self, s: usize, e: usize, msg: impl Into<String>) {
        let d = Diagnostic::error(self.span(s, e), msg);
        self.diags.push(d);
    }

    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn starts_with(&self, i: usize, pat: &[u8]) -> bool {
        self.b.get(i..).is_some_and(|r| r.starts_with(pat))
    }

    fn find(&self, from: usize, pat: &[u8]) -> Option<usize> {
        let hay = self.b.get(from..)?;
        if pat.is_empty() || hay.len() < pat.len() {
            return None;
        }
        hay.windows(pat.len())
            .position(|w| w == pat)
            .map(|p| p + from)
    }

    /// End (exclusive) of the UTF-8 character starting at `i`.
    fn char_end(&self, i: usize) -> usize {
        let mut e = i + 1;
        while e < self.b.len() && !self.src.is_char_boundary(e) {
            e += 1;
        }
        e.min(self.b.len())
    }

    fn run(&mut self) {
        while self.pos < self.b.len() {
            let p = self.pos;
            let c = self.b[p];

            if c.is_ascii_whitespace() || c == 0x0b {
                self.pos += 1;
                continue;
            }
            if c == b'#' || (c == b'/' && self.at(p + 1) == b'/') {
                while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                    self.pos += 1;
                }
                continue;
            }
            if c == b'/' && self.at(p + 1) == b'*' {
                if !self.block_comment(p) {
                    return;
                }
                continue;
            }
            if c == b':' {
                self.blob(p);
                continue;
            }
            if self.delimited(p) {
                continue;
            }
            if let Some(&(pat, kind)) = FIXED2.iter().find(|(pat, _)| self.starts_with(p, *pat)) {
                self.push(kind, p, p + pat.len(), 0);
                self.pos = p + pat.len();
                continue;
            }
            if let Some(kind) = fixed1(c) {
                self.push(kind, p, p + 1, 0);
                self.pos = p + 1;
                continue;
            }
            if c.is_ascii_alphabetic() {
                let mut q = p + 1;
                while q < self.b.len()
                    && (self.b[q].is_ascii_alphanumeric() || self.b[q] == b'_' || self.b[q] == b'-')
                {
                    q += 1;
                }
                self.push(TokenKind::Ident, p, q, 0);
                self.pos = q;
                continue;
            }
            if c.is_ascii_digit() {
                self.number(p);
                continue;
            }
            let e = self.char_end(p);
            let shown = self.src.get(p..e).unwrap_or("?");
            let msg = if c == 0 {
                "Syntax error at NUL byte".to_string()
            } else {
                format!("Syntax error at '{}'", shown.escape_debug())
            };
            self.err(p, e, msg);
            self.pos = e;
        }
    }

    /// `/* ... */`; returns false when lexing cannot continue (unterminated).
    fn block_comment(&mut self, p: usize) -> bool {
        let mut q = p + 2;
        while q < self.b.len() {
            if self.b[q] == b'/' && self.at(q + 1) == b'*' {
                let before = &self.b[..p];
                let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
                let col = 1 + before.iter().rev().take_while(|&&c| c != b'\n').count();
                self.diags.push(
                    Diagnostic::error(self.span(q, q + 2), "/* ... */ comment contains /*")
                        .with_note(format!(
                        "(the comment starts at line {line}, column {col}; comments do not nest)"
                    )),
                );
                // Carry on as if this inner opener were plain text.
                q += 2;
                continue;
            }
            if self.b[q] == b'*' && self.at(q + 1) == b'/' {
                self.pos = q + 2;
                return true;
            }
            q += 1;
        }
        self.err(p, p + 2, "Unterminated /* ... */ comment, starting here");
        self.pos = self.b.len();
        false
    }

    /// Strings, long strings and C source. Returns true when a token (or error) was produced.
    fn delimited(&mut self, p: usize) -> bool {
        // (opening, closing, may contain newlines, name)
        const DEFS: [(&[u8], &[u8], bool, &str); 4] = [
            (b"\"\"\"", b"\"\"\"", true, "long-string"),
            (b"{\"", b"\"}", true, "long-string"),
            (b"\"", b"\"", false, "string"),
            (b"C{", b"}C", true, "inline C source"),
        ];
        let Some(&(open, close, multi, name)) = DEFS
            .iter()
            .find(|(open, _, _, _)| self.starts_with(p, open))
        else {
            return false;
        };
        let from = p + open.len();
        let mut end = self.find(from, close);
        if !multi {
            let nl = self.b[from..]
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .map(|x| x + from);
            if let (Some(n), Some(q)) = (nl, end) {
                if n < q {
                    end = None;
                }
            }
        }
        let Some(q) = end else {
            self.err(
                p,
                p + open.len(),
                format!("Unterminated {name}, starting here"),
            );
            if multi {
                self.pos = self.b.len();
            } else {
                // Skip the rest of the line and carry on.
                let mut r = from;
                while r < self.b.len() && self.b[r] != b'\n' {
                    r += 1;
                }
                self.pos = r;
            }
            return true;
        };
        let e = q + close.len();
        if name == "inline C source" {
            self.err(
                p,
                e,
                "Inline-C not allowed (C code is not supported by ringcache)",
            );
            self.push(TokenKind::CSrc, p, e, 0);
        } else {
            self.push(TokenKind::Str, p, e, open.len() as u8);
        }
        self.pos = e;
        true
    }

    /// `CNUM` or `FNUM`, with Varnish's digit limits (RFC 8941 numbers).
    fn number(&mut self, p: usize) {
        let mut q = p;
        while q < self.b.len() && self.b[q].is_ascii_digit() {
            q += 1;
        }
        if self.at(q) != b'.' {
            self.push(TokenKind::Int, p, q, 0);
            if q - p > 15 {
                self.err(p, q, "Too many digits for integer.");
            }
            self.pos = q;
            return;
        }
        let frac = q + 1;
        let mut r = frac;
        while r < self.b.len() && self.b[r].is_ascii_digit() {
            r += 1;
        }
        self.push(TokenKind::Real, p, r, 0);
        // As vcc_lex_number: at most 12 digits before the dot and 3 after it.
        if q - p > 12 || r - frac > 3 {
            self.err(p, r, "Too many digits for real.");
        }
        self.pos = r;
    }

    /// `:base64:`
    fn blob(&mut self, p: usize) {
        let mut q = p + 1;
        while q < self.b.len() && is_base64(self.b[q]) {
            q += 1;
        }
        let data_end = q;
        while q < self.b.len() && self.b[q] == b'=' {
            q += 1;
        }
        let pad = q - data_end;
        match self.at(q) {
            b':' => {
                let n = q - (p + 1);
                self.push(TokenKind::Blob, p, q + 1, 1);
                // The bits a padded quad leaves over must be zero (`venc_decode_base64`).
                let last = data_end.checked_sub(1).map_or(0, |i| self.at(i));
                let spare = match pad {
                    1 => base64_value(last) & 0x3,
                    2 => base64_value(last) & 0xf,
                    _ => 0,
                };
                if n % 4 != 0 {
                    self.err(p, q + 1, "BLOB must have n*4 base64 characters");
                } else if pad > 2 {
                    self.err(p, q + 1, "Wrong padding ('=') in BLOB");
                } else if spare != 0 {
                    self.err(data_end - 1, data_end, "Illegal BLOB character");
                }
                self.pos = q + 1;
            }
            _ if q >= self.b.len() => {
                self.err(p, q, "Missing colon at end of BLOB");
                self.pos = q;
            }
            _ => {
                let e = self.char_end(q);
                let msg = if pad > 0 {
                    "Wrong padding ('=') in BLOB"
                } else {
                    "Illegal BLOB character"
                };
                self.err(q, e, msg);
                self.pos = e;
            }
        }
    }
}

fn base64_value(c: u8) -> u32 {
    val(c).unwrap_or(0)
}

fn val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => (c - b'A') as u32,
        b'a'..=b'z' => (c - b'a') as u32 + 26,
        b'0'..=b'9' => (c - b'0') as u32 + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

/// Decodes the base64 text of a `Blob` token value (`:...:` without the colons).
pub fn decode_base64(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let Some(v) = val(c) else { break };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let (t, d) = lex(FileId(0), src);
        assert!(d.is_empty(), "{d:?}");
        t.iter().map(|t| t.kind).collect()
    }

    fn texts(src: &str) -> Vec<String> {
        let (t, _) = lex(FileId(0), src);
        t.iter().map(|t| t.text(src).to_string()).collect()
    }

    #[test]
    fn identifiers_dots_dashes() {
        assert_eq!(
            texts("req.http.X-Forwarded-For std.healthy"),
            [
                "req",
                ".",
                "http",
                ".",
                "X-Forwarded-For",
                "std",
                ".",
                "healthy",
                ""
            ]
        );
        assert_eq!(kinds("a_b-c9"), [Ident, Eof]);
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(
            texts("10ms 1.5m 4.1;"),
            ["10", "ms", "1.5", "m", "4.1", ";", ""]
        );
        assert_eq!(kinds("1."), [Real, Eof]);
        let (_, d) = lex(FileId(0), "1234567890123456");
        assert_eq!(d[0].message, "Too many digits for integer.");
        let (_, d) = lex(FileId(0), "1.2345");
        assert_eq!(d[0].message, "Too many digits for real.");
    }

    #[test]
    fn operators_longest_first() {
        assert_eq!(
            kinds("== != <= >= !~ && || += -= *= /= = < > ~ ! + - * / % ++ -- << >> & |"),
            [
                Eq, Ne, Le, Ge, NoMatch, And, Or, AddAssign, SubAssign, MulAssign, DivAssign,
                Assign, Lt, Gt, Match, Not, Plus, Minus, Star, Slash, Percent, Inc, Dec, Shl, Shr,
                Amp, Pipe, Eof
            ]
        );
    }

    #[test]
    fn strings() {
        let src = "\"a\\b\" {\"x\ny\"} \"\"\"q\"r\"\"\" \"\"";
        let (t, d) = lex(FileId(0), src);
        assert!(d.is_empty());
        let v: Vec<&str> = t.iter().take(4).map(|t| t.str_value(src)).collect();
        assert_eq!(v, ["a\\b", "x\ny", "q\"r", ""]);
    }

    #[test]
    fn string_errors() {
        let (_, d) = lex(FileId(0), "x = \"abc\n\"");
        assert_eq!(d[0].message, "Unterminated string, starting here");
        assert_eq!((d[0].span.start, d[0].span.end), (4, 5));
        let (_, d) = lex(FileId(0), "{\"abc");
        assert_eq!(d[0].message, "Unterminated long-string, starting here");
        let (_, d) = lex(FileId(0), "a /* b");
        assert_eq!(
            d[0].message,
            "Unterminated /* ... */ comment, starting here"
        );
        let (_, d) = lex(FileId(0), "/* a /* b */");
        assert_eq!(d[0].message, "/* ... */ comment contains /*");
        assert_eq!(d[0].span.start, 5);
    }

    #[test]
    fn comments_skipped() {
        assert_eq!(kinds("# x\n// y\n/* z\n */ a"), [Ident, Eof]);
    }

    #[test]
    fn c_source_refused() {
        let (t, d) = lex(FileId(0), "C{ int x; }C");
        assert_eq!(t[0].kind, CSrc);
        assert!(d[0].message.contains("C code is not supported"));
    }

    #[test]
    fn blobs() {
        let src = ":AAEC:";
        let (t, d) = lex(FileId(0), src);
        assert!(d.is_empty());
        assert_eq!(t[0].kind, Blob);
        assert_eq!(decode_base64(t[0].str_value(src)), [0, 1, 2]);
        let (_, d) = lex(FileId(0), ":AAE:");
        assert_eq!(d[0].message, "BLOB must have n*4 base64 characters");
        let (_, d) = lex(FileId(0), ":AA*A:");
        assert_eq!(d[0].message, "Illegal BLOB character");
        let (_, d) = lex(FileId(0), ":AB==:");
        assert_eq!(d[0].message, "Illegal BLOB character");
        let (_, d) = lex(FileId(0), ":AA==:");
        assert!(d.is_empty());
    }

    #[test]
    fn bad_bytes_and_eof_position() {
        let (t, d) = lex(FileId(0), "a @ é b # c\n\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].message, "Syntax error at '@'");
        assert_eq!((d[1].span.start, d[1].span.end), (4, 6));
        let eof = t.last().unwrap();
        assert_eq!((eof.kind, eof.span.start), (Eof, 8));
    }
}
