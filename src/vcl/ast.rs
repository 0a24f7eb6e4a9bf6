//! The VCL syntax tree.
//!
//! Why it is untyped where Varnish is typed: varnishd resolves symbols while it parses (its
//! parser knows that `req.http.host.lower()` is the variable `req.http.host` followed by the
//! STRING method `lower`, and that `10m` means megabytes where a BYTES is expected). This parser
//! does syntax only, so it records what was written and leaves every such decision to the
//! checker, which has the symbol table:
//!
//! * a dotted name is one [`Path`] (`req.http.X-Forwarded-For`, `std.healthy`, `vdir.backend`);
//!   a call on it is [`ExprKind::Call`] with the whole path as callee, so the checker splits
//!   `req.http.host.lower()` into variable + method by longest known prefix, as Varnish does;
//! * `.attr` and `.method(...)` after a call or a parenthesis are [`ExprKind::Attr`] and
//!   [`ExprKind::Method`] (`dcprio.backend().resolve()`);
//! * a number followed by a unit keeps the unit text ([`Duration`], [`Bytes`]), so the checker
//!   can reinterpret `10m` as 10 MB where a BYTES is expected;
//! * `true`/`false` are [`ExprKind::Bool`]; every other bare name (`none`, backend, ACL, probe,
//!   enum values such as `by=HASH`) is a [`ExprKind::Path`];
//! * parentheses leave no node: `(a + b)` is the `Binary` node, its span widened to the
//!   parentheses; a regex literal `"a" + "b"` after `~` is a `Binary` `Add` of two `Str`.
//!
//! `include` is resolved before parsing, as Varnish does it: the included file's tokens replace
//! the directive wherever it stands (top level, subroutine body, ACL, backend) and keep their own
//! spans; [`Vcl::includes`] lists the files that were read.
//!
//! Every node carries a [`Span`]; a composite node's span covers all its tokens.

use super::diag::{Diagnostic, FileId, Span};

/// The VCL syntax versions Varnish 7.1 accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VclVersion {
    V40,
    V41,
}

impl VclVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            VclVersion::V40 => "4.0",
            VclVersion::V41 => "4.1",
        }
    }
}

/// `vcl 4.1;` — the span covers `vcl 4.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionDecl {
    pub version: VclVersion,
    pub span: Span,
}

/// A whole program: the top file's version declaration and all items, includes spliced in.
#[derive(Clone, Debug, PartialEq)]
pub struct Vcl {
    pub version: VersionDecl,
    pub items: Vec<Item>,
    /// Every file read through `include`, in the order read.
    pub includes: Vec<IncludedFile>,
    /// Warnings found while parsing (invalid UTF-8 in a string literal).
    pub warnings: Vec<Diagnostic>,
}

impl Vcl {
    pub fn subs(&self) -> impl Iterator<Item = &Sub> {
        self.items.iter().filter_map(|i| match i {
            Item::Sub(s) => Some(s),
            _ => None,
        })
    }
}

/// One file read through `include`.
#[derive(Clone, Debug, PartialEq)]
pub struct IncludedFile {
    pub file: FileId,
    /// The path as written in the `include` statement.
    pub written: String,
    /// The `include "..."` statement that pulled it in.
    pub at: Span,
    /// The file's own `vcl N.N;`, if it has one.
    pub version: Option<VersionDecl>,
}

/// An identifier (a name that cannot contain dots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A string literal: `"..."`, `{"..."}` or `"""..."""` (no escapes in VCL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrLit {
    pub value: String,
    /// Written as a long string (`{"..."}` or `"""..."""`).
    pub long: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Import(Import),
    Backend(Backend),
    Probe(Probe),
    Acl(Acl),
    Sub(Sub),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Backend(b) => b.span,
            Item::Probe(p) => p.span,
            Item::Acl(a) => a.span,
            Item::Sub(s) => s.span,
        }
    }

    /// The name the item defines (for an import: the name it is imported as).
    pub fn name(&self) -> &Ident {
        match self {
            Item::Import(i) => i.alias.as_ref().unwrap_or(&i.module),
            Item::Backend(b) => &b.name,
            Item::Probe(p) => &p.name,
            Item::Acl(a) => &a.name,
            Item::Sub(s) => &s.name,
        }
    }
}

/// `import MODULE [as ALIAS] [from "PATH"];`
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    pub module: Ident,
    pub alias: Option<Ident>,
    pub from: Option<StrLit>,
    pub span: Span,
}

/// `backend NAME { fields }` or `backend NAME none;`
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub name: Ident,
    pub def: BackendDef,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackendDef {
    /// `none` (or `None`): the span of that word.
    None(Span),
    Fields(Vec<Field>),
}

/// `probe NAME { fields }` (`probe default { ... }` included).
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub name: Ident,
    pub fields: Vec<Field>,
    pub span: Span,
}

