//! The compiled VCL program: what the checker ([`super::check`]) produces and the interpreter
//! runs.
//!
//! Why a typed tree and not the AST: every decision that needs the symbol table is taken once, at
//! load, so evaluating a request allocates nothing that the VCL did not ask for (a string
//! concatenation does). Concretely:
//!
//! * subroutines are [`SubCode`]s in [`Program::subs`], addressed by [`SubId`]; each built-in
//!   method has exactly one, found through [`Program::method`], whose body is the concatenation
//!   of every definition of that method in Varnish's order: the user's definitions (in file
//!   order, includes spliced in), then the built-in VCL of Varnish 7.1 (`src/vcl/builtin.vcl`);
//! * a variable is a [`VarRef`]: an index into [`super::symbols::VARS`] plus, for `*.http.X`,
//!   the header name lower-cased once;
//! * literals are folded: durations are `f64` seconds, bytes are `f64` bytes, `-` on a literal
//!   and arithmetic between literals are computed at load;
//! * implicit conversions are explicit nodes ([`ExprKind::ToString`], [`ExprKind::ToBool`],
//!   [`ExprKind::IntToReal`]) and a director object given where a BACKEND is expected is a call of
//!   its `.backend()` method;
//! * regular expressions are compiled once ([`super::re::Regex`] in an `Arc`, shared between
//!   identical literals); ACLs are prefix tables ([`AclTable`]) sorted most specific first;
//! * backends ([`BackendDef`]) and probes ([`ProbeSpec`]) are tables with every value defaulted as
//!   Varnish does, host names already resolved; director objects created by `new` in vcl_init are
//!   [`ObjectDecl`]s, their `new` statement is [`Stmt::New`] in vcl_init's code.
//!
//! Runtime notes for the interpreter: `return (fetch)` written directly in vcl_hit is compiled to
//! [`Action::Miss`]; a `return (fetch)` in a custom sub only reached from vcl_hit stays `Fetch`
//! and must be read as `Miss` when the current method is vcl_hit (the checker warned about it).
//! `regsub`'s replacement uses Varnish's `\0`..`\9` references, not the regex crate's `$1`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use super::diag::Diagnostic;
pub use super::symbols::{Action, ArithOp, CmpOp, ObjectKind, Sub as Method, Syntax, Type};
use super::symbols::{Func, TypeMethod, Var, VARS};

pub type SubId = usize;
pub type BackendId = usize;
pub type ProbeId = usize;
pub type AclId = usize;
pub type ObjId = usize;

/// A whole compiled VCL.
#[derive(Debug, Clone)]
pub struct Program {
    /// The top file's `vcl 4.x;`.
    pub syntax: Syntax,
    /// The imported VMODs (`std`, `directors`).
    pub imports: Vec<Box<str>>,
    pub backends: Vec<BackendDef>,
    /// The backend named `default`, else the first declared; `None` only without any backend.
    pub default_backend: Option<BackendId>,
    /// Named probes first (declaration order), then the inline ones.
    pub probes: Vec<ProbeSpec>,
    /// `probe default { }`: applies to every backend without `.probe`.
    pub default_probe: Option<ProbeId>,
    pub acls: Vec<AclTable>,
    pub objects: Vec<ObjectDecl>,
    pub subs: Vec<SubCode>,
    /// Indexed by the position of the method in [`Method::ALL`].
    pub methods: [SubId; 14],
    /// Warnings of the compilation (parse warnings included).
    pub warnings: Vec<Diagnostic>,
}

impl Program {
    /// The code of a built-in method.
    pub fn method(&self, m: Method) -> &SubCode {
        let i = Method::ALL.iter().position(|x| *x == m).unwrap_or(0);
        &self.subs[self.methods[i]]
    }

    pub fn backend_by_name(&self, name: &str) -> Option<BackendId> {
        self.backends.iter().position(|b| &*b.name == name)
    }
}

