//! Source files, spans and compiler diagnostics.
//!
//! Why spans are byte offsets into a per-file table instead of line/column pairs: the lexer and
//! the parser only ever compare and join offsets, and line numbers are needed only when a message
//! is printed. Every file the compiler reads (the top file and each `include`) gets a [`FileId`],
//! so a span keeps pointing into the right file after included items are spliced into the
//! including file's AST.
//!
//! Columns are 1-based and count **bytes** (a tab is one column), as Varnish's "Pos" does before
//! its tab expansion. The rendered caret line copies the tabs of the source line, so the caret
//! lines up in any terminal whatever its tab width.
//!
//! Rendering (one diagnostic):
//!
//! ```text
//! default.vcl:4:37: Expected ';' got '"b"'
//! sub vcl_recv { set req.http.x = "a" "b"; }
//!                                     ^~~
//! ```
//!
//! The caret sits under the first byte of the span and `~` continues under the rest of it (up to
//! the end of that line), which marks the whole offending token the way Varnish's `###` marker
//! line does. Warnings print `warning: ` before the message. Extra note lines follow the caret.

use std::fmt;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range `start..end` in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: u32, end: u32) -> Span {
        Span { file, start, end }
    }

    /// The span from the start of `self` to the end of `other` (same file; otherwise `self`).
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One source file: its display name and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Name used in messages: the path as given or resolved, or a caller's label.
    pub name: String,
    /// The file's path on disk, when it was read from one (used to resolve `include`).
    pub path: Option<std::path::PathBuf>,
    pub text: String,
    /// Offsets in `text` of the U+FFFD characters that replaced invalid UTF-8 bytes (Varnish
    /// takes any byte; comments in Latin-1 must not stop a VCL from loading).
    pub invalid_utf8: Vec<u32>,
    line_starts: Vec<u32>,
}

/// All files of one compilation.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

/// Largest source file accepted (spans are `u32`).
pub const MAX_FILE_LEN: usize = 64 << 20;

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file; text longer than [`MAX_FILE_LEN`] is truncated (the reader refuses such files
    /// before this point, so this only protects the `u32` offsets).
    pub fn add(&mut self, name: &str, path: Option<std::path::PathBuf>, text: String) -> FileId {
        let mut text = text;
        if text.len() > MAX_FILE_LEN {
            let mut cut = MAX_FILE_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let mut line_starts = vec![0u32];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i as u32 + 1);
            }
        }
        self.files.push(SourceFile {
            name: name.to_string(),
            path,
            text,
            invalid_utf8: Vec::new(),
            line_starts,
        });
        FileId(self.files.len() as u32 - 1)
    }

    /// Adds a file read as bytes: invalid UTF-8 sequences become U+FFFD and their offsets are
    /// recorded in [`SourceFile::invalid_utf8`].
    pub fn add_bytes(
        &mut self,
        name: &str,
        path: Option<std::path::PathBuf>,
        bytes: &[u8],
    ) -> FileId {
        let mut text = String::with_capacity(bytes.len());
        let mut invalid = Vec::new();
        for chunk in bytes.utf8_chunks() {
            text.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                invalid.push(text.len() as u32);
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        let id = self.add(name, path, text);
        if let Some(f) = self.files.get_mut(id.0 as usize) {
            let len = f.text.len() as u32;
            invalid.retain(|&o| o < len);
            f.invalid_utf8 = invalid;
        }
        id
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn name(&self, id: FileId) -> &str {
        self.file(id).map_or("<unknown>", |f| f.name.as_str())
    }

    pub fn text(&self, id: FileId) -> &str {
        self.file(id).map_or("", |f| f.text.as_str())
    }

    /// The source text a span covers ("" if the span is not valid for its file).
    pub fn snippet(&self, span: Span) -> &str {
        self.text(span.file)
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    /// 1-based line and 1-based byte column of a byte offset (clamped to the file).
    pub fn line_col(&self, file: FileId, offset: u32) -> (u32, u32) {
        let Some(f) = self.file(file) else {
            return (1, 1);
        };
        let offset = offset.min(f.text.len() as u32);
        let line = match f.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = f.line_starts.get(line).copied().unwrap_or(0);
        (line as u32 + 1, offset - start + 1)
    }

    /// The text of 1-based line `line`, without its line terminator.
    pub fn line_text(&self, file: FileId, line: u32) -> &str {
        let Some(f) = self.file(file) else {
            return "";
        };
        let idx = line.saturating_sub(1) as usize;
        let Some(&start) = f.line_starts.get(idx) else {
            return "";
        };
        let end = f
            .line_starts
            .get(idx + 1)
            .map_or(f.text.len(), |&e| e as usize);
        let s = f.text.get(start as usize..end).unwrap_or("");
        s.trim_end_matches('\n').trim_end_matches('\r')
    }

    /// Renders one diagnostic: `FILE:LINE:COL: message`, the source line, the caret line, notes.
    pub fn render(&self, d: &Diagnostic) -> String {
        let (line, col) = self.line_col(d.span.file, d.span.start);
        let mut out = String::new();
        let sev = match d.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        out.push_str(&format!(
            "{}:{}:{}: {}{}\n",
            self.name(d.span.file),
            line,
            col,
            sev,
            d.message
        ));
        let src = self.line_text(d.span.file, line);
        if !(src.is_empty() && self.text(d.span.file).is_empty()) {
            out.push_str(src);
            out.push('\n');
            out.push_str(&caret_line(src, col, d.span.len()));
            out.push('\n');
        }
        for n in &d.notes {
            out.push_str(n);
            out.push('\n');
        }
        out
    }

    /// Renders several diagnostics, separated by blank lines.
    pub fn render_all(&self, ds: &[Diagnostic]) -> String {
        let mut out = String::new();
        for (i, d) in ds.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&self.render(d));
        }
        out
    }
}