/// `.name = value;` in a backend or probe (or `.probe = { ... }` without the `;`).
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// Without the leading dot.
    pub name: Ident,
    pub value: FieldValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// Any single expression: `"127.0.0.1"`, `8080`, `2s`, `myprobe`, `default`, `:AAA=:`.
    Expr(Expr),
    /// `.probe = { ... }`: an anonymous probe.
    Probe { fields: Vec<Field>, span: Span },
    /// Two or more adjacent strings: `.request = "GET / HTTP/1.1" "Host: x" "Connection: close";`
    Strings(Vec<StrLit>),
}

/// `acl NAME [+log -pedantic +table] { entries }`
#[derive(Clone, Debug, PartialEq)]
pub struct Acl {
    pub name: Ident,
    pub flags: Vec<AclFlag>,
    pub entries: Vec<AclEntry>,
    pub span: Span,
}

/// `+log`, `-pedantic`, `+table`.
#[derive(Clone, Debug, PartialEq)]
pub struct AclFlag {
    pub name: Ident,
    pub on: bool,
    pub span: Span,
}

/// `["!"] ["("] "ADDR" ["/" MASK] [")"] ";"` — `"ADDR/MASK"` inside the string is split here.
#[derive(Clone, Debug, PartialEq)]
pub struct AclEntry {
    pub negated: bool,
    /// Written in parentheses: ignore the entry if the name does not resolve.
    pub optional: bool,
    /// The address or host name, without any `/mask`.
    pub addr: String,
    pub addr_span: Span,
    pub mask: Option<u8>,
    /// The mask token (or the string, when the mask was written inside it).
    pub mask_span: Option<Span>,
    pub span: Span,
}

/// `sub NAME { ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct Sub {
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

/// `{ statements }`
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Set(Set),
    Unset(Unset),
    If(If),
    Return(Return),
    Call(CallSub),
    New(New),
    /// A call used as a statement: `std.log("x");`, `vdir.add_backend(b1);`, `hash_data(req.url);`,
    /// `synthetic("...");`, `ban("...");`.
    Expr(ExprStmt),
    Block(Block),
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Set(s) => s.span,
            Stmt::Unset(s) => s.span,
            Stmt::If(s) => s.span,
            Stmt::Return(s) => s.span,
            Stmt::Call(s) => s.span,
            Stmt::New(s) => s.span,
            Stmt::Expr(s) => s.span,
            Stmt::Block(b) => b.span,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Assign,
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
}

impl AssignOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignOp::Assign => "=",
            AssignOp::Add => "+=",
            AssignOp::Sub => "-=",
            AssignOp::Mul => "*=",
            AssignOp::Div => "/=",
        }
    }
}

/// `set TARGET OP VALUE;`
#[derive(Clone, Debug, PartialEq)]
pub struct Set {
    pub target: Path,
    pub op: AssignOp,
    pub op_span: Span,
    pub value: Expr,
    pub span: Span,
}

/// `unset TARGET;`
#[derive(Clone, Debug, PartialEq)]
pub struct Unset {
    pub target: Path,
    pub span: Span,
}

/// `if (c) {..} elsif (c) {..} else if (c) {..} else {..}`
#[derive(Clone, Debug, PartialEq)]
pub struct If {
    pub cond: Expr,
    pub then: Block,
    pub elifs: Vec<ElseIf>,
    pub else_: Option<Block>,
    pub span: Span,
}

/// One `elsif`/`elseif`/`elif`/`else if` branch.
#[derive(Clone, Debug, PartialEq)]
pub struct ElseIf {
    /// As written: `elsif`, `elseif`, `elif` or `else if` (the span covers both words).
    pub keyword: Ident,
    pub cond: Expr,
    pub block: Block,
    pub span: Span,
}

/// `return;`, `return (ACTION);` or `return (ACTION(ARGS));`
#[derive(Clone, Debug, PartialEq)]
pub struct Return {
    /// `None` for a bare `return;` (leaves a custom subroutine).
    pub action: Option<Ident>,
    /// `None` without parentheses after the action; `Some(vec![])` for `deliver()`.
    pub args: Option<Vec<Expr>>,
    pub span: Span,
}

/// `call NAME;` — `sub` is an [`ExprKind::Path`] for a subroutine name; Varnish 7 also calls
/// any SUB-typed expression (`call obj.method();`).
#[derive(Clone, Debug, PartialEq)]
pub struct CallSub {
    pub sub: Expr,
    pub span: Span,
}

impl CallSub {
    /// The subroutine's name, when the call names one directly.
    pub fn name(&self) -> Option<&Path> {
        match &self.sub.kind {
            ExprKind::Path(p) => Some(p),
            _ => None,
        }
    }
}