/// One subroutine (a built-in method with all its definitions concatenated, or a custom sub).
#[derive(Debug, Clone)]
pub struct SubCode {
    pub name: Box<str>,
    pub method: Option<Method>,
    pub body: Vec<Stmt>,
}

#[derive(Debug, Clone)]
pub enum Stmt {
    Set {
        target: VarRef,
        op: super::symbols::AssignOp,
        value: Expr,
    },
    Unset(VarRef),
    /// `if`/`elsif` branches in order, then the `else` block (possibly empty).
    If {
        branches: Vec<(Expr, Vec<Stmt>)>,
        otherwise: Vec<Stmt>,
    },
    /// `return;` (leaves a custom sub).
    ReturnBare,
    /// `return (action[(args)])`; arguments in the action's declared order, absent ones `None`.
    Return {
        action: Action,
        args: Vec<Option<Expr>>,
    },
    Call(SubId),
    /// `new x = directors.kind(args)` (vcl_init only).
    New {
        obj: ObjId,
        args: Vec<Option<Expr>>,
    },
    HashData(Expr),
    Synthetic(Expr),
    Ban(Expr),
    /// A function or method call used as a statement (`std.log(..)`, `vdir.add_backend(b1)`).
    Eval(Expr),
}

/// A variable: the table entry and, for `*.http.X`, the header name (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    /// Index into [`VARS`].
    pub id: u16,
    pub header: Option<Box<str>>,
}

