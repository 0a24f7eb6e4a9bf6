//! The VCL parser: tokens to [`ast::Vcl`](super::ast::Vcl), resolving `include`.
//!
//! Why a hand-written recursive-descent parser that follows `vcc_parse.c`/`vcc_expr.c` rule for
//! rule: the goal is to accept exactly the VCL varnishd 7.1 accepts and to fail where it fails,
//! with its wording. Notable consequences of mirroring Varnish (see `ast.rs` for the tree):
//!
//! * expression precedence, loosest first: `||`, `&&`, prefix `!` (one, applied to a whole
//!   comparison: `!client.ip ~ purge` is `!(client.ip ~ purge)`), one non-associative comparison
//!   (`== != < > <= >=`, or `~ !~` whose right side is a single postfix term or a regex literal
//!   made of string constants joined by `+`), `+ -`, `* / %`, postfix `.attr`/`.method()`,
//!   primaries;
//! * `-` directly before a number is part of the literal; before anything else it negates the
//!   whole expression that follows (`-a + b` is `-(a + b)`, as `vcc_expr5` does);
//! * adjacent string literals do not concatenate in expressions (only in a field's string list,
//!   `.request = "a" "b";`);
//! * `.probe = { ... }` takes no `;` after the `}` (varnishd rejects one);
//! * a backend/probe field's value is one token (string, number with unit, name, BLOB), as in
//!   `vcc_backend.c`, not an expression;
//! * `include "file";` is replaced by the file's tokens before parsing, as `vcc_source.c` does,
//!   so it works wherever a token may stand (top level, subroutine body, ACL, backend); a relative
//!   path is tried against the including file's directory, then the working directory (varnishd
//!   searches `vcl_path`); `+glob` is supported; `include` right after a `.` is a name
//!   (`req.http.include`), where varnishd would take it as a directive;
//! * `call` takes a subroutine name or any postfix expression (`call obj.method();`, Varnish 7).
//!
//! Syntax only: names, types and which subroutine may do what are the checker's job.
//!
//! Error handling: every error is recorded; the parser then skips to the end of the statement
//! (`;` or the closing `}`) or of the top-level item and carries on, so one run reports the
//! independent mistakes of a file. Nesting (blocks, expressions, inline probes) is bounded by
//! [`MAX_DEPTH`], includes by [`MAX_INCLUDE_DEPTH`], so no input can overflow the stack; no
//! indexing or `unwrap` can fail on any input.

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use super::ast::*;
use super::diag::{Diagnostic, FileId, SourceMap, Span, MAX_FILE_LEN};
use super::lexer::{decode_base64, lex, Token, TokenKind as T};

/// Deepest nesting of blocks plus expressions accepted.
pub const MAX_DEPTH: u32 = 200;
/// Deepest chain of `include`s accepted.
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// The parser gives up after this many errors.
pub const MAX_ERRORS: usize = 100;

/// Words that start a top-level item (`include` never reaches the parser: it is expanded first).
const ITEM_KEYWORDS: [&str; 6] = ["acl", "sub", "backend", "probe", "import", "vcl"];

type PResult<T> = Result<T, ()>;

/// Stack of the thread [`parse`] runs on: [`MAX_DEPTH`] levels take at most ~2 MiB even in an
/// unoptimised build (about 0.6 MiB optimised), whatever thread the caller is on.
const PARSE_STACK: usize = 16 << 20;

/// Parses the file `file` of `map` (already added), reading included files into `map`.
///
/// Runs on a short-lived thread with a known stack ([`PARSE_STACK`]), so the depth bound holds
/// on any caller's thread (test threads have 2 MiB); if that thread cannot be created it runs
/// on the caller's.
pub fn parse(map: &mut SourceMap, file: FileId) -> Result<Vcl, Vec<Diagnostic>> {
    parse_on_thread(map, file, true)
}

fn parse_on_thread(
    map: &mut SourceMap,
    file: FileId,
    read_includes: bool,
) -> Result<Vcl, Vec<Diagnostic>> {
    let r = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("vcl-parse".to_string())
            .stack_size(PARSE_STACK)
            .spawn_scoped(s, || parse_here(map, file, read_includes))
            .ok()?;
        Some(h.join())
    });
    match r {
        Some(Ok(v)) => v,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => parse_here(map, file, read_includes),
    }
}

fn parse_here(
    map: &mut SourceMap,
    file: FileId,
    read_includes: bool,
) -> Result<Vcl, Vec<Diagnostic>> {
    let mut stack = Vec::new();
    if let Some(p) = map.file(file).and_then(|f| f.path.as_ref()) {
        stack.push(canonical(p));
    }
    let mut ex = Expander {
        map,
        diags: Vec::new(),
        includes: Vec::new(),
        stack,
        read_includes,
    };
    let mut toks = Vec::new();
    ex.expand(file, &mut toks);
    let Expander {
        map,
        diags,
        includes,
        ..
    } = ex;
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    let end = toks.last().map_or(Span::new(file, 0, 0), |t| {
        Span::new(t.span.file, t.span.end, t.span.end)
    });
    toks.push(Token {
        kind: T::Eof,
        span: end,
        delim: 0,
    });
    let mut p = Parser {
        map,
        toks,
        pos: 0,
        last: Span::new(file, 0, 0),
        diags,
        includes,
        depth: 0,
        abort: false,
        eof_reported: false,
        top: VclVersion::V41,
    };
    let top = p.top_level();
    match top {
        Some((version, items)) if !p.diags.iter().any(Diagnostic::is_error) => Ok(Vcl {
            version,
            items,
            includes: p.includes,
            warnings: p.diags,
        }),
        _ => Err(p.diags),
    }
}

/// Reads and parses a VCL file; included files are added to the returned map.
pub fn parse_file(path: impl AsRef<FsPath>) -> (SourceMap, Result<Vcl, Vec<Diagnostic>>) {
    let path = path.as_ref();
    let name = path.display().to_string();
    let mut map = SourceMap::new();
    match read_source(path) {
        Ok(bytes) => {
            let id = map.add_bytes(&name, Some(path.to_path_buf()), &bytes);
            let r = parse(&mut map, id);
            (map, r)
        }
        Err(reason) => {
            let id = map.add(&name, Some(path.to_path_buf()), String::new());
            let d = Diagnostic::error(
                Span::new(id, 0, 0),
                format!("Cannot read file '{name}' ({reason})"),
            );
            (map, Err(vec![d]))
        }
    }
}

/// Parses VCL text held in memory; `name` is used in messages. Includes are resolved relative to
/// the working directory.
pub fn parse_str(name: &str, text: &str) -> (SourceMap, Result<Vcl, Vec<Diagnostic>>) {
    let mut map = SourceMap::new();
    let id = map.add(name, None, text.to_string());
    let r = parse(&mut map, id);
    (map, r)
}

/// Like [`parse`], but `include` never reads the filesystem: every included file is reported
/// missing (`Cannot read file ... (No such file or directory)`, or `glob pattern matched no
/// files.`). For untrusted text, such as the fuzz target's input
/// (`tests/fuzz/fuzz_targets/vcl_compile.rs`).
pub fn parse_without_includes(map: &mut SourceMap, file: FileId) -> Result<Vcl, Vec<Diagnostic>> {
    parse_on_thread(map, file, false)
}

/// The bytes of a regular file of at most [`MAX_FILE_LEN`] bytes; errors are strerror-like.
fn read_source(path: &FsPath) -> Result<Vec<u8>, String> {
    let md = fs::metadata(path).map_err(|e| io_reason(&e))?;
    if !md.is_file() {
        return Err("Not a regular file".to_string());
    }
    if md.len() > MAX_FILE_LEN as u64 {
        return Err("File too large".to_string());
    }
    fs::read(path).map_err(|e| io_reason(&e))
}

fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Warnings for invalid UTF-8 inside string literals (each replaced by U+FFFD), one per string.
/// In comments it is silently fine, as in Varnish; elsewhere the lexer refuses the character.
fn invalid_utf8_warnings(map: &SourceMap, file: FileId, toks: &[Token]) -> Vec<Diagnostic> {
    let Some(f) = map.file(file) else {
        return Vec::new();
    };
    let mut out: Vec<Diagnostic> = Vec::new();
    for &off in &f.invalid_utf8 {
        let Some(t) = toks
            .iter()
            .find(|t| t.kind == T::Str && t.span.start <= off && off < t.span.end)
        else {
            continue;
        };
        if out.last().is_some_and(|d| d.span.end == t.span.end) {
            continue;
        }
        out.push(Diagnostic::warning(
            Span::new(file, off, t.span.end),
            "Invalid UTF-8 in string (replaced by U+FFFD)",
        ));
    }
    out
}

/// The regular files matching a glob pattern (`*`, `?` and `[...]` in any component; a leading
/// `.` is matched only explicitly), sorted. Bounded: at most 10,000 directory entries looked at.
fn glob_files(pattern: &FsPath) -> Vec<PathBuf> {
    use std::path::Component;
    let mut bases: Vec<PathBuf> = vec![PathBuf::new()];
    let mut budget = 10_000usize;
    for comp in pattern.components() {
        let part = match comp {
            Component::Normal(p) => p.to_string_lossy().into_owned(),
            other => {
                for b in &mut bases {
                    b.push(other.as_os_str());
                }
                continue;
            }
        };
        if !part.contains(['*', '?', '[']) {
            for b in &mut bases {
                b.push(&part);
            }
            continue;
        }
        let mut next = Vec::new();
        for b in &bases {
            let dir = if b.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                b.clone()
            };
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                let name = e.file_name().to_string_lossy().into_owned();
                if wildcard_match(part.as_bytes(), name.as_bytes()) {
                    next.push(b.join(&name));
                }
            }
        }
        bases = next;
    }
    let mut files: Vec<PathBuf> = bases.into_iter().filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// fnmatch(3)-style matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