/// `new NAME = CONSTRUCTOR(ARGS);` — `constructor` is an [`ExprKind::Call`].
#[derive(Clone, Debug, PartialEq)]
pub struct New {
    pub name: Ident,
    pub constructor: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExprStmt {
    pub expr: Expr,
    pub span: Span,
}

/// A dotted name: `req.http.X-Forwarded-For`, `std.healthy`, `b1`. With VCL 4.1 a component
/// after a dot may be a quoted string (`req.http."odd name"`), recorded with `quoted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub parts: Vec<PathPart>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPart {
    pub name: String,
    pub quoted: bool,
    pub span: Span,
}

impl Path {
    /// The components joined by dots (quoted components unquoted).
    pub fn dotted(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(&p.name);
        }
        s
    }

    /// True when the path is exactly `dotted` (compared component by component).
    pub fn is(&self, dotted: &str) -> bool {
        let mut it = dotted.split('.');
        for p in &self.parts {
            if it.next() != Some(p.name.as_str()) {
                return false;
            }
        }
        it.next().is_none()
    }

    /// The path of the first `n` components (span shortened accordingly).
    pub fn prefix(&self, n: usize) -> Path {
        let parts: Vec<PathPart> = self.parts.iter().take(n.max(1)).cloned().collect();
        let span = match (parts.first(), parts.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.span,
        };
        Path { parts, span }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Str(StrLit),
    /// An integer literal (a leading `-` folded in).
    Int(i64),
    /// A real literal (a leading `-` folded in).
    Real(f64),
    Duration(Duration),
    Bytes(Bytes),
    Bool(bool),
    /// `:base64:`, decoded.
    Blob(Vec<u8>),
    /// A bare (dotted) name.
    Path(Path),
    /// `PATH(ARGS)`
    Call {
        callee: Path,
        args: Vec<Arg>,
    },
    /// `EXPR.NAME` where EXPR is not a name (`x.backend().resolve` without parentheses).
    Attr {
        base: Box<Expr>,
        name: Ident,
    },
    /// `EXPR.NAME(ARGS)` where EXPR is not a name (`dcprio.backend().resolve()`).
    Method {
        base: Box<Expr>,
        name: Ident,
        args: Vec<Arg>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

/// A number with a duration unit: `10s`, `1.5m`, `-2h`.
#[derive(Clone, Debug, PartialEq)]
pub struct Duration {
    /// The number as written (sign included).
    pub value: f64,
    /// `ms`, `s`, `m`, `h`, `d`, `w` or `y`.
    pub unit: String,
    pub seconds: f64,
}

/// A number with a bytes unit that is not also a duration unit: `100KB`, `1M`, `10B`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bytes {
    pub value: f64,
    pub unit: String,
    pub bytes: f64,
}

/// Seconds per unit, as Varnish's `VNUM_duration_unit`.
pub fn duration_unit_scale(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 604800.0,
        "y" => 31536000.0,
        _ => return None,
    })
}

/// Bytes per unit, as Varnish's `VNUM_bytes_unit`: `B`, `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`,
/// `P`/`PB`, any case.
pub fn bytes_unit_scale(unit: &str) -> Option<f64> {
    let u = unit.as_bytes();
    let (first, rest) = u.split_first()?;
    let scale = match first.to_ascii_lowercase() {
        b'b' if rest.is_empty() => return Some(1.0),
        b'k' => 1024f64,
        b'm' => 1024f64.powi(2),
        b'g' => 1024f64.powi(3),
        b't' => 1024f64.powi(4),
        b'p' => 1024f64.powi(5),
        _ => return None,
    };
    match rest {
        [] => Some(scale),
        [b] if b.eq_ignore_ascii_case(&b'b') => Some(scale),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `!` — binds looser than comparisons: `!a ~ b` is `!(a ~ b)`.
    Not,
    /// `-` before a non-literal — Varnish applies it to the whole following expression:
    /// `-a + b` is `-(a + b)`.
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `~` (regex or ACL match)
    Match,
    /// `!~`
    NoMatch,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::Match => "~",
            BinOp::NoMatch => "!~",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

/// A call argument: positional (`name == None`) or named (`by = HASH`).
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(duration_unit_scale("ms"), Some(1e-3));
        assert_eq!(duration_unit_scale("M"), None);
        assert_eq!(bytes_unit_scale("KB"), Some(1024.0));
        assert_eq!(bytes_unit_scale("mb"), Some(1048576.0));
        assert_eq!(bytes_unit_scale("B"), Some(1.0));
        assert_eq!(bytes_unit_scale("BB"), None);
        assert_eq!(bytes_unit_scale("x"), None);
    }

    #[test]
    fn path_helpers() {
        let sp = Span::new(FileId(0), 0, 1);
        let part = |n: &str| PathPart {
            name: n.into(),
            quoted: false,
            span: sp,
        };
        let p = Path {
            parts: vec![part("req"), part("http"), part("host")],
            span: sp,
        };
        assert_eq!(p.dotted(), "req.http.host");
        assert!(p.is("req.http.host"));
        assert!(!p.is("req.http"));
        assert!(!p.is("req.http.host.x"));
        assert_eq!(p.prefix(2).dotted(), "req.http");
    }
}