impl VarRef {
    pub fn var(&self) -> &'static Var {
        &VARS[self.id as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Expr {
    /// The value's type (header reads are `String`).
    pub ty: Type,
    pub kind: ExprKind,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Str(Box<str>),
    Int(i64),
    Real(f64),
    /// Seconds.
    Duration(f64),
    Bytes(f64),
    Bool(bool),
    Blob(Arc<[u8]>),
    /// An IP constant (a string literal where an IP is expected, resolved at load).
    Ip(IpAddr),
    /// An ENUM argument value (`HASH`, `NOW`, ...).
    Enum(&'static str),
    Var(VarRef),
    Backend(BackendId),
    /// `none`: no backend (false in a BOOL context).
    NoBackend,
    Probe(ProbeId),
    Acl(AclId),
    Object(ObjId),
    /// A compiled regex literal (regsub's pattern).
    Regex(Arc<super::re::Regex>),
    ToString(Box<Expr>),
    /// BOOL context: BACKEND and INT non-zero, DURATION > 0, strings "is set".
    ToBool(Box<Expr>),
    IntToReal(Box<Expr>),
    /// String concatenation; every part is a STRING.
    Concat(Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Arith {
        op: ArithOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Cmp {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    RegexMatch {
        subject: Box<Expr>,
        regex: Arc<super::re::Regex>,
        negate: bool,
    },
    AclMatch {
        ip: Box<Expr>,
        acl: AclId,
        negate: bool,
    },
    /// A built-in or `std` function; arguments in declared order, omitted ones `None`.
    Call {
        func: &'static Func,
        args: Vec<Option<Expr>>,
    },
    /// A method of a director object.
    Method {
        obj: ObjId,
        method: &'static Func,
        args: Vec<Option<Expr>>,
    },
    /// `.resolve()` on a BACKEND, `.upper()`/`.lower()` on a string.
    TypeMethod {
        on: Box<Expr>,
        method: &'static TypeMethod,
    },
}

impl Expr {
    pub fn is_const(&self) -> bool {
        matches!(
            self.kind,
            ExprKind::Str(_)
                | ExprKind::Int(_)
                | ExprKind::Real(_)
                | ExprKind::Duration(_)
                | ExprKind::Bytes(_)
                | ExprKind::Bool(_)
        )
    }
}

/// A backend with every attribute resolved.
#[derive(Debug, Clone)]
pub struct BackendDef {
    pub name: Box<str>,
    pub endpoint: Endpoint,
    /// `.host` as written (`None` for `.path` and `none` backends).
    pub host: Option<Box<str>>,
    /// `.port` (default `"80"`; a port embedded in `.host` wins, as in Varnish).
    pub port: Box<str>,
    /// `.host_header`, default the `.host` text, `"0.0.0.0"` for a `.path` backend.
    pub host_header: Box<str>,
    /// Seconds; `None`: the `connect_timeout` parameter (3.5 s by default).
    pub connect_timeout: Option<f64>,
    /// Seconds; `None`: the `first_byte_timeout` parameter (60 s).
    pub first_byte_timeout: Option<f64>,
    /// Seconds; `None`: the `between_bytes_timeout` parameter (60 s).
    pub between_bytes_timeout: Option<f64>,
    /// 0: unlimited.
    pub max_connections: u32,
    /// 0: none, else PROXY protocol version 1 or 2.
    pub proxy_header: u8,
    pub preamble: Option<Arc<[u8]>>,
    /// `.via` (Varnish 7.3): a backend declared earlier, itself without `.via`.
    pub via: Option<BackendId>,
    /// The authority TLV a `.via` connection sends (Varnish 7.3): `.authority`, else
    /// `.host_header`, else `.host`, without its port; `None` without `.via` or when `""`.
    pub authority: Option<Box<str>>,
    /// `.wait_limit` (Varnish 7.6): how many fetches may queue at `.max_connections`;
    /// `None`: the `backend_wait_limit` parameter.
    pub wait_limit: Option<u32>,
    /// `.wait_timeout` (Varnish 7.6), seconds; `None`: `backend_wait_timeout`.
    pub wait_timeout: Option<f64>,
    /// Its `.probe`, or the `default` probe when it has none.
    pub probe: Option<ProbeId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `backend x none;`
    None,
    /// At most one address per family, resolved at load.
    Tcp {
        ipv4: Option<SocketAddr>,
        ipv6: Option<SocketAddr>,
    },
    /// `.path`: a Unix domain socket.
    Uds(PathBuf),
}

/// A probe with Varnish's defaults applied (`vbp_set_defaults`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// `None` for an inline `.probe = { }`.
    pub name: Option<Box<str>>,
    pub request: ProbeRequest,
    pub expected_response: u16,
    /// Seconds (default 2).
    pub timeout: f64,
    /// Seconds (default 5).
    pub interval: f64,
    pub window: u32,
    pub threshold: u32,
    pub initial: u32,
    /// `.expect_close` (Varnish 7.3+; 7.1 has no such field): true (the default) means the
    /// backend must close the connection before `.timeout`, false means whatever arrived by then
    /// is judged.
    pub expect_close: bool,
    /// `.port` (a ringcache extension, like HAProxy's `check port`): the probe connects to the
    /// backend's address on this port instead of the backend's. The Host header is unchanged.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeRequest {
    /// `.url` (default `/`): `GET <url> HTTP/1.1`, `Host: <host_header>`, `Connection: close`.
    Url(Box<str>),
    /// `.request`: the strings, each followed by CRLF, then a final CRLF.
    Raw(Arc<[u8]>),
}

/// An ACL as a prefix table: entries sorted most specific first; the first match decides.
#[derive(Debug, Clone, PartialEq)]
pub struct AclTable {
    pub name: Box<str>,
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    pub prefix: u8,
    pub negated: bool,
}

impl AclEntry {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix.min(32) as u32)
                };
                u32::from(a) & m == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix.min(128) as u32)
                };
                u128::from(a) & m == u128::from(n)
            }
            _ => false,
        }
    }
}

impl AclTable {
    /// Whether `ip` matches (a negated entry that matches first means no).
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        for e in &self.entries {
            if e.contains(ip) {
                return !e.negated;
            }
        }
        false
    }
}

/// `new NAME = directors.KIND(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDecl {
    pub name: Box<str>,
    pub kind: ObjectKind,
}