fn wildcard_match(pat: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pat.first() != Some(&b'.') {
        return false;
    }
    // Iterative matcher with backtracking to the last `*`.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class_match(pat, p, name[n]),
            Some(&c) if c == name[n] => Some(p + 1),
            _ => None,
        };
        match step {
            Some(np) => {
                p = np;
                n += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[at] == b'['`; returns the index after `]`.
fn class_match(pat: &[u8], at: usize, c: u8) -> Option<usize> {
    let mut i = at + 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &x = pat.get(i)?;
        if x == b']' && !first {
            break;
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&y| y != b']') {
            let y = pat[i + 2];
            if x <= c && c <= y {
                matched = true;
            }
            i += 3;
        } else {
            if x == c {
                matched = true;
            }
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

fn canonical(p: &FsPath) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
/// Prefix `!`: between `&&` and the comparisons.
const PREC_NOT: u8 = 3;
const PREC_CMP: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
/// A primary or postfix term.
const PREC_ATOM: u8 = 10;

/// Binary operators and their precedence, loosest first: `||`, `&&`, (`!`), comparisons and
/// matches, `+ -`, `* / %` (`vcc_expr_cor` ... `vcc_expr_mul`).
fn bin_op(k: T) -> Option<(BinOp, u8)> {
    Some(match k {
        T::Or => (BinOp::Or, PREC_OR),
        T::And => (BinOp::And, PREC_AND),
        T::Eq => (BinOp::Eq, PREC_CMP),
        T::Ne => (BinOp::Ne, PREC_CMP),
        T::Lt => (BinOp::Lt, PREC_CMP),
        T::Gt => (BinOp::Gt, PREC_CMP),
        T::Le => (BinOp::Le, PREC_CMP),
        T::Ge => (BinOp::Ge, PREC_CMP),
        T::Match => (BinOp::Match, PREC_CMP),
        T::NoMatch => (BinOp::NoMatch, PREC_CMP),
        T::Plus => (BinOp::Add, PREC_ADD),
        T::Minus => (BinOp::Sub, PREC_ADD),
        T::Star => (BinOp::Mul, PREC_MUL),
        T::Slash => (BinOp::Div, PREC_MUL),
        T::Percent => (BinOp::Rem, PREC_MUL),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// include: token-level splicing, as `vcc_source.c` does it

/// Lexes a file and splices, in place of each `include "path";`, the tokens of the file it names
/// (recursively), as `vcc_lex_source` does: so an include works wherever a token may stand (top
/// level, a subroutine body, an ACL, a backend), and every token keeps its own file in its span.
/// Errors (unreadable file, recursion, lexing) are collected; the parser does not run if there
/// are any.
struct Expander<'m> {
    map: &'m mut SourceMap,
    diags: Vec<Diagnostic>,
    includes: Vec<IncludedFile>,
    /// Canonical paths of the files being expanded (the include chain).
    stack: Vec<PathBuf>,
    /// `false`: every include is a missing file ([`parse_without_includes`]).
    read_includes: bool,
}

impl Expander<'_> {
    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    /// Appends the tokens of `file` (its includes expanded, without its `Eof`) to `out`.
    fn expand(&mut self, file: FileId, out: &mut Vec<Token>) {
        let text = self.map.text(file).to_string();
        let (toks, lex_diags) = lex(file, &text);
        let warnings = invalid_utf8_warnings(self.map, file, &toks);
        self.diags.extend(warnings);
        if !lex_diags.is_empty() {
            self.diags.extend(lex_diags);
            return;
        }
        let mut i = 0;
        while let Some(&t) = toks.get(i) {
            if t.kind == T::Eof {
                break;
            }
            // `include` after a dot is a name component (`req.http.include`), not a directive.
            let after_dot = i > 0 && toks.get(i - 1).is_some_and(|p| p.kind == T::Dot);
            if t.kind == T::Ident && t.text(&text) == "include" && !after_dot {
                i = self.directive(file, &text, &toks, i, out);
            } else {
                out.push(t);
                i += 1;
            }
        }
    }

    /// `include ["+glob"] "path";` at `toks[i]`: splices the file(s); returns the index after.
    fn directive(
        &mut self,
        file: FileId,
        text: &str,
        toks: &[Token],
        i: usize,
        out: &mut Vec<Token>,
    ) -> usize {
        let eof = toks.last().copied().unwrap_or(Token {
            kind: T::Eof,
            span: Span::new(file, 0, 0),
            delim: 0,
        });
        let tok = |j: usize| toks.get(j).copied().unwrap_or(eof);
        let kw = tok(i);
        let mut j = i + 1;
        let mut glob = false;
        while matches!(tok(j).kind, T::Plus | T::Minus) {
            let (sign, f) = (tok(j), tok(j + 1));
            if f.kind != T::Ident || f.span.start != sign.span.end {
                self.error(sign.span, "Expected a flag after '+' or '-'");
                return j + 1;
            }
            if f.text(text) != "glob" {
                self.error(f.span, "Unknown include flag");
                return j + 2;
            }
            glob = sign.kind == T::Plus;
            j += 2;
        }
        let s = tok(j);
        if s.kind != T::Str {
            self.error(s.span, "include not followed by string constant.");
            return j;
        }
        let semi = tok(j + 1);
        if semi.kind != T::Semi {
            self.error(semi.span, "include <string> not followed by semicolon.");
            return j + 1;
        }
        let lit = StrLit {
            value: s.str_value(text).to_string(),
            long: s.delim > 1,
            span: s.span,
        };
        let at = kw.span.to(semi.span);
        if let Some(targets) = self.targets(file, &lit, glob) {
            for found in targets {
                self.include_file(found, &lit, at, out);
            }
        }
        j + 2
    }

    /// The files an include names: one path, or with `+glob` every match of the pattern
    /// (sorted, as glob(3) returns them). A relative path is looked for in the including file's
    /// directory, then in the working directory.
    fn targets(&mut self, file: FileId, lit: &StrLit, glob: bool) -> Option<Vec<PathBuf>> {
        let written = lit.value.as_str();
        let wp = PathBuf::from(written);
        let mut candidates = Vec::new();
        if !wp.is_absolute() {
            let dir = self
                .map
                .file(file)
                .and_then(|f| f.path.as_ref())
                .and_then(|p| p.parent());
            if let Some(dir) = dir {
                if !dir.as_os_str().is_empty() {
                    candidates.push(dir.join(&wp));
                }
            }
        }
        candidates.push(wp);
        if !self.read_includes {
            candidates.clear();
        }
        if glob {
            if let Some(found) = candidates
                .iter()
                .map(|c| glob_files(c))
                .find(|f| !f.is_empty())
            {
                return Some(found);
            }
            self.error(lit.span, "glob pattern matched no files.");
            return None;
        }
        match candidates
            .into_iter()
            .find(|c| !written.is_empty() && fs::metadata(c).is_ok())
        {
            Some(found) => Some(vec![found]),
            None => {
                self.error(
                    lit.span,
                    format!("Cannot read file '{written}' (No such file or directory)"),
                );
                None
            }
        }
    }

    fn include_file(&mut self, found: PathBuf, lit: &StrLit, at: Span, out: &mut Vec<Token>) {
        let written = lit.value.as_str();
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            self.error(lit.span, "include nested too deeply");
            return;
        }
        let canon = canonical(&found);
        if self.stack.contains(&canon) {
            let mut chain: Vec<String> =
                self.stack.iter().map(|p| p.display().to_string()).collect();
            chain.push(canon.display().to_string());
            self.diags.push(
                Diagnostic::error(lit.span, format!("Recursive use of file \"{written}\""))
                    .with_note(format!("include chain: {}", chain.join(" -> "))),
            );
            return;
        }
        let bytes = match read_source(&found) {
            Ok(b) => b,
            Err(reason) => {
                self.error(lit.span, format!("Cannot read file '{written}' ({reason})"));
                return;
            }
        };
        let name = found.display().to_string();
        let file = self.map.add_bytes(&name, Some(found), &bytes);
        self.includes.push(IncludedFile {
            file,
            written: written.to_string(),
            at,
            version: None,
        });
        self.stack.push(canon);
        self.expand(file, out);
        self.stack.pop();
    }
}

struct Parser<'m> {
    map: &'m SourceMap,
    /// All tokens, includes spliced in, ending with one `Eof`.
    toks: Vec<Token>,
    pos: usize,
    /// Span of the last consumed token.
    last: Span,
    diags: Vec<Diagnostic>,
    includes: Vec<IncludedFile>,
    depth: u32,
    abort: bool,
    /// "End of input while in compound statement" was reported; outer blocks stay quiet.
    eof_reported: bool,
    top: VclVersion,
}

impl Parser<'_> {
    // ------------------------------------------------------------------ tokens

    fn peek(&self) -> Token {
        self.peek_n(0)
    }

    fn peek_n(&self, n: usize) -> Token {
        match self.toks.get(self.pos + n).or(self.toks.last()) {
            Some(t) => *t,
            None => Token {
                kind: T::Eof,
                span: self.last,
                delim: 0,
            },
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if t.kind != T::Eof {
            self.pos += 1;
        }
        self.last = t.span;
        t
    }

    fn at(&self, k: T) -> bool {
        self.peek().kind == k
    }

    fn text(&self, t: Token) -> &str {
        t.text(self.map.text(t.span.file))
    }

    fn is_ident(&self, t: Token, name: &str) -> bool {
        t.kind == T::Ident && self.text(t) == name
    }

    fn at_ident(&self, name: &str) -> bool {
        self.is_ident(self.peek(), name)
    }

    fn eat(&mut self, k: T) -> Option<Token> {
        if self.at(k) {
            Some(self.bump())
        } else {
            None
        }
    }

    /// The span from `start` to the end of the last consumed token.
    fn since(&self, start: Span) -> Span {
        start.to(self.last)
    }

    /// A token as Varnish names it in messages: `'text'`, `end of input`, `C{ ... }C`.
    fn describe(&self, t: Token) -> String {
        match t.kind {
            T::Eof => "end of input".to_string(),
            T::CSrc => "C{ ... }C".to_string(),
            _ => {
                let s = self.text(t);
                let line = s.lines().next().unwrap_or("");
                let mut shown: String = line.chars().take(40).collect();
                if shown.len() < s.len() {
                    shown.push_str("...");
                }
                format!("'{shown}'")
            }
        }
    }

    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.push_diag(Diagnostic::error(span, msg));
    }

    fn push_diag(&mut self, d: Diagnostic) {
        self.diags.push(d);
        if self.diags.iter().filter(|d| d.is_error()).count() >= MAX_ERRORS {
            self.abort = true;
        }
    }

    /// "Expected X got Y" at the current token.
    fn expected(&mut self, what: &str) {
        let t = self.peek();
        let msg = format!("Expected {what} got {}", self.describe(t));
        self.error(t.span, msg);
    }

    fn expect(&mut self, k: T) -> PResult<Token> {
        if self.at(k) {
            Ok(self.bump())
        } else {
            self.expected(k.describe());
            Err(())
        }
    }

    fn ident(&mut self) -> PResult<Ident> {
        let t = self.expect(T::Ident)?;
        Ok(Ident {
            name: self.text(t).to_string(),
            span: t.span,
        })
    }

    /// A definition's name (Varnish's `vcc_ExpectVid`): an identifier not followed by a dot.
    fn name(&mut self, what: &str) -> PResult<Ident> {
        let id = self.ident()?;
        if self.at(T::Dot) {
            let mut end = id.span;
            let mut shown = id.name.clone();
            while self.at(T::Dot) {
                let d = self.bump();
                shown.push('.');
                end = d.span;
                if !self.at(T::Ident) {
                    break;
                }
                let t = self.bump();
                shown.push_str(self.text(t));
                end = t.span;
            }
            self.error(
                id.span.to(end),
                format!("Name of {what}, '{shown}', contains illegal character '.'"),
            );
            return Err(());
        }
        Ok(id)
    }

    fn str_lit(&self, t: Token) -> StrLit {
        StrLit {
            value: t.str_value(self.map.text(t.span.file)).to_string(),
            long: t.delim > 1,
            span: t.span,
        }
    }

    fn enter(&mut self, span: Span, what: &str) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            self.error(span, format!("{what} nested too deeply"));
            self.abort = true;
            return Err(());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ------------------------------------------------------------------ top level

    fn top_level(&mut self) -> Option<(VersionDecl, Vec<Item>)> {
        let t = self.peek();
        if !self.is_ident(t, "vcl") {
            self.push_diag(
                Diagnostic::error(t.span, "VCL version declaration missing")
                    .with_note("Update your VCL to Version 4 syntax, and add")
                    .with_note("\tvcl 4.1;")
                    .with_note("on the first line of the VCL files."),
            );
            return None;
        }
        let version = self.version_decl(false).ok()?;
        self.top = version.version;
        let mut items = Vec::new();
        self.items_until_eof(&mut items);
        Some((version, items))
    }

    /// `vcl N.N;` — the first one sets the program's version; later ones (in included files)
    /// may not be higher.
    fn version_decl(&mut self, nested: bool) -> PResult<VersionDecl> {
        let kw = self.bump();
        let n = self.peek();
        if n.kind != T::Real {
            self.expected("a VCL version number (4.0 or 4.1)");
            return Err(());
        }
        self.bump();
        let txt = self.text(n).as_bytes();
        let (major, minor) = match txt {
            [a, b'.', b] => (a - b'0', b - b'0'),
            _ => {
                self.error(n.span, "Don't play silly buggers with VCL version numbers");
                return Err(());
            }
        };
        let span = kw.span.to(n.span);
        let version = match (major, minor) {
            (4, 0) => VclVersion::V40,
            (4, 1) => VclVersion::V41,
            _ => {
                self.error(span, format!("VCL version {major}.{minor} not supported."));
                return Err(());
            }
        };
        if !self.at(T::Semi) {
            self.error(span, "Expected 'vcl N.N;' found no semi-colon");
            return Err(());
        }
        self.bump();
        if nested && version > self.top {
            self.error(
                span,
                format!(
                    "VCL version {} higher than the top level version {}",
                    version.as_str(),
                    self.top.as_str()
                ),
            );
            return Err(());
        }
        Ok(VersionDecl { version, span })
    }

    fn items_until_eof(&mut self, items: &mut Vec<Item>) {
        while !self.abort && !self.at(T::Eof) {
            let start = self.pos;
            if self.item(items).is_err() {
                if self.abort {
                    return;
                }
                self.sync_item(start);
            }
        }
    }

    fn item(&mut self, items: &mut Vec<Item>) -> PResult<()> {
        let t = self.peek();
        let kw = if t.kind == T::Ident { self.text(t) } else { "" };
        match kw {
            "acl" => items.push(Item::Acl(self.acl()?)),
            "sub" => items.push(Item::Sub(self.sub()?)),
            "backend" => items.push(Item::Backend(self.backend()?)),
            "probe" => items.push(Item::Probe(self.probe()?)),
            "import" => items.push(Item::Import(self.import()?)),
            "vcl" => {
                let v = self.version_decl(true)?;
                let file = v.span.file;
                if let Some(inc) = self.includes.iter_mut().find(|i| i.file == file) {
                    inc.version.get_or_insert(v);
                }
            }
            _ => {
                let msg = format!(
                    "Expected one of 'acl', 'sub', 'backend', 'probe', 'import', 'include' or \
                     'vcl', found {}",
                    self.describe(t)
                );
                self.error(t.span, msg);
                return Err(());
            }
        }
        Ok(())
    }

    /// After an error in a top-level item: skip to its end (the `}` closing its body or a `;`
    /// outside braces) or to the next item keyword outside braces.
    fn sync_item(&mut self, start: usize) {
        let mut depth: i32 = 0;
        for t in self.toks.get(start..self.pos).unwrap_or(&[]) {
            match t.kind {
                T::LBrace => depth += 1,
                T::RBrace => depth -= 1,
                _ => {}
            }
        }
        depth = depth.max(0);
        if self.pos == start {
            let t = self.bump();
            match t.kind {
                T::LBrace => depth += 1,
                T::Semi | T::RBrace if depth == 0 => return,
                _ => {}
            }
        }
        loop {
            let t = self.peek();
            match t.kind {
                T::Eof => return,
                T::LBrace => {
                    depth += 1;
                    self.bump();
                }
                T::RBrace => {
                    self.bump();
                    depth -= 1;
                    if depth <= 0 {
                        return;
                    }
                }
                T::Semi if depth == 0 => {
                    self.bump();
                    return;
                }
                T::Ident if depth == 0 && ITEM_KEYWORDS.contains(&self.text(t)) => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    // ------------------------------------------------------------------ items

    fn import(&mut self) -> PResult<Import> {
        let kw = self.bump();
        let module = self.name("VMOD")?;
        let mut alias = None;
        if self.at_ident("as") {
            self.bump();
            alias = Some(self.name("VMOD")?);
        }
        let mut from = None;
        if self.at(T::Ident) {
            if !self.at_ident("from") {
                let t = self.peek();
                self.error(t.span, "Expected 'from path ...'");
                return Err(());
            }
            self.bump();
            let s = self.expect(T::Str)?;
            from = Some(self.str_lit(s));
        }
        self.expect(T::Semi)?;
        Ok(Import {
            module,
            alias,
            from,
            span: self.since(kw.span),
        })
    }

    fn sub(&mut self) -> PResult<Sub> {
        let kw = self.bump();
        let name = self.name("subroutine")?;
        let body = self.block()?;
        Ok(Sub {
            name,
            body,
            span: self.since(kw.span),
        })
    }

    fn backend(&mut self) -> PResult<Backend> {
        let kw = self.bump();
        let name = self.name("backend")?;
        if self.at_ident("none") || self.at_ident("None") {
            let n = self.bump();
            self.expect(T::Semi)?;
            return Ok(Backend {
                name,
                def: BackendDef::None(n.span),
                span: self.since(kw.span),
            });
        }
        if !self.at(T::LBrace) {
            self.expected("'{' or 'none'");
            return Err(());
        }
        if self.is_ident(self.peek_n(1), "set") {
            let t = self.peek_n(1);
            self.push_diag(
                Diagnostic::error(t.span, "NB: Backend Syntax has changed:")
                    .with_note("Remove \"set\" and \"backend\" in front of backend fields."),
            );
            return Err(());
        }
        let (fields, _) = self.fields_block()?;
        Ok(Backend {
            name,
            def: BackendDef::Fields(fields),
            span: self.since(kw.span),
        })
    }

    fn probe(&mut self) -> PResult<Probe> {
        let kw = self.bump();
        let name = self.name("backend probe")?;
        let (fields, _) = self.fields_block()?;
        Ok(Probe {
            name,
            fields,
            span: self.since(kw.span),
        })
    }

    /// `{ .name = value; ... }`
    fn fields_block(&mut self) -> PResult<(Vec<Field>, Span)> {
        let lb = self.expect(T::LBrace)?;
        self.enter(lb.span, "definition")?;
        let r = self.fields_body();
        self.leave();
        let fields = r?;
        Ok((fields, self.since(lb.span)))
    }

    fn fields_body(&mut self) -> PResult<Vec<Field>> {
        let mut fields = Vec::new();
        loop {
            if self.eat(T::RBrace).is_some() {
                return Ok(fields);
            }
            fields.push(self.field()?);
        }
    }

    fn field(&mut self) -> PResult<Field> {
        let dot = self.expect(T::Dot)?;
        let name = self.ident()?;
        self.expect(T::Assign)?;
        let value = if name.name == "probe" && self.at(T::LBrace) {
            let (fields, span) = self.fields_block()?;
            return Ok(Field {
                name,
                value: FieldValue::Probe { fields, span },
                span: self.since(dot.span),
            });
        } else if self.at(T::Str) && self.peek_n(1).kind == T::Str {
            let mut list = Vec::new();
            while self.at(T::Str) {
                let t = self.bump();
                list.push(self.str_lit(t));
            }
            FieldValue::Strings(list)
        } else {
            FieldValue::Expr(self.field_value()?)
        };
        self.expect(T::Semi)?;
        Ok(Field {
            name,
            value,
            span: self.since(dot.span),
        })
    }

    /// A field's value is one token, as in `vcc_backend.c`: a string, a number (with its unit),
    /// a name (a probe, a backend for `.via`, `true`/`false`) or a BLOB. Not an expression: a
    /// missing `;` must not make the next `.field` look like an attribute of this value.
    fn field_value(&mut self) -> PResult<Expr> {
        match self.peek().kind {
            T::Str | T::Blob => Ok(self.literal()),
            T::Int | T::Real => self.number(None),
            T::Minus if matches!(self.peek_n(1).kind, T::Int | T::Real) => {
                let m = self.bump();
                self.number(Some(m.span))
            }
            T::Ident => {
                let id = self.ident()?;
                let kind = match id.name.as_str() {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    _ => ExprKind::Path(Path {
                        parts: vec![PathPart {
                            name: id.name,
                            quoted: false,
                            span: id.span,
                        }],
                        span: id.span,
                    }),
                };
                Ok(Expr {
                    kind,
                    span: id.span,
                })
            }
            _ => {
                self.expected("a value (string, number, duration, name or BLOB)");
                Err(())
            }
        }
    }

    fn acl(&mut self) -> PResult<Acl> {
        let kw = self.bump();
        let name = self.name("ACL")?;
        let mut flags = Vec::new();
        while self.at(T::Plus) || self.at(T::Minus) {
            let sign = self.bump();
            let f = self.peek();
            if f.kind != T::Ident || f.span.start != sign.span.end {
                self.error(sign.span, "Expected a flag after '+' or '-'");
                return Err(());
            }
            self.bump();
            let fname = self.text(f).to_string();
            if !matches!(fname.as_str(), "log" | "pedantic" | "table") {
                self.push_diag(
                    Diagnostic::error(f.span, format!("Unknown ACL flag '{fname}'"))
                        .with_note("Valid ACL flags are `log`, `pedantic` and `table`"),
                );
                return Err(());
            }
            flags.push(AclFlag {
                name: Ident {
                    name: fname,
                    span: f.span,
                },
                on: sign.kind == T::Plus,
                span: sign.span.to(f.span),
            });
        }
        self.expect(T::LBrace)?;
        let mut entries = Vec::new();
        while self.eat(T::RBrace).is_none() {
            entries.push(self.acl_entry()?);
            self.expect(T::Semi)?;
        }
        Ok(Acl {
            name,
            flags,
            entries,
            span: self.since(kw.span),
        })
    }

    fn acl_entry(&mut self) -> PResult<AclEntry> {
        let start = self.peek().span;
        let mut negated = self.eat(T::Not).is_some();
        let optional = self.eat(T::LParen).is_some();
        if !negated && self.eat(T::Not).is_some() {
            negated = true;
        }
        let s = self.expect(T::Str)?;
        let value = s.str_value(self.map.text(s.span.file)).to_string();
        let (addr, mut mask, mut mask_span) = match value.split_once('/') {
            Some((a, m)) => {
                let m = m.trim_start();
                let digits = m.bytes().take_while(u8::is_ascii_digit).count();
                if digits != m.len() {
                    self.error(s.span, ".../mask is not numeric.");
                    return Err(());
                }
                (
                    a.to_string(),
                    Some(self.mask_value(m, s.span)?),
                    Some(s.span),
                )
            }
            None => (value, None, None),
        };
        if self.at(T::Slash) {
            let sl = self.bump();
            if mask.is_some() {
                self.error(sl.span, "/mask only allowed once.");
                return Err(());
            }
            let m = self.expect(T::Int)?;
            let txt = self.text(m).to_string();
            mask = Some(self.mask_value(&txt, m.span)?);
            mask_span = Some(m.span);
        }
        if optional {
            self.expect(T::RParen)?;
        }
        Ok(AclEntry {
            negated,
            optional,
            addr,
            addr_span: s.span,
            mask,
            mask_span,
            span: self.since(start),
        })
    }

    fn mask_value(&mut self, digits: &str, span: Span) -> PResult<u8> {
        // strtoul("") is 0 in Varnish: "10.0.0.0/" means /0.
        let v: u64 = if digits.is_empty() {
            0
        } else {
            digits.parse().unwrap_or(u64::MAX)
        };
        match u8::try_from(v) {
            Ok(m) => Ok(m),
            Err(_) => {
                self.error(span, format!("Too wide mask (/{digits}) for an IP address"));
                Err(())
            }
        }
    }

    // ------------------------------------------------------------------ include

    // ------------------------------------------------------------------ statements

    fn block(&mut self) -> PResult<Block> {
        let lb = self.expect(T::LBrace)?;
        self.enter(lb.span, "block")?;
        let r = self.block_body(lb);
        self.leave();
        r
    }

    fn block_body(&mut self, lb: Token) -> PResult<Block> {
        let mut stmts = Vec::new();
        loop {
            if self.abort {
                return Err(());
            }
            match self.peek().kind {
                T::RBrace => {
                    let rb = self.bump();
                    return Ok(Block {
                        stmts,
                        span: lb.span.to(rb.span),
                    });
                }
                T::Eof => {
                    if !self.eof_reported {
                        self.eof_reported = true;
                        self.push_diag(
                            Diagnostic::error(lb.span, "End of input while in compound statement")
                                .with_note("(this '{' is never closed)"),
                        );
                    }
                    return Err(());
                }
                _ => {
                    let start = self.pos;
                    if self.stmt(&mut stmts).is_err() {
                        if self.abort {
                            return Err(());
                        }
                        self.sync_stmt(start);
                        if self.pos == start && !self.at(T::RBrace) && !self.at(T::Eof) {
                            self.bump();
                        }
                    }
                }
            }
        }
    }

    /// After an error in a statement: skip to its `;`, past the block that ends it, or to the
    /// `}` closing the enclosing block (not consumed).
    fn sync_stmt(&mut self, start: usize) {
        let mut depth: i32 = 0;
        for t in self.toks.get(start..self.pos).unwrap_or(&[]) {
            match t.kind {
                T::LBrace => depth += 1,
                T::RBrace => depth -= 1,
                _ => {}
            }
        }
        depth = depth.max(0);
        loop {
            let t = self.peek();
            match t.kind {
                T::Eof => return,
                T::LBrace => {
                    depth += 1;
                    self.bump();
                }
                T::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                T::Semi if depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn stmt(&mut self, out: &mut Vec<Stmt>) -> PResult<()> {
        let t = self.peek();
        if t.kind == T::LBrace {
            out.push(Stmt::Block(self.block()?));
            return Ok(());
        }
        if t.kind != T::Ident {
            let msg = format!(
                "Expected an action, 'if', '{{' or '}}' got {}",
                self.describe(t)
            );
            self.error(t.span, msg);
            return Err(());
        }
        let kw = self.text(t).to_string();
        let stmt = match kw.as_str() {
            "if" => Stmt::If(self.if_stmt()?),
            "set" => Stmt::Set(self.set_stmt()?),
            "unset" => Stmt::Unset(self.unset_stmt()?),
            "call" => Stmt::Call(self.call_stmt()?),
            "return" => Stmt::Return(self.return_stmt()?),
            "new" => Stmt::New(self.new_stmt()?),
            "else" | "elsif" | "elseif" | "elif" => {
                self.error(t.span, format!("'{kw}' without a preceding 'if'"));
                return Err(());
            }
            _ => Stmt::Expr(self.expr_stmt()?),
        };
        out.push(stmt);
        Ok(())
    }

    fn cond(&mut self) -> PResult<Expr> {
        self.expect(T::LParen)?;
        let e = self.expr()?;
        self.expect(T::RParen)?;
        Ok(e)
    }

    fn if_stmt(&mut self) -> PResult<If> {
        let kw = self.bump();
        let cond = self.cond()?;
        let then = self.block()?;
        let mut elifs = Vec::new();
        let mut else_ = None;
        loop {
            let t = self.peek();
            if self.is_ident(t, "else") {
                self.bump();
                if self.at(T::LBrace) {
                    else_ = Some(self.block()?);
                    break;
                }
                if !self.at_ident("if") {
                    let n = self.peek();
                    self.error(n.span, "'else' must be followed by 'if' or '{'");
                    return Err(());
                }
                let i = self.bump();
                let keyword = Ident {
                    name: "else if".to_string(),
                    span: t.span.to(i.span),
                };
                let cond = self.cond()?;
                let block = self.block()?;
                elifs.push(ElseIf {
                    keyword,
                    cond,
                    block,
                    span: self.since(t.span),
                });
            } else if t.kind == T::Ident && matches!(self.text(t), "elseif" | "elsif" | "elif") {
                let keyword = Ident {
                    name: self.text(t).to_string(),
                    span: t.span,
                };
                self.bump();
                let cond = self.cond()?;
                let block = self.block()?;
                elifs.push(ElseIf {
                    keyword,
                    cond,
                    block,
                    span: self.since(t.span),
                });
            } else {
                break;
            }
        }
        Ok(If {
            cond,
            then,
            elifs,
            else_,
            span: self.since(kw.span),
        })
    }

    fn set_stmt(&mut self) -> PResult<Set> {
        let kw = self.bump();
        let target = self.path()?;
        let op_tok = self.peek();
        let op = match op_tok.kind {
            T::Assign => AssignOp::Assign,
            T::AddAssign => AssignOp::Add,
            T::SubAssign => AssignOp::Sub,
            T::MulAssign => AssignOp::Mul,
            T::DivAssign => AssignOp::Div,
            _ => {
                self.expected("'='");
                return Err(());
            }
        };
        self.bump();
        let value = self.expr()?;
        self.expect(T::Semi)?;
        Ok(Set {
            target,
            op,
            op_span: op_tok.span,
            value,
            span: self.since(kw.span),
        })
    }

    fn unset_stmt(&mut self) -> PResult<Unset> {
        let kw = self.bump();
        let target = self.path()?;
        self.expect(T::Semi)?;
        Ok(Unset {
            target,
            span: self.since(kw.span),
        })
    }

    fn call_stmt(&mut self) -> PResult<CallSub> {
        let kw = self.bump();
        // A subroutine name, or (Varnish 7) any expression of type SUB: `call obj.method();`.
        let sub = self.postfix()?;
        self.expect(T::Semi)?;
        Ok(CallSub {
            sub,
            span: self.since(kw.span),
        })
    }

    fn return_stmt(&mut self) -> PResult<Return> {
        let kw = self.bump();
        if self.eat(T::Semi).is_some() {
            return Ok(Return {
                action: None,
                args: None,
                span: self.since(kw.span),
            });
        }
        self.expect(T::LParen)?;
        if !self.at(T::Ident) {
            self.expected("a return action name");
            return Err(());
        }
        let action = self.ident()?;
        let mut args = None;
        if self.at(T::LParen) {
            let lp = self.bump();
            self.enter(lp.span, "expression")?;
            let r = self.return_args();
            self.leave();
            args = Some(r?);
        }
        self.expect(T::RParen)?;
        self.expect(T::Semi)?;
        Ok(Return {
            action: Some(action),
            args,
            span: self.since(kw.span),
        })
    }

    fn return_args(&mut self) -> PResult<Vec<Expr>> {
        let mut args = Vec::new();
        while !self.at(T::RParen) {
            args.push(self.expr()?);
            if self.eat(T::Comma).is_none() {
                break;
            }
        }
        self.expect(T::RParen)?;
        Ok(args)
    }

    fn new_stmt(&mut self) -> PResult<New> {
        let kw = self.bump();
        let name = self.name("VCL object")?;
        self.expect(T::Assign)?;
        // `vmod.object(args)`, as `vcc_Act_New`: nothing may follow the argument list.
        let callee = self.path()?;
        let args = self.args()?;
        let constructor = Expr {
            span: self.since(callee.span),
            kind: ExprKind::Call { callee, args },
        };
        self.expect(T::Semi)?;
        Ok(New {
            name,
            constructor,
            span: self.since(kw.span),
        })
    }

    fn expr_stmt(&mut self) -> PResult<ExprStmt> {
        let start = self.peek();
        let expr = self.postfix()?;
        if !matches!(expr.kind, ExprKind::Call { .. } | ExprKind::Method { .. }) {
            let what = match &expr.kind {
                ExprKind::Path(p) => format!("'{}'", p.dotted()),
                _ => self.describe(start),
            };
            let mut d = Diagnostic::error(
                expr.span,
                format!("Expected an action, 'if', '{{' or '}}' got {what}"),
            );
            if let ExprKind::Path(p) = &expr.kind {
                if p.is("error") {
                    d = d.with_note(
                        "(VCL 4 replaced 'error CODE \"reason\";' with \
                         'return (synth(CODE, \"reason\"));')",
                    );
                } else if p.is("remove") {
                    d = d.with_note("(VCL 4 replaced 'remove' with 'unset')");
                } else if !self.at(T::Semi) && !self.at(T::LParen) {
                    d = d.with_note("(a statement needs 'set', 'unset', 'call', 'return', 'new', 'if', or a function call)");
                }
            }
            self.push_diag(d);
            return Err(());
        }
        self.expect(T::Semi)?;
        Ok(ExprStmt {
            span: self.since(expr.span),
            expr,
        })
    }

    // ------------------------------------------------------------------ expressions

    /// A dotted name: `ID ('.' (ID | STRING))*`.
    fn path(&mut self) -> PResult<Path> {
        let first = self.ident()?;
        let mut parts = vec![PathPart {
            name: first.name,
            quoted: false,
            span: first.span,
        }];
        while self.at(T::Dot) && matches!(self.peek_n(1).kind, T::Ident | T::Str) {
            self.bump();
            let t = self.bump();
            let (name, quoted) = if t.kind == T::Str {
                (t.str_value(self.map.text(t.span.file)).to_string(), true)
            } else {
                (self.text(t).to_string(), false)
            };
            parts.push(PathPart {
                name,
                quoted,
                span: t.span,
            });
        }
        Ok(Path {
            parts,
            span: self.since(first.span),
        })
    }

    fn expr(&mut self) -> PResult<Expr> {
        let sp = self.peek().span;
        self.enter(sp, "expression")?;
        let r = self.binary(0);
        self.leave();
        r
    }

    /// Precedence climbing over Varnish's levels (see [`bin_op`]). `min` is the loosest
    /// operator accepted. A comparison applies only to an operand that is not itself a
    /// comparison or looser (Varnish's `ExprAdd Relation ExprAdd`), so `a == b == c` stops
    /// before the second `==`.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs_prec = if min <= PREC_NOT && self.at(T::Not) {
            PREC_NOT
        } else {
            PREC_ATOM
        };
        let mut lhs = self.unary(min)?;
        loop {
            let Some((op, prec)) = bin_op(self.peek().kind) else {
                return Ok(lhs);
            };
            // An operator tighter than the one that formed `lhs` cannot apply to it (it follows a
            // match's single-term right side), nor can a second comparison.
            if prec < min || prec > lhs_prec || (prec == PREC_CMP && lhs_prec == PREC_CMP) {
                return Ok(lhs);
            }
            self.bump();
            let rhs = if matches!(op, BinOp::Match | BinOp::NoMatch) {
                self.match_rhs()?
            } else {
                self.binary(prec + 1)?
            };
            lhs = Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
            lhs_prec = prec;
        }
    }

    /// The right side of `~`/`!~`: one postfix term (an ACL, a variable, a call), or a regex
    /// literal, which may be a constant concatenation `"a" + "b"` (Varnish's `vcc_cstrcat`:
    /// after a `+`, only another string literal).
    fn match_rhs(&mut self) -> PResult<Expr> {
        let mut e = self.postfix()?;
        if !matches!(e.kind, ExprKind::Str(_)) {
            return Ok(e);
        }
        while self.eat(T::Plus).is_some() {
            if !self.at(T::Str) {
                self.expected("a string");
                return Err(());
            }
            let r = self.literal();
            e = Expr {
                span: e.span.to(r.span),
                kind: ExprKind::Binary {
                    op: BinOp::Add,
                    lhs: Box::new(e),
                    rhs: Box::new(r),
                },
            };
        }
        Ok(e)
    }

    /// `!` (only where a comparison may start, and only once: `!!x` is an error in Varnish too),
    /// else a postfix term.
    fn unary(&mut self, min: u8) -> PResult<Expr> {
        if min > PREC_NOT || !self.at(T::Not) {
            return self.postfix();
        }
        let t = self.bump();
        let e = self.binary(PREC_CMP)?;
        Ok(Expr {
            span: t.span.to(e.span),
            kind: ExprKind::Unary {
                op: UnaryOp::Not,
                operand: Box::new(e),
            },
        })
    }

    /// A primary followed by any number of `.name` / `.name(args)`.
    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        while self.at(T::Dot) {
            self.bump();
            let name = self.ident()?;
            e = if self.at(T::LParen) {
                let args = self.args()?;
                Expr {
                    span: self.since(e.span),
                    kind: ExprKind::Method {
                        base: Box::new(e),
                        name,
                        args,
                    },
                }
            } else {
                Expr {
                    span: e.span.to(name.span),
                    kind: ExprKind::Attr {
                        base: Box::new(e),
                        name,
                    },
                }
            };
        }
        Ok(e)
    }

    // Each kind of primary has its own function, so that the frames on the recursive path
    // (parenthesis, call arguments, unary minus) stay small in debug builds too.
    fn primary(&mut self) -> PResult<Expr> {
        match self.peek().kind {
            T::LParen => self.paren(),
            T::Ident => self.name_or_call(),
            T::Int | T::Real => self.number(None),
            T::Minus => self.minus(),
            T::Str | T::Blob => Ok(self.literal()),
            _ => {
                let t = self.peek();
                let msg = format!(
                    "Unknown token {} when looking for an expression",
                    self.describe(t)
                );
                self.error(t.span, msg);
                Err(())
            }
        }
    }

    fn paren(&mut self) -> PResult<Expr> {
        let t = self.bump();
        let inner = self.expr()?;
        self.expect(T::RParen)?;
        Ok(Expr {
            kind: inner.kind,
            span: self.since(t.span),
        })
    }

    fn name_or_call(&mut self) -> PResult<Expr> {
        let path = self.path()?;
        if self.at(T::LParen) {
            let args = self.args()?;
            return Ok(Expr {
                span: self.since(path.span),
                kind: ExprKind::Call { callee: path, args },
            });
        }
        let span = path.span;
        let kind = if path.is("true") {
            ExprKind::Bool(true)
        } else if path.is("false") {
            ExprKind::Bool(false)
        } else {
            ExprKind::Path(path)
        };
        Ok(Expr { kind, span })
    }

    /// `-` before a number is part of it; before anything else it negates the whole expression
    /// that follows, as in `vcc_expr5`.
    fn minus(&mut self) -> PResult<Expr> {
        let m = self.bump();
        if matches!(self.peek().kind, T::Int | T::Real) {
            return self.number(Some(m.span));
        }
        let e = self.expr()?;
        Ok(Expr {
            span: m.span.to(e.span),
            kind: ExprKind::Unary {
                op: UnaryOp::Neg,
                operand: Box::new(e),
            },
        })
    }

    fn literal(&mut self) -> Expr {
        let t = self.bump();
        let kind = if t.kind == T::Blob {
            ExprKind::Blob(decode_base64(t.str_value(self.map.text(t.span.file))))
        } else {
            ExprKind::Str(self.str_lit(t))
        };
        Expr { kind, span: t.span }
    }

    /// A number, an optional unit after it; `minus` is the span of a `-` written before it.
    fn number(&mut self, minus: Option<Span>) -> PResult<Expr> {
        let t = self.bump();
        let start = minus.unwrap_or(t.span);
        let sign = if minus.is_some() { -1.0 } else { 1.0 };
        let txt = self.text(t);
        let value = sign * txt.parse::<f64>().unwrap_or(0.0);
        let int = if t.kind == T::Int {
            txt.parse::<i64>()
                .ok()
                .map(|v| if minus.is_some() { -v } else { v })
        } else {
            None
        };
        if self.at(T::Ident) {
            let u = self.bump();
            let unit = self.text(u).to_string();
            let span = start.to(u.span);
            if let Some(sc) = duration_unit_scale(&unit) {
                return Ok(Expr {
                    kind: ExprKind::Duration(Duration {
                        value,
                        seconds: value * sc,
                        unit,
                    }),
                    span,
                });
            }
            if let Some(sc) = bytes_unit_scale(&unit) {
                return Ok(Expr {
                    kind: ExprKind::Bytes(Bytes {
                        value,
                        bytes: value * sc,
                        unit,
                    }),
                    span,
                });
            }
            self.push_diag(
                Diagnostic::error(u.span, format!("Unknown duration unit '{unit}'"))
                    .with_note("Legal duration units are 'ms', 's', 'm', 'h', 'd', 'w' and 'y'"),
            );
            return Err(());
        }
        let kind = match int {
            Some(i) => ExprKind::Int(i),
            None => ExprKind::Real(value),
        };
        Ok(Expr {
            kind,
            span: start.to(t.span),
        })
    }

    /// `( [arg {, arg}] [,] )` where arg is `expr` or `name = expr`.
    fn args(&mut self) -> PResult<Vec<Arg>> {
        let lp = self.expect(T::LParen)?;
        self.enter(lp.span, "expression")?;
        let r = self.args_body();
        self.leave();
        r
    }

    fn args_body(&mut self) -> PResult<Vec<Arg>> {
        let mut args: Vec<Arg> = Vec::new();
        while !self.at(T::RParen) {
            let t = self.peek();
            let arg = if t.kind == T::Ident && self.peek_n(1).kind == T::Assign {
                let name = self.ident()?;
                self.bump();
                let value = self.expr()?;
                Arg {
                    span: name.span.to(value.span),
                    name: Some(name),
                    value,
                }
            } else {
                let value = self.expr()?;
                if args.iter().any(|a| a.name.is_some()) {
                    self.error(value.span, "Positional argument after named arguments");
                    return Err(());
                }
                Arg {
                    span: value.span,
                    name: None,
                    value,
                }
            };
            args.push(arg);
            if self.eat(T::Comma).is_none() {
                break;
            }
        }
        self.expect(T::RParen)?;
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Vcl {
        let (map, r) = parse_str("t.vcl", src);
        match r {
            Ok(v) => v,
            Err(d) => panic!("{}", map.render_all(&d)),
        }
    }

    fn err(src: &str) -> String {
        let (map, r) = parse_str("t.vcl", src);
        match r {
            Ok(_) => panic!("parsed: {src}"),
            Err(d) => map.render_all(&d),
        }
    }

    fn first_expr(v: &Vcl) -> &Expr {
        let Some(Item::Sub(s)) = v.items.first() else {
            panic!("no sub")
        };
        match s.body.stmts.first() {
            Some(Stmt::Set(s)) => &s.value,
            Some(Stmt::If(i)) => &i.cond,
            other => panic!("{other:?}"),
        }
    }

    /// A compact rendering of an expression tree, for precedence tests.
    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Str(s) => format!("{:?}", s.value),
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Real(r) => r.to_string(),
            ExprKind::Duration(d) => format!("{}{}", d.value, d.unit),
            ExprKind::Bytes(b) => format!("{}{}", b.value, b.unit),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Blob(b) => format!("blob{b:?}"),
            ExprKind::Path(p) => p.dotted(),
            ExprKind::Call { callee, args } => format!(
                "{}({})",
                callee.dotted(),
                args.iter()
                    .map(|a| match &a.name {
                        Some(n) => format!("{}={}", n.name, show(&a.value)),
                        None => show(&a.value),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ExprKind::Attr { base, name } => format!("{}.{}", show(base), name.name),
            ExprKind::Method { base, name, args } => format!(
                "{}.{}({})",
                show(base),
                name.name,
                args.iter()
                    .map(|a| show(&a.value))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ExprKind::Unary { op, operand } => match op {
                UnaryOp::Not => format!("!({})", show(operand)),
                UnaryOp::Neg => format!("-({})", show(operand)),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", show(lhs), op.as_str(), show(rhs))
            }
        }
    }

    fn cond(c: &str) -> String {
        let v = ok(&format!("vcl 4.1;\nsub s {{ if ({c}) {{}} }}"));
        show(first_expr(&v))
    }

    #[test]
    fn precedence_follows_varnish() {
        assert_eq!(cond("a || b && c"), "(a || (b && c))");
        assert_eq!(cond("!client.ip ~ purge"), "!((client.ip ~ purge))");
        assert_eq!(cond("a == b + c * d"), "(a == (b + (c * d)))");
        assert_eq!(
            cond("obj.ttl + obj.grace > 0s"),
            "((obj.ttl + obj.grace) > 0s)"
        );
        assert_eq!(
            cond("!std.healthy(req.backend_hint) && (obj.ttl + obj.grace > 0s)"),
            "(!(std.healthy(req.backend_hint)) && ((obj.ttl + obj.grace) > 0s))"
        );
        assert_eq!(cond("a - -1 == -x + y"), "((a - -1) == -((x + y)))");
        assert_eq!(cond("x % 2 == 1 / 2"), "((x % 2) == (1 / 2))");
        assert_eq!(cond("(!a) == b"), "(!(a) == b)");
        assert_eq!(cond("!a == b && !c"), "(!((a == b)) && !(c))");
        assert_eq!(cond("a ~ b || c !~ d.e(f)"), "((a ~ b) || (c !~ d.e(f)))");
        assert_eq!(
            cond("a + b - c * d / e % f"),
            "((a + b) - (((c * d) / e) % f))"
        );
    }

    #[test]
    fn literals_and_units() {
        assert_eq!(cond("x == 10ms"), "(x == 10ms)");
        assert_eq!(cond("x == 1.5 m"), "(x == 1.5m)");
        assert_eq!(cond("x == -2h"), "(x == -2h)");
        assert_eq!(cond("x == 100KB"), "(x == 100KB)");
        assert_eq!(cond("x == true || false"), "((x == true) || false)");
        assert_eq!(cond("x == :AAEC:"), "(x == blob[0, 1, 2])");
        assert_eq!(cond("x == 2.5"), "(x == 2.5)");
        let e = err("vcl 4.1;\nsub s { set x = 10x; }");
        assert!(
            e.starts_with("t.vcl:2:19: Unknown duration unit 'x'\n"),
            "{e}"
        );
    }

    #[test]
    fn paths_calls_methods() {
        assert_eq!(
            cond("req.http.X-Forwarded-For ~ \"a\""),
            "(req.http.X-Forwarded-For ~ \"a\")"
        );
        assert_eq!(
            cond("shard.backend(by=KEY, key=shard.key(req.url))"),
            "shard.backend(by=KEY,key=shard.key(req.url))"
        );
        assert_eq!(
            cond("dcprio.backend().resolve()"),
            "dcprio.backend().resolve()"
        );
        assert_eq!(cond("(a).b"), "a.b");
        assert_eq!(cond("req.http.host.lower()"), "req.http.host.lower()");
        assert_eq!(cond("f(a, b,)"), "f(a,b)");
        let v = ok("vcl 4.1;\nsub s { set req.http.\"x y\" = \"1\"; }");
        let Some(Item::Sub(s)) = v.items.first() else {
            panic!()
        };
        let Some(Stmt::Set(set)) = s.body.stmts.first() else {
            panic!()
        };
        assert!(set.target.parts[2].quoted);
        assert_eq!(set.target.dotted(), "req.http.x y");
    }

    #[test]
    fn regex_rhs_is_a_single_term() {
        assert_eq!(
            cond("req.url ~ \"a\" + \"b\" + \"c\" && x"),
            "((req.url ~ ((\"a\" + \"b\") + \"c\")) && x)"
        );
        let e = err("vcl 4.1;\nsub s { if (req.url ~ \"a\" + req.url) {} }");
        assert!(e.contains("2:29: Expected a string got 'req'"), "{e}");
        let e = err("vcl 4.1;\nsub s { if (req.url ~ x + \"b\") {} }");
        assert!(e.contains("Expected ')' got '+'"), "{e}");
        let e = err("vcl 4.1;\nsub s { if (a == b == c) {} }");
        assert!(e.starts_with("t.vcl:2:20: Expected ')' got '=='"), "{e}");
        let e = err("vcl 4.1;\nsub s { if (a && b == c == d) {} }");
        assert!(e.starts_with("t.vcl:2:25: Expected ')' got '=='"), "{e}");
        let e = err("vcl 4.1;\nsub s { if (!!a) {} }");
        assert!(
            e.starts_with("t.vcl:2:14: Unknown token '!' when looking"),
            "{e}"
        );
        let e = err("vcl 4.1;\nsub s { if (a == !b) {} }");
        assert!(
            e.starts_with("t.vcl:2:18: Unknown token '!' when looking"),
            "{e}"
        );
    }

    #[test]
    fn statements() {
        let v = ok(r#"vcl 4.0;
import std;
import directors as d from "/x/libvmod_directors.so";
sub vcl_init { new vdir = directors.round_robin(); vdir.add_backend(b1); }
sub s {
    set req.http.x += "a";
    unset req.http.cookie;
    call other;
    return;
    return (deliver);
    return (synth(503, "x"));
    return (pass(10s));
    return (deliver());
    hash_data(req.url);
    { std.log("x"); }
    if (a) { } elsif (b) { } elseif (c) { } elif (d) { } else if (e) { } else { }
}
"#);
        assert_eq!(v.version.version, VclVersion::V40);
        let Some(Item::Import(i)) = v.items.get(1) else {
            panic!()
        };
        assert_eq!(i.alias.as_ref().map(|a| a.name.as_str()), Some("d"));
        let Some(Item::Sub(s)) = v.items.get(3) else {
            panic!()
        };
        assert_eq!(s.body.stmts.len(), 11);
        let Stmt::Return(r) = &s.body.stmts[3] else {
            panic!()
        };
        assert!(r.action.is_none());
        let Stmt::Return(r) = &s.body.stmts[5] else {
            panic!()
        };
        assert_eq!(r.args.as_ref().map(Vec::len), Some(2));
        let Stmt::Return(r) = &s.body.stmts[7] else {
            panic!()
        };
        assert_eq!(r.args.as_ref().map(Vec::len), Some(0));
        let Stmt::If(f) = &s.body.stmts[10] else {
            panic!()
        };
        let kws: Vec<&str> = f.elifs.iter().map(|e| e.keyword.name.as_str()).collect();
        assert_eq!(kws, ["elsif", "elseif", "elif", "else if"]);
        assert!(f.else_.is_some());
    }

    #[test]
    fn backends_probes_acls() {
        let v = ok(r#"vcl 4.1;
backend a { .host = "127.0.0.1"; .port = "8080"; .probe = { .url = "/"; .window = 5; }
  .connect_timeout = 1.5s; }
backend n none;
probe p { .request = "GET / HTTP/1.1" "Host: x" "Connection: close"; }
acl l -pedantic +log { "localhost"; "10.0.0.0"/8; ! "10.1.2.3"; ("x.example"); "192.168.0.0/16"; }
"#);
        let Some(Item::Backend(b)) = v.items.first() else {
            panic!()
        };
        let BackendDef::Fields(f) = &b.def else {
            panic!()
        };
        assert_eq!(f.len(), 4);
        assert!(matches!(f[2].value, FieldValue::Probe { .. }));
        assert!(matches!(
            v.items.get(1),
            Some(Item::Backend(Backend {
                def: BackendDef::None(_),
                ..
            }))
        ));
        let Some(Item::Probe(p)) = v.items.get(2) else {
            panic!()
        };
        assert!(matches!(&p.fields[0].value, FieldValue::Strings(s) if s.len() == 3));
        let Some(Item::Acl(a)) = v.items.get(3) else {
            panic!()
        };
        assert_eq!(a.flags.len(), 2);
        assert!(!a.flags[0].on);
        let e: Vec<(bool, bool, &str, Option<u8>)> = a
            .entries
            .iter()
            .map(|e| (e.negated, e.optional, e.addr.as_str(), e.mask))
            .collect();
        assert_eq!(
            e,
            [
                (false, false, "localhost", None),
                (false, false, "10.0.0.0", Some(8)),
                (true, false, "10.1.2.3", None),
                (false, true, "x.example", None),
                (false, false, "192.168.0.0", Some(16)),
            ]
        );
    }

    #[test]
    fn errors_are_collected_and_recovery_continues() {
        let e = err(
            "vcl 4.1;\nsub a { set x = ; set y 1; }\nsub b { foo; }\nbackend c { .host = ; }\n",
        );
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("t.vcl:")).collect();
        assert_eq!(
            lines,
            [
                "t.vcl:2:17: Unknown token ';' when looking for an expression",
                "t.vcl:2:25: Expected '=' got '1'",
                "t.vcl:3:9: Expected an action, 'if', '{' or '}' got 'foo'",
                "t.vcl:4:21: Expected a value (string, number, duration, name or BLOB) got ';'",
            ]
        );
    }

    #[test]
    fn eof_in_nested_blocks_reported_once() {
        let e = err("vcl 4.1;\nsub a { if (x) { if (y) {\n");
        assert_eq!(e.matches("End of input").count(), 1, "{e}");
        assert!(e.starts_with("t.vcl:2:25: End of input while in compound statement"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.vcl", b"a.vcl"));
        assert!(!wildcard_match(b"*.vcl", b".vcl"));
        assert!(wildcard_match(b".*", b".hidden"));
        assert!(wildcard_match(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard_match(b"a*b*c", b"axxbyy"));
        assert!(wildcard_match(b"?0-[a-c].vcl", b"10-b.vcl"));
        assert!(!wildcard_match(b"[!a]x", b"ax"));
        assert!(wildcard_match(b"[!a]x", b"bx"));
        assert!(!wildcard_match(b"[a", b"a"));
        assert!(wildcard_match(b"**", b""));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "vcl 4.1;\nsub a {{ set x = {}1{}; }}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let e = err(&deep);
        assert!(e.contains("expression nested too deeply"), "{e}");
        let deep = format!("vcl 4.1;\nsub a {}{}", "{".repeat(5000), "}".repeat(5000));
        assert!(err(&deep).contains("block nested too deeply"));
        let deep = format!("vcl 4.1;\nsub a {{ set x = {}1; }}", "- ".repeat(5000));
        assert!(err(&deep).contains("nested too deeply"));
        let deep = format!("vcl 4.1;\nbackend a {{ {} }}", ".probe = {".repeat(5000));
        assert!(err(&deep).contains("nested too deeply"));
        // Just under the limit parses.
        let ok_deep = format!(
            "vcl 4.1;\nsub a {{ set x = {}1{}; }}",
            "(".repeat(150),
            ")".repeat(150)
        );
        ok(&ok_deep);
    }
}