/// The marker line under `src` for a span starting at 1-based byte column `col`, `len` bytes long.
fn caret_line(src: &str, col: u32, len: u32) -> String {
    let start = (col as usize).saturating_sub(1);
    let end = start + len.max(1) as usize;
    let mut out = String::new();
    let mut marked = false;
    for (i, ch) in src.char_indices() {
        if i < start {
            out.push(if ch == '\t' { '\t' } else { ' ' });
        } else if i < end {
            out.push(if marked { '~' } else { '^' });
            marked = true;
        } else {
            break;
        }
    }
    if !marked {
        // The span starts at the end of the line (end of input, or a zero-length span).
        out.push('^');
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One compiler message attached to a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub span: Span,
    pub message: String,
    pub severity: Severity,
    /// Extra lines printed after the caret line (hints, "previously defined at ...").
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span,
            message: message.into(),
            severity: Severity::Error,
            notes: Vec::new(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span,
            message: message.into(),
            severity: Severity::Warning,
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Without a [`SourceMap`]: `message (bytes START..END of file N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (bytes {}..{} of file {})",
            self.message, self.span.start, self.span.end, self.span.file.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_bytes() {
        let mut m = SourceMap::new();
        let f = m.add("t.vcl", None, "ab\n\tcd\nlast".to_string());
        assert_eq!(m.line_col(f, 0), (1, 1));
        assert_eq!(m.line_col(f, 2), (1, 3));
        assert_eq!(m.line_col(f, 3), (2, 1));
        assert_eq!(m.line_col(f, 5), (2, 3));
        assert_eq!(m.line_col(f, 7), (3, 1));
        assert_eq!(m.line_col(f, 99), (3, 5));
        assert_eq!(m.line_text(f, 2), "\tcd");
        assert_eq!(m.line_text(f, 9), "");
    }

    #[test]
    fn render_marks_the_whole_token_and_keeps_tabs() {
        let mut m = SourceMap::new();
        let f = m.add("t.vcl", None, "x\n\tset y = zz;\n".to_string());
        let d = Diagnostic::error(Span::new(f, 11, 13), "bad").with_note("a note");
        assert_eq!(
            m.render(&d),
            "t.vcl:2:10: bad\n\tset y = zz;\n\t        ^~\na note\n"
        );
        let w = Diagnostic::warning(Span::new(f, 15, 15), "eof");
        assert_eq!(m.render(&w), "t.vcl:3:1: warning: eof\n\n^\n");
    }

    #[test]
    fn invalid_utf8_is_replaced_and_recorded() {
        let mut m = SourceMap::new();
        let f = m.add_bytes("t.vcl", None, b"a\xffb\xe9\n");
        assert_eq!(m.text(f), "a\u{fffd}b\u{fffd}\n");
        assert_eq!(m.file(f).unwrap().invalid_utf8, [1, 5]);
    }

    #[test]
    fn span_join() {
        let a = Span::new(FileId(0), 3, 5);
        let b = Span::new(FileId(0), 9, 12);
        assert_eq!(a.to(b), Span::new(FileId(0), 3, 12));
        assert_eq!(a.to(Span::new(FileId(1), 0, 1)), a);
    }
}
