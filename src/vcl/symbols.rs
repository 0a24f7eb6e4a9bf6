//! The VCL symbol tables of Varnish 7.1: types, built-in subroutines and their `return` actions,
//! variables with their read/write/unset rules per subroutine, built-in functions and statements,
//! the `std` and `directors` VMODs, type methods, and the operator rules of expressions.
//!
//! Pure data and lookups, no I/O. Transcribed from varnish-cache `varnish-7.1.2`
//! (commit c9210d83, identical to 7.1.0 for every file used here):
//! `doc/sphinx/reference/vcl_var.rst` (variables), `lib/libvcc/generate.py` (the `returns`
//! table and what "client", "backend" and "all" mean), `lib/libvcc/vcc_action.c` (statements,
//! return arguments, assignment operators), `lib/libvcc/vcc_expr.c` and `vcc_types.c` (conversions,
//! operators, comparisons, type methods), `lib/libvcc/vcc_xref.c`, `vcc_var.c` and `vcc_symb.c`
//! (error texts), `vmod/vmod_std.vcc` and `vmod/vmod_directors.vcc` (function signatures).
//!
//! Every entry carries `supported`: whether ringcache's runtime implements it. The checker accepts
//! exactly what Varnish accepts and reports an unsupported symbol as "not supported by ringcache"
//! rather than as unknown.

use std::fmt;

// ---------------------------------------------------------------------------------------------
// Types

/// A VCL type (`vcc_types.c`). String-valued expressions are `String`; `Strands` is the argument
/// type of functions taking a string list (any string expression converts to it, as to `String`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Acl,
    Backend,
    Blob,
    /// `bereq.body`, `beresp.body`, `resp.body`: assigned strings or a BLOB, never read.
    Body,
    Bool,
    Bytes,
    Duration,
    /// An ENUM argument and its allowed values.
    Enum(&'static [&'static str]),
    Header,
    /// The whole of `req`, `bereq`, `beresp`, `resp` (only useful as a VMOD argument).
    Http,
    /// A VMOD object created by `new`.
    Instance,
    Int,
    Ip,
    Probe,
    Real,
    /// Only a string literal is a REGEX (`~`, `!~`, regsub's second argument); it is compiled once
    /// at load.
    Regex,
    Stevedore,
    String,
    Strands,
    Sub,
    Time,
    /// A VCL label, as in `return (vcl(label))`.
    Vcl,
    Void,
}

impl Type {
    /// The name Varnish prints in messages (`vcc_utype`: STRANDS prints as STRING).
    pub fn name(self) -> &'static str {
        match self {
            Type::Acl => "ACL",
            Type::Backend => "BACKEND",
            Type::Blob => "BLOB",
            Type::Body => "BODY",
            Type::Bool => "BOOL",
            Type::Bytes => "BYTES",
            Type::Duration => "DURATION",
            Type::Enum(_) => "ENUM",
            Type::Header => "HEADER",
            Type::Http => "HTTP",
            Type::Instance => "INSTANCE",
            Type::Int => "INT",
            Type::Ip => "IP",
            Type::Probe => "PROBE",
            Type::Real => "REAL",
            Type::Regex => "REGEX",
            Type::Stevedore => "STEVEDORE",
            Type::String | Type::Strands => "STRING",
            Type::Sub => "SUB",
            Type::Time => "TIME",
            Type::Vcl => "VCL",
            Type::Void => "VOID",
        }
    }

    /// Whether a value of this type converts to STRING (it may then be concatenated with `+` in a
    /// string context, assigned to a STRING/HEADER, or passed as a STRING argument). Otherwise
    /// Varnish says `Cannot convert <TYPE> to STRING.`
    pub fn to_string_ok(self) -> bool {
        matches!(
            self,
            Type::Acl
                | Type::Backend
                | Type::Blob
                | Type::Bool
                | Type::Bytes
                | Type::Duration
                | Type::Enum(_)
                | Type::Header
                | Type::Int
                | Type::Ip
                | Type::Real
                | Type::Stevedore
                | Type::String
                | Type::Strands
                | Type::Time
        )
    }

    /// Whether a value of this type may stand where a BOOL is expected (`if (x)`, `!x`, `&&`, `||`):
    /// BACKEND and INT test non-zero (`none` is false), DURATION tests `> 0`, a string (and so a
    /// header) tests "is set". REAL is deliberately not folded.
    pub fn to_bool_ok(self) -> bool {
        matches!(
            self,
            Type::Bool
                | Type::Backend
                | Type::Int
                | Type::Duration
                | Type::String
                | Type::Strands
                | Type::Header
        )
    }

    /// The type of the right operand of `*` and `/` (`multype`); the right operand may also be
    /// INT. `None`: `Operator * not possible on type X.` `%` is only possible on INT.
    pub fn mul_type(self) -> Option<Type> {
        match self {
            Type::Int => Some(Type::Int),
            Type::Real | Type::Duration | Type::Bytes => Some(Type::Real),
            _ => None,
        }
    }

    /// The C-ish name used in the Varnish docs' signatures (`STRANDS` kept as such).
    pub fn sig_name(self) -> &'static str {
        match self {
            Type::Strands => "STRANDS",
            t => t.name(),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Subroutines

/// The built-in subroutines (methods) of VCL 7.1, in `generate.py` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sub {
    Recv,
    Pipe,
    Pass,
    Hash,
    Purge,
    Miss,
    Hit,
    Deliver,
    Synth,
    BackendFetch,
    BackendResponse,
    BackendError,
    Init,
    Fini,
}

impl Sub {
    pub const ALL: [Sub; 14] = [
        Sub::Recv,
        Sub::Pipe,
        Sub::Pass,
        Sub::Hash,
        Sub::Purge,
        Sub::Miss,
        Sub::Hit,
        Sub::Deliver,
        Sub::Synth,
        Sub::BackendFetch,
        Sub::BackendResponse,
        Sub::BackendError,
        Sub::Init,
        Sub::Fini,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sub::Recv => "vcl_recv",
            Sub::Pipe => "vcl_pipe",
            Sub::Pass => "vcl_pass",
            Sub::Hash => "vcl_hash",
            Sub::Purge => "vcl_purge",
            Sub::Miss => "vcl_miss",
            Sub::Hit => "vcl_hit",
            Sub::Deliver => "vcl_deliver",
            Sub::Synth => "vcl_synth",
            Sub::BackendFetch => "vcl_backend_fetch",
            Sub::BackendResponse => "vcl_backend_response",
            Sub::BackendError => "vcl_backend_error",
            Sub::Init => "vcl_init",
            Sub::Fini => "vcl_fini",
        }
    }

    /// `"vcl_recv"` → `Recv`; anything else (custom subs, unknown `vcl_*`) → `None`.
    pub fn from_name(name: &str) -> Option<Sub> {
        Sub::ALL.into_iter().find(|s| s.name() == name)
    }

    pub const fn bit(self) -> u32 {
        1 << self as u32
    }

    pub const fn mask(self) -> SubMask {
        SubMask(self.bit())
    }

    pub fn is_client(self) -> bool {
        SubMask::CLIENT.contains(self)
    }

    pub fn is_backend(self) -> bool {
        SubMask::BACKEND.contains(self)
    }

    pub fn is_housekeeping(self) -> bool {
        SubMask::HOUSEKEEPING.contains(self)
    }
}

impl fmt::Display for Sub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of built-in subroutines, one bit per [`Sub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SubMask(pub u32);

impl SubMask {
    pub const NONE: SubMask = SubMask(0);
    /// "client" in the docs (`VCL_MET_TASK_C`).
    pub const CLIENT: SubMask = SubMask::of(&[
        Sub::Recv,
        Sub::Pipe,
        Sub::Pass,
        Sub::Hash,
        Sub::Purge,
        Sub::Miss,
        Sub::Hit,
        Sub::Deliver,
        Sub::Synth,
    ]);
    /// "backend" in the docs (`VCL_MET_TASK_B`).
    pub const BACKEND: SubMask =
        SubMask::of(&[Sub::BackendFetch, Sub::BackendResponse, Sub::BackendError]);
    /// vcl_init and vcl_fini (`VCL_MET_TASK_H`).
    pub const HOUSEKEEPING: SubMask = SubMask::of(&[Sub::Init, Sub::Fini]);
    /// "client, backend" ("both" in generate.py).
    pub const BOTH: SubMask = SubMask(SubMask::CLIENT.0 | SubMask::BACKEND.0);
    /// "all": every built-in subroutine, vcl_init and vcl_fini included.
    pub const ALL: SubMask = SubMask(SubMask::BOTH.0 | SubMask::HOUSEKEEPING.0);

    pub const fn of(subs: &[Sub]) -> SubMask {
        let mut m = 0;
        let mut i = 0;
        while i < subs.len() {
            m |= subs[i].bit();
            i += 1;
        }
        SubMask(m)
    }

    pub const fn union(self, other: SubMask) -> SubMask {
        SubMask(self.0 | other.0)
    }

    pub const fn intersect(self, other: SubMask) -> SubMask {
        SubMask(self.0 & other.0)
    }

    pub const fn contains(self, sub: Sub) -> bool {
        self.0 & sub.bit() != 0
    }

    /// Every sub of `other` is in `self`.
    pub const fn includes(self, other: SubMask) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Sub> {
        Sub::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

// ---------------------------------------------------------------------------------------------
// VCL syntax versions

/// The `vcl 4.0;` / `vcl 4.1;` syntax of a file; some variables exist in one only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Syntax {
    V40,
    V41,
}

impl Syntax {
    /// Varnish's encoding: 40, 41.
    pub fn number(self) -> u8 {
        match self {
            Syntax::V40 => 40,
            Syntax::V41 => 41,
        }
    }
}

const VCL_LOW: u8 = 40;
const VCL_HIGH: u8 = 41;

// ---------------------------------------------------------------------------------------------
// Variables

/// One variable of `vcl_var.rst`. Header families are named with their trailing dot
/// (`"req.http."`) and have type `Header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub ty: Type,
    /// "Readable from".
    pub read: SubMask,
    /// "Writable from".
    pub write: SubMask,
    /// "Unsetable from".
    pub unset: SubMask,
    /// Lowest VCL syntax (×10) where the variable exists; 0 = no lower bound (`VCL >= 4.1` → 41).
    pub since: u8,
    /// Highest VCL syntax (×10); 99 = no upper bound (`VCL <= 4.0` → 40).
    pub until: u8,
    /// ringcache's runtime implements it.
    pub supported: bool,
}

impl Var {
    const fn new(name: &'static str, ty: Type, read: SubMask) -> Var {
        Var {
            name,
            ty,
            read,
            write: SubMask::NONE,
            unset: SubMask::NONE,
            since: 0,
            until: 99,
            supported: false,
        }
    }
    const fn w(mut self, write: SubMask) -> Var {
        self.write = write;
        self
    }
    const fn rw(mut self) -> Var {
        self.write = self.read;
        self
    }
    const fn u(mut self, unset: SubMask) -> Var {
        self.unset = unset;
        self
    }
    const fn until40(mut self) -> Var {
        self.until = 40;
        self
    }
    const fn since41(mut self) -> Var {
        self.since = 41;
        self
    }
    const fn sup(mut self) -> Var {
        self.supported = true;
        self
    }

    /// A `*.http.` family (its lookups carry a header name).
    pub fn is_header_family(&self) -> bool {
        self.ty == Type::Header
    }

    pub fn in_syntax(&self, syntax: Syntax) -> bool {
        self.since <= syntax.number() && syntax.number() <= self.until
    }
}

const C: SubMask = SubMask::CLIENT;
const B: SubMask = SubMask::BACKEND;
const CB: SubMask = SubMask::BOTH;
const ALL: SubMask = SubMask::ALL;
const PIPE_B: SubMask = SubMask(Sub::Pipe.bit() | SubMask::BACKEND.0);
const BERESP: SubMask = SubMask::of(&[Sub::BackendResponse, Sub::BackendError]);
const HIT_DELIVER: SubMask = SubMask::of(&[Sub::Hit, Sub::Deliver]);
const HIT: SubMask = Sub::Hit.mask();
const RESP: SubMask = SubMask::of(&[Sub::Deliver, Sub::Synth]);

use Type as T;

/// Every variable of Varnish 7.1 (`vcl_var.rst`, in its order), except the dynamic
/// `storage.<name>.*` family. A name appears twice only with disjoint syntax ranges.
pub static VARS: &[Var] = &[
    // local, server, remote and client
    Var::new("client.identity", T::String, CB).w(C),
    Var::new("client.ip", T::Ip, CB).sup(),
    Var::new("server.hostname", T::String, ALL),
    Var::new("server.identity", T::String, ALL),
    Var::new("server.ip", T::Ip, CB).sup(),
    Var::new("remote.ip", T::Ip, CB).sup(),
    Var::new("local.endpoint", T::String, CB).since41(),
    Var::new("local.ip", T::Ip, CB).sup(),
    Var::new("local.socket", T::String, CB).since41(),
    // req and req_top
    Var::new("req", T::Http, C),
    Var::new("req.backend_hint", T::Backend, C).rw().sup(),
    Var::new("req.can_gzip", T::Bool, C),
    Var::new("req.esi", T::Bool, C).rw().until40(),
    Var::new("req.esi_level", T::Int, C),
    Var::new("req.grace", T::Duration, C).rw().sup(),
    Var::new(
        "req.hash",
        T::Blob,
        SubMask::of(&[Sub::Hit, Sub::Miss, Sub::Pass, Sub::Purge, Sub::Deliver]),
    ),
    Var::new("req.hash_always_miss", T::Bool, C).rw().sup(),
    Var::new("req.hash_ignore_busy", T::Bool, C).rw(),
    Var::new("req.hash_ignore_vary", T::Bool, C).rw(),
    Var::new("req.http.", T::Header, C).rw().u(C).sup(),
    Var::new("req.is_hitmiss", T::Bool, C),
    Var::new("req.is_hitpass", T::Bool, C),
    Var::new("req.method", T::String, C).rw().sup(),
    Var::new("req.proto", T::String, C).rw().until40().sup(),
    Var::new("req.proto", T::String, C).since41().sup(),
    Var::new("req.restarts", T::Int, C).sup(),
    Var::new("req.storage", T::Stevedore, C).rw(),
    Var::new("req.time", T::Time, C),
    Var::new("req.transport", T::String, C),
    Var::new("req.ttl", T::Duration, C).rw().sup(),
    Var::new("req.url", T::String, C).rw().sup(),
    Var::new("req.xid", T::String, C).sup(),
    Var::new("req_top.http.", T::Header, C),
    Var::new("req_top.method", T::String, C),
    Var::new("req_top.proto", T::String, C),
    Var::new("req_top.time", T::Time, C),
    Var::new("req_top.url", T::String, C),
    // bereq
    Var::new("bereq", T::Http, B),
    Var::new("bereq.backend", T::Backend, PIPE_B).rw().sup(),
    Var::new("bereq.between_bytes_timeout", T::Duration, B)
        .rw()
        .sup(),
    Var::new("bereq.body", T::Body, SubMask::NONE).u(Sub::BackendFetch.mask()),
    Var::new("bereq.connect_timeout", T::Duration, PIPE_B)
        .rw()
        .sup(),
    Var::new("bereq.first_byte_timeout", T::Duration, B)
        .rw()
        .sup(),
    Var::new("bereq.hash", T::Blob, PIPE_B),
    Var::new("bereq.http.", T::Header, PIPE_B)
        .rw()
        .u(PIPE_B)
        .sup(),
    Var::new("bereq.is_bgfetch", T::Bool, B).sup(),
    Var::new("bereq.is_hitmiss", T::Bool, B),
    Var::new("bereq.is_hitpass", T::Bool, B),
    Var::new("bereq.method", T::String, PIPE_B).rw().sup(),
    Var::new("bereq.proto", T::String, PIPE_B)
        .rw()
        .until40()
        .sup(),
    Var::new("bereq.proto", T::String, PIPE_B).since41().sup(),
    Var::new("bereq.retries", T::Int, B).sup(),
    Var::new("bereq.time", T::Time, PIPE_B),
    Var::new("bereq.uncacheable", T::Bool, B).sup(),
    Var::new("bereq.url", T::String, PIPE_B).rw().sup(),
    Var::new("bereq.xid", T::String, PIPE_B).sup(),
    // beresp
    Var::new("beresp", T::Http, BERESP),
    Var::new("beresp.age", T::Duration, BERESP),
    Var::new("beresp.backend", T::Backend, BERESP).sup(),
    Var::new("beresp.backend.ip", T::Ip, Sub::BackendResponse.mask()).until40(),
    Var::new("beresp.backend.name", T::String, BERESP).sup(),
    Var::new("beresp.body", T::Body, SubMask::NONE)
        .w(Sub::BackendError.mask())
        .sup(),
    Var::new("beresp.do_esi", T::Bool, BERESP).rw(),
    Var::new("beresp.do_gunzip", T::Bool, BERESP).rw(),
    Var::new("beresp.do_gzip", T::Bool, BERESP).rw(),
    Var::new("beresp.do_stream", T::Bool, BERESP).rw(),
    Var::new("beresp.filters", T::String, Sub::BackendResponse.mask()).rw(),
    Var::new("beresp.grace", T::Duration, BERESP).rw().sup(),
    Var::new("beresp.http.", T::Header, BERESP)
        .rw()
        .u(BERESP)
        .sup(),
    Var::new("beresp.keep", T::Duration, BERESP).rw().sup(),
    Var::new("beresp.proto", T::String, BERESP)
        .rw()
        .until40()
        .sup(),
    Var::new("beresp.proto", T::String, BERESP).since41().sup(),
    Var::new("beresp.reason", T::String, BERESP).rw().sup(),
    Var::new("beresp.status", T::Int, BERESP).rw().sup(),
    Var::new("beresp.storage", T::Stevedore, BERESP).rw(),
    Var::new("beresp.storage_hint", T::String, BERESP)
        .rw()
        .until40(),
    Var::new("beresp.time", T::Time, BERESP),
    Var::new("beresp.ttl", T::Duration, BERESP).rw().sup(),
    Var::new("beresp.uncacheable", T::Bool, BERESP).rw().sup(),
    Var::new("beresp.was_304", T::Bool, BERESP),
    // obj
    Var::new("obj.age", T::Duration, HIT_DELIVER),
    Var::new("obj.can_esi", T::Bool, HIT_DELIVER),
    Var::new("obj.grace", T::Duration, HIT_DELIVER).sup(),
    Var::new("obj.hits", T::Int, HIT_DELIVER).sup(),
    Var::new("obj.http.", T::Header, HIT).sup(),
    Var::new("obj.keep", T::Duration, HIT_DELIVER).sup(),
    Var::new("obj.proto", T::String, HIT),
    Var::new("obj.reason", T::String, HIT),
    Var::new("obj.status", T::Int, HIT).sup(),
    Var::new("obj.storage", T::Stevedore, HIT_DELIVER),
    Var::new("obj.time", T::Time, HIT_DELIVER),
    Var::new("obj.ttl", T::Duration, HIT_DELIVER).sup(),
    Var::new("obj.uncacheable", T::Bool, Sub::Deliver.mask()),
    // resp
    Var::new("resp", T::Http, RESP),
    Var::new("resp.body", T::Body, SubMask::NONE)
        .w(Sub::Synth.mask())
        .sup(),
    Var::new("resp.do_esi", T::Bool, RESP).rw().since41(),
    Var::new("resp.filters", T::String, RESP).rw(),
    Var::new("resp.http.", T::Header, RESP).rw().u(RESP).sup(),
    Var::new("resp.is_streaming", T::Bool, RESP),
    Var::new("resp.proto", T::String, RESP).rw().until40().sup(),
    Var::new("resp.proto", T::String, RESP).since41().sup(),
    Var::new("resp.reason", T::String, RESP).rw().sup(),
    Var::new("resp.status", T::Int, RESP).rw().sup(),
    Var::new("resp.time", T::Time, RESP),
    // special
    Var::new("now", T::Time, ALL).sup(),
    // sess
    Var::new("sess.idle_send_timeout", T::Duration, C).rw(),
    Var::new("sess.send_timeout", T::Duration, C).rw(),
    Var::new("sess.timeout_idle", T::Duration, C).rw(),
    Var::new("sess.timeout_linger", T::Duration, C).rw(),
    Var::new("sess.xid", T::String, CB).since41(),
];

/// A resolved variable reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarLookup<'a> {
    Exact(&'static Var),
    /// `req.http.X-Foo`: the family (`req.http.`) and the header name as written (`X-Foo`).
    Header {
        var: &'static Var,
        header: &'a str,
    },
}

impl VarLookup<'_> {
    /// The table entry (for a header, its family): type and read/write/unset masks.
    pub fn var(&self) -> &'static Var {
        match *self {
            VarLookup::Exact(v) | VarLookup::Header { var: v, .. } => v,
        }
    }

    pub fn ty(&self) -> Type {
        self.var().ty
    }
}

/// Why a variable name did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VarError {
    NotFound,
    /// The variable exists, but not in this VCL syntax (e.g. `req.esi` in `vcl 4.1`).
    WrongSyntax {
        since: u8,
        until: u8,
    },
    /// `*.http.<name>` with an invalid header name: Varnish's message.
    BadHeader(String),
}

impl VarError {
    /// Varnish's message (`vcc_symb.c`, `vcc_var.c`), without the trailing `At:` location.
    pub fn message(&self, name: &str) -> String {
        match self {
            VarError::NotFound => format!("Symbol not found: '{name}'"),
            VarError::WrongSyntax { since, until } => {
                let mut s = format!("Symbol not found: '{name}' (Only available when");
                if *since >= VCL_LOW {
                    s.push_str(&format!(" {}.{} <=", since / 10, since % 10));
                }
                s.push_str(" VCL syntax");
                if *until <= VCL_HIGH {
                    s.push_str(&format!(" <= {}.{}", until / 10, until % 10));
                }
                s.push(')');
                s
            }
            VarError::BadHeader(m) => m.clone(),
        }
    }
}

/// Validates the `X` of `req.http.X` as Varnish does (`vcc_Var_Wildcard`): fewer than 127 bytes,
/// RFC 9110 token characters only. The message is Varnish's.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.len() >= 127 {
        let head: String = name.chars().take(20).collect();
        return Err(format!("HTTP header ({head}..) is too long."));
    }
    for &b in name.as_bytes() {
        if !is_tchar(b) {
            return Err(format!(
                "Invalid character '{}' in header name.",
                quote_plain(b)
            ));
        }
    }
    Ok(())
}

/// RFC 9110 `tchar` (Varnish `vct_istchar`).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `VSB_quote(.., VSB_QUOTE_PLAIN)` of one byte.
fn quote_plain(b: u8) -> String {
    match b {
        b'"' => "\\\"".into(),
        b'\\' => "\\\\".into(),
        b'\n' => "\\n".into(),
        b'\r' => "\\r".into(),
        b'\t' => "\\t".into(),
        0x0b => "\\v".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\{b:03o}"),
    }
}

/// Resolves a variable name for a VCL syntax. Header names are everything after the family's
/// `.http.` (the parser passes the unquoted name of `req.http."x.y"`).
pub fn resolve_var(name: &str, syntax: Syntax) -> Result<VarLookup<'_>, VarError> {
    for var in VARS.iter().filter(|v| v.is_header_family()) {
        if let Some(header) = name.strip_prefix(var.name) {
            if header.is_empty() {
                return Err(VarError::NotFound);
            }
            check_header_name(header).map_err(VarError::BadHeader)?;
            return Ok(VarLookup::Header { var, header });
        }
    }
    let mut other = None;
    for var in VARS.iter().filter(|v| v.name == name) {
        if var.in_syntax(syntax) {
            return Ok(VarLookup::Exact(var));
        }
        other.get_or_insert(var);
    }
    match other {
        Some(v) => Err(VarError::WrongSyntax {
            since: v.since,
            until: v.until,
        }),
        None => Err(VarError::NotFound),
    }
}

/// [`resolve_var`] for `vcl 4.1`, without the reason: `"req.http.X-Foo"` →
/// `Header { var: req.http., header: "X-Foo" }`.
pub fn lookup_var(name: &str) -> Option<VarLookup<'_>> {
    resolve_var(name, Syntax::V41).ok()
}

// ---------------------------------------------------------------------------------------------
// Access rules and their messages (vcc_xref.c, vcc_action.c)

/// A use of a symbol that is restricted per subroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading a variable, or calling a function (functions are "read").
    Read,
    /// `set`.
    Write,
    /// `unset`.
    Unset,
    /// A statement restricted to some subs (`hash_data`, `synthetic`, `new`).
    Action,
}

impl Access {
    /// The `xrefuse` error prefix.
    pub fn verb(self) -> &'static str {
        match self {
            Access::Read => "Not available",
            Access::Write => "Cannot be set",
            Access::Unset => "Cannot be unset",
            Access::Action => "Not a valid action",
        }
    }
}

/// Varnish's message for a restricted use. `called`: the use sits in a custom sub reached by
/// `call` from `sub` (Varnish then adds `...in subroutine "x"` / `...called from "y"` lines, which
/// are the checker's).
/// e.g. `Not available in subroutine 'vcl_recv'.`, `Cannot be set from subroutine 'vcl_deliver'.`
pub fn restriction_error(kind: Access, sub: Sub, called: bool) -> String {
    let how = if called { "from" } else { "in" };
    format!("{} {} subroutine '{}'.", kind.verb(), how, sub.name())
}

/// Whether `var` may be used that way in `sub` (`Action` is treated as `Read`).
pub fn access_allowed(var: &Var, sub: Sub, kind: Access) -> bool {
    match kind {
        Access::Read | Access::Action => var.read.contains(sub),
        Access::Write => var.write.contains(sub),
        Access::Unset => var.unset.contains(sub),
    }
}

/// The error for using `var` directly in built-in sub `sub`, or `None` when allowed.
/// Varnish's exact texts: `Variable is read only.` (writable nowhere, readable here),
/// `Variable cannot be set.` (neither readable nor writable anywhere),
/// `Variable cannot be unset.` (unsetable nowhere), else e.g.
/// `Not available in subroutine 'vcl_recv'.` / `Cannot be set in subroutine 'vcl_hit'.`
pub fn access_error(var: &Var, sub: Sub, kind: Access) -> Option<String> {
    access_error_impl(var, sub, kind, false)
}

/// As [`access_error`], for a use inside a custom sub called from `sub`
/// (`... from subroutine 'vcl_x'.`).
pub fn access_error_from(var: &Var, sub: Sub, kind: Access) -> Option<String> {
    access_error_impl(var, sub, kind, true)
}

fn access_error_impl(var: &Var, sub: Sub, kind: Access, called: bool) -> Option<String> {
    if access_allowed(var, sub, kind) {
        return None;
    }
    Some(match kind {
        Access::Write if var.write.is_empty() => {
            if var.read.is_empty() {
                "Variable cannot be set.".to_string()
            } else if !var.read.contains(sub) {
                restriction_error(Access::Read, sub, called)
            } else {
                "Variable is read only.".to_string()
            }
        }
        Access::Unset if var.unset.is_empty() => "Variable cannot be unset.".to_string(),
        Access::Action => restriction_error(Access::Read, sub, called),
        _ => restriction_error(kind, sub, called),
    })
}

// ---------------------------------------------------------------------------------------------
// Return actions

/// `return (action)` names. `Miss` is not a VCL 7.1 action (retired from vcl_hit in 6.2): it is
/// the meaning of the legacy `return (fetch)` in vcl_hit; [`Action::from_name`] never yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Abandon,
    Deliver,
    Error,
    Fail,
    Fetch,
    Hash,
    Lookup,
    Miss,
    Ok,
    Pass,
    Pipe,
    Purge,
    Restart,
    Retry,
    Synth,
    Vcl,
}

impl Action {
    /// The 7.1 action names, in Varnish's order (`vcl_returns.h`, alphabetical).
    pub const VCL71: [Action; 15] = [
        Action::Abandon,
        Action::Deliver,
        Action::Error,
        Action::Fail,
        Action::Fetch,
        Action::Hash,
        Action::Lookup,
        Action::Ok,
        Action::Pass,
        Action::Pipe,
        Action::Purge,
        Action::Restart,
        Action::Retry,
        Action::Synth,
        Action::Vcl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Abandon => "abandon",
            Action::Deliver => "deliver",
            Action::Error => "error",
            Action::Fail => "fail",
            Action::Fetch => "fetch",
            Action::Hash => "hash",
            Action::Lookup => "lookup",
            Action::Miss => "miss",
            Action::Ok => "ok",
            Action::Pass => "pass",
            Action::Pipe => "pipe",
            Action::Purge => "purge",
            Action::Restart => "restart",
            Action::Retry => "retry",
            Action::Synth => "synth",
            Action::Vcl => "vcl",
        }
    }

    /// A 7.1 action name; `None` (Varnish: `Expected return action name.`) otherwise, `miss`
    /// included.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::VCL71.into_iter().find(|a| a.name() == name)
    }

    /// The arguments `return (action(...))` takes.
    pub fn args(self) -> ActionArgs {
        const STATUS_REASON: &[Arg] = &[Arg::req("status", T::Int), Arg::opt("reason", T::String)];
        const TTL: &[Arg] = &[Arg::req("ttl", T::Duration)];
        const REASON: &[Arg] = &[Arg::req("reason", T::String)];
        const LABEL: &[Arg] = &[Arg::req("label", T::Vcl)];
        match self {
            Action::Synth => ActionArgs::Required(STATUS_REASON),
            Action::Error => ActionArgs::Optional(STATUS_REASON),
            Action::Pass => ActionArgs::Optional(TTL),
            Action::Fail => ActionArgs::Optional(REASON),
            Action::Vcl => ActionArgs::Required(LABEL),
            _ => ActionArgs::None,
        }
    }

    /// The subs where this action is legal.
    pub fn mask(self) -> SubMask {
        SubMask::of(
            &Sub::ALL
                .into_iter()
                .filter(|s| allowed_actions(*s).contains(&self))
                .collect::<Vec<_>>(),
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parenthesised arguments of a return action (`vcc_act_return`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActionArgs {
    /// No parentheses allowed: `Arguments not allowed.`
    None,
    /// Parentheses required (`synth(status[, reason])`, `vcl(label)`): `Missing argument.`
    /// Args marked `optional` may be left out inside the parentheses.
    Required(&'static [Arg]),
    /// Parentheses optional (`pass(ttl)`, `fail(reason)`, `error(status[, reason])`); when
    /// present, the non-optional args must be given.
    Optional(&'static [Arg]),
}

pub const MSG_EXPECTED_ACTION: &str = "Expected return action name.";
pub const MSG_ARGS_NOT_ALLOWED: &str = "Arguments not allowed.";
pub const MSG_MISSING_ARGUMENT: &str = "Missing argument.";

/// The legal returns of each built-in sub in 7.1 (`generate.py` `returns`), in Varnish's order.
/// vcl_hit has no `miss` and no `fetch` in 7.1; see [`legacy_actions`].
pub fn allowed_actions(sub: Sub) -> &'static [Action] {
    use Action::*;
    match sub {
        Sub::Recv => &[Fail, Hash, Pass, Pipe, Purge, Restart, Synth, Vcl],
        Sub::Pipe => &[Fail, Pipe, Synth],
        Sub::Pass => &[Fail, Fetch, Restart, Synth],
        Sub::Hash => &[Fail, Lookup],
        Sub::Purge => &[Fail, Restart, Synth],
        Sub::Miss => &[Fail, Fetch, Pass, Restart, Synth],
        Sub::Hit => &[Deliver, Fail, Pass, Restart, Synth],
        Sub::Deliver => &[Deliver, Fail, Restart, Synth],
        Sub::Synth => &[Deliver, Fail, Restart],
        Sub::BackendFetch => &[Abandon, Error, Fail, Fetch],
        Sub::BackendResponse => &[Abandon, Deliver, Error, Fail, Pass, Retry],
        Sub::BackendError => &[Abandon, Deliver, Fail, Retry],
        Sub::Init => &[Fail, Ok],
        Sub::Fini => &[Ok],
    }
}

/// A return Varnish 7.1 rejects but ringcache accepts with a warning, for older VCL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyAction {
    pub action: Action,
    /// What it means.
    pub replacement: Action,
    pub warning: &'static str,
}

/// Legacy returns accepted in `sub` (only `return (fetch)` in vcl_hit, Varnish 4.0, meaning
/// `miss`).
pub fn legacy_actions(sub: Sub) -> &'static [LegacyAction] {
    match sub {
        Sub::Hit => &[LegacyAction {
            action: Action::Fetch,
            replacement: Action::Miss,
            warning: "return (fetch) in vcl_hit is Varnish 4.0 syntax (rejected since Varnish \
                      6.0); it is treated as a miss",
        }],
        _ => &[],
    }
}

/// `Invalid return "x"` (`vcc_CheckActionRecurse`).
pub fn invalid_return_message(action: Action) -> String {
    format!("Invalid return \"{}\"", action.name())
}

/// `Legal returns are: "deliver" "fail" ...` (`vcc_checkaction`).
pub fn legal_returns_message(sub: Sub) -> String {
    let mut s = String::from("Legal returns are:");
    for a in allowed_actions(sub) {
        s.push_str(&format!(" \"{}\"", a.name()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Functions, statements, VMODs

/// A literal default value of an argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Str(&'static str),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Seconds.
    Duration(f64),
    Enum(&'static str),
    /// `=0` on a BACKEND, BLOB or STRING: no value.
    Null,
}

/// One argument of a function, method, constructor, statement or action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arg {
    /// `None` for unnamed arguments (which cannot be passed as `name=value`).
    pub name: Option<&'static str>,
    pub ty: Type,
    pub default: Option<Value>,
    /// `[...]` in the .vcc: may be left out even without a default (the function sees it unset).
    pub optional: bool,
}

impl Arg {
    const fn req(name: &'static str, ty: Type) -> Arg {
        Arg {
            name: Some(name),
            ty,
            default: None,
            optional: false,
        }
    }
    const fn anon(ty: Type) -> Arg {
        Arg {
            name: None,
            ty,
            default: None,
            optional: false,
        }
    }
    const fn opt(name: &'static str, ty: Type) -> Arg {
        Arg {
            name: Some(name),
            ty,
            default: None,
            optional: true,
        }
    }
    const fn def(name: &'static str, ty: Type, v: Value) -> Arg {
        Arg {
            name: Some(name),
            ty,
            default: Some(v),
            optional: false,
        }
    }
    const fn opt_def(name: &'static str, ty: Type, v: Value) -> Arg {
        Arg {
            name: Some(name),
            ty,
            default: Some(v),
            optional: true,
        }
    }

    /// May be omitted from a call.
    pub fn omittable(&self) -> bool {
        self.optional || self.default.is_some()
    }
}

/// The kinds of VMOD objects (`new x = directors.<kind>(...)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    RoundRobin,
    Fallback,
    Random,
    Hash,
    Shard,
    ShardParam,
    /// ringcache extension (not in Varnish).
    LeastConnections,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::RoundRobin,
        ObjectKind::Fallback,
        ObjectKind::Random,
        ObjectKind::Hash,
        ObjectKind::Shard,
        ObjectKind::ShardParam,
        ObjectKind::LeastConnections,
    ];

    /// The constructor's name without the module: `round_robin`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::RoundRobin => "round_robin",
            ObjectKind::Fallback => "fallback",
            ObjectKind::Random => "random",
            ObjectKind::Hash => "hash",
            ObjectKind::Shard => "shard",
            ObjectKind::ShardParam => "shard_param",
            ObjectKind::LeastConnections => "least_connections",
        }
    }

    pub fn module(self) -> &'static str {
        "directors"
    }

    /// `"directors.round_robin"` → `RoundRobin`.
    pub fn from_constructor(name: &str) -> Option<ObjectKind> {
        let (m, k) = name.split_once('.')?;
        ObjectKind::ALL
            .into_iter()
            .find(|o| o.module() == m && o.name() == k)
    }

    /// Whether `.backend()` makes this object usable as a director (all but shard_param).
    pub fn is_director(self) -> bool {
        self != ObjectKind::ShardParam
    }
}

/// A function, a VMOD object constructor or an object method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Func {
    /// `"regsub"`, `"std.tolower"`, constructors `"directors.round_robin"`, methods `"add_backend"`.
    pub name: &'static str,
    /// Constructors: the kind they create. Methods: the kind they belong to. Functions: `None`.
    pub object: Option<ObjectKind>,
    /// Arguments as callers see them (hidden PRIV_* arguments omitted).
    pub args: &'static [Arg],
    /// Constructors return `Instance`.
    pub ret: Type,
    /// Where VCC allows the call (constructors: `new` is vcl_init only). Else:
    /// `Not available in subroutine 'vcl_x'.` (see [`restriction_error`] with `Access::Read`).
    pub restrict: SubMask,
    /// A restriction checked only at runtime by Varnish (compiles anywhere), and its effect.
    pub runtime_note: Option<&'static str>,
    /// Marked DEPRECATED in the 7.1 docs (still compiles).
    pub deprecated: bool,
    /// ringcache's runtime implements it.
    pub supported: bool,
    /// A ringcache extension that Varnish 7.1 does not have.
    pub extension: bool,
}

impl Func {
    const fn f(name: &'static str, ret: Type, args: &'static [Arg]) -> Func {
        Func {
            name,
            object: None,
            args,
            ret,
            restrict: SubMask::ALL,
            runtime_note: None,
            deprecated: false,
            supported: false,
            extension: false,
        }
    }
    const fn ctor(kind: ObjectKind, name: &'static str, args: &'static [Arg]) -> Func {
        let mut f = Func::f(name, Type::Instance, args);
        f.object = Some(kind);
        f.restrict = Sub::Init.mask();
        f
    }
    const fn meth(kind: ObjectKind, name: &'static str, ret: Type, args: &'static [Arg]) -> Func {
        let mut f = Func::f(name, ret, args);
        f.object = Some(kind);
        f
    }
    const fn sup(mut self) -> Func {
        self.supported = true;
        self
    }
    const fn deprecated(mut self) -> Func {
        self.deprecated = true;
        self
    }
    const fn note(mut self, n: &'static str) -> Func {
        self.runtime_note = Some(n);
        self
    }
    const fn ext(mut self) -> Func {
        self.extension = true;
        self
    }

    /// Varnish's documentation form, e.g. `STRING tolower(STRANDS s)`.
    pub fn signature(&self) -> String {
        let mut s = format!("{} {}(", self.ret.sig_name(), self.name);
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            if a.optional {
                s.push('[');
            }
            match a.ty {
                Type::Enum(vals) => s.push_str(&format!("ENUM {{{}}}", vals.join(", "))),
                t => s.push_str(t.sig_name()),
            }
            if let Some(n) = a.name {
                s.push(' ');
                s.push_str(n);
            }
            if let Some(d) = a.default {
                s.push('=');
                s.push_str(&match d {
                    Value::Str(v) => format!("\"{v}\""),
                    Value::Int(v) => v.to_string(),
                    Value::Real(v) => format!("{v:?}"),
                    Value::Bool(v) => (v as u8).to_string(),
                    Value::Duration(v) => format!("{v}"),
                    Value::Enum(v) => v.to_string(),
                    Value::Null => "0".to_string(),
                });
            }
            if a.optional {
                s.push(']');
            }
        }
        s.push(')');
        s
    }
}

const BY: Type = Type::Enum(&["HASH", "URL", "KEY", "BLOB"]);
const HEALTHY: Type = Type::Enum(&["CHOSEN", "IGNORE", "ALL"]);
const RESOLVE: Type = Type::Enum(&["NOW", "LAZY"]);

/// Built-in functions (`vcc_expr.c`) and `std` (`vmod_std.vcc`, 7.1).
pub static FUNCS: &[Func] = &[
    // built-in
    Func::f(
        "regsub",
        T::String,
        &[
            Arg::anon(T::String),
            Arg::anon(T::Regex),
            Arg::anon(T::String),
        ],
    )
    .sup(),
    Func::f(
        "regsuball",
        T::String,
        &[
            Arg::anon(T::String),
            Arg::anon(T::Regex),
            Arg::anon(T::String),
        ],
    )
    .sup(),
    // std: numeric
    Func::f(
        "std.random",
        T::Real,
        &[Arg::req("lo", T::Real), Arg::req("hi", T::Real)],
    )
    .sup(),
    Func::f("std.round", T::Real, &[Arg::req("r", T::Real)]),
    // std: strings
    Func::f(
        "std.collect",
        T::Void,
        &[
            Arg::req("hdr", T::Header),
            Arg::def("sep", T::String, Value::Str(", ")),
        ],
    )
    .note("a header of obj.http fails the VCL at runtime")
    .sup(),
    Func::f("std.querysort", T::String, &[Arg::anon(T::String)]),
    Func::f("std.toupper", T::String, &[Arg::req("s", T::Strands)]).sup(),
    Func::f("std.tolower", T::String, &[Arg::req("s", T::Strands)]).sup(),
    Func::f(
        "std.strstr",
        T::String,
        &[Arg::req("s1", T::String), Arg::req("s2", T::String)],
    ),
    Func::f(
        "std.fnmatch",
        T::Bool,
        &[
            Arg::req("pattern", T::String),
            Arg::req("subject", T::String),
            Arg::def("pathname", T::Bool, Value::Bool(true)),
            Arg::def("noescape", T::Bool, Value::Bool(false)),
            Arg::def("period", T::Bool, Value::Bool(false)),
        ],
    ),
    // std: files
    Func::f("std.fileread", T::String, &[Arg::anon(T::String)]),
    Func::f("std.blobread", T::Blob, &[Arg::anon(T::String)]),
    Func::f("std.file_exists", T::Bool, &[Arg::req("path", T::String)]),
    // std: type inspection
    Func::f("std.healthy", T::Bool, &[Arg::req("be", T::Backend)]).sup(),
    Func::f("std.port", T::Int, &[Arg::req("ip", T::Ip)]).sup(),
    // std: conversions ("precisely one of the arguments", else a runtime VCL failure)
    Func::f(
        "std.duration",
        T::Duration,
        &[
            Arg::opt("s", T::String),
            Arg::opt("fallback", T::Duration),
            Arg::opt("real", T::Real),
            Arg::opt("integer", T::Int),
        ],
    )
    .sup(),
    Func::f(
        "std.bytes",
        T::Bytes,
        &[
            Arg::opt("s", T::String),
            Arg::opt("fallback", T::Bytes),
            Arg::opt("real", T::Real),
            Arg::opt("integer", T::Int),
        ],
    ),
    Func::f(
        "std.integer",
        T::Int,
        &[
            Arg::opt("s", T::String),
            Arg::opt("fallback", T::Int),
            Arg::opt("bool", T::Bool),
            Arg::opt("bytes", T::Bytes),
            Arg::opt("duration", T::Duration),
            Arg::opt("real", T::Real),
            Arg::opt("time", T::Time),
        ],
    )
    .sup(),
    Func::f(
        "std.ip",
        T::Ip,
        &[
            Arg::req("s", T::String),
            Arg::opt("fallback", T::Ip),
            Arg::def("resolve", T::Bool, Value::Bool(true)),
            Arg::opt("p", T::String),
        ],
    )
    .sup(),
    Func::f(
        "std.real",
        T::Real,
        &[
            Arg::opt("s", T::String),
            Arg::opt("fallback", T::Real),
            Arg::opt("integer", T::Int),
            Arg::opt("bool", T::Bool),
            Arg::opt("bytes", T::Bytes),
            Arg::opt("duration", T::Duration),
            Arg::opt("time", T::Time),
        ],
    ),
    Func::f(
        "std.time",
        T::Time,
        &[
            Arg::opt("s", T::String),
            Arg::opt("fallback", T::Time),
            Arg::opt("real", T::Real),
            Arg::opt("integer", T::Int),
        ],
    ),
    Func::f(
        "std.strftime",
        T::String,
        &[Arg::req("time", T::Time), Arg::req("format", T::String)],
    ),
    // std: logging
    Func::f("std.log", T::Void, &[Arg::req("s", T::Strands)]).sup(),
    Func::f(
        "std.syslog",
        T::Void,
        &[Arg::req("priority", T::Int), Arg::req("s", T::Strands)],
    ),
    Func::f("std.timestamp", T::Void, &[Arg::req("s", T::String)]),
    // std: control and information
    Func::f("std.syntax", T::Bool, &[Arg::anon(T::Real)]),
    Func::f("std.getenv", T::String, &[Arg::req("name", T::String)]),
    Func::f("std.cache_req_body", T::Bool, &[Arg::req("size", T::Bytes)])
        .note("only effective in vcl_recv (else a VCL_Error log record)"),
    Func::f(
        "std.late_100_continue",
        T::Void,
        &[Arg::req("late", T::Bool)],
    )
    .note("only effective in vcl_recv (else a VCL_Error log record)"),
    Func::f("std.set_ip_tos", T::Void, &[Arg::req("tos", T::Int)]),
    Func::f("std.rollback", T::Void, &[Arg::req("h", T::Http)]).note("fails the VCL in vcl_pipe"),
    Func::f("std.ban", T::Bool, &[Arg::anon(T::String)]).sup(),
    Func::f("std.ban_error", T::String, &[]).sup(),
    // std: deprecated conversions
    Func::f(
        "std.real2integer",
        T::Int,
        &[Arg::req("r", T::Real), Arg::req("fallback", T::Int)],
    )
    .deprecated(),
    Func::f(
        "std.real2time",
        T::Time,
        &[Arg::req("r", T::Real), Arg::req("fallback", T::Time)],
    )
    .deprecated(),
    Func::f(
        "std.time2integer",
        T::Int,
        &[Arg::req("t", T::Time), Arg::req("fallback", T::Int)],
    )
    .deprecated(),
    Func::f(
        "std.time2real",
        T::Real,
        &[Arg::req("t", T::Time), Arg::req("fallback", T::Real)],
    )
    .deprecated(),
    // directors functions
    Func::f("directors.lookup", T::Backend, &[Arg::anon(T::String)])
        .note("fails the VCL outside vcl_init and vcl_fini"),
];

/// `directors` object constructors (`vmod_directors.vcc`, 7.1) plus the ringcache extension.
pub static CONSTRUCTORS: &[Func] = &[
    Func::ctor(ObjectKind::RoundRobin, "directors.round_robin", &[]).sup(),
    Func::ctor(
        ObjectKind::Fallback,
        "directors.fallback",
        &[Arg::def("sticky", T::Bool, Value::Bool(false))],
    )
    .sup(),
    Func::ctor(ObjectKind::Random, "directors.random", &[]).sup(),
    Func::ctor(ObjectKind::Hash, "directors.hash", &[]).sup(),
    Func::ctor(ObjectKind::Shard, "directors.shard", &[]).sup(),
    Func::ctor(ObjectKind::ShardParam, "directors.shard_param", &[]),
    Func::ctor(
        ObjectKind::LeastConnections,
        "directors.least_connections",
        &[],
    )
    .sup()
    .ext(),
];

const ONE_BACKEND: &[Arg] = &[Arg::anon(T::Backend)];

/// Object methods (`vmod_directors.vcc`, 7.1).
pub static METHODS: &[Func] = &[
    // round_robin
    Func::meth(ObjectKind::RoundRobin, "add_backend", T::Void, ONE_BACKEND).sup(),
    Func::meth(
        ObjectKind::RoundRobin,
        "remove_backend",
        T::Void,
        ONE_BACKEND,
    )
    .sup(),
    Func::meth(ObjectKind::RoundRobin, "backend", T::Backend, &[]).sup(),
    // fallback
    Func::meth(ObjectKind::Fallback, "add_backend", T::Void, ONE_BACKEND).sup(),
    Func::meth(ObjectKind::Fallback, "remove_backend", T::Void, ONE_BACKEND).sup(),
    Func::meth(ObjectKind::Fallback, "backend", T::Backend, &[]).sup(),
    // random
    Func::meth(
        ObjectKind::Random,
        "add_backend",
        T::Void,
        &[Arg::anon(T::Backend), Arg::anon(T::Real)],
    )
    .sup(),
    Func::meth(ObjectKind::Random, "remove_backend", T::Void, ONE_BACKEND).sup(),
    Func::meth(ObjectKind::Random, "backend", T::Backend, &[]).sup(),
    // hash
    Func::meth(
        ObjectKind::Hash,
        "add_backend",
        T::Void,
        &[
            Arg::anon(T::Backend),
            Arg::def("weight", T::Real, Value::Real(1.0)),
        ],
    )
    .sup(),
    Func::meth(ObjectKind::Hash, "remove_backend", T::Void, ONE_BACKEND).sup(),
    Func::meth(
        ObjectKind::Hash,
        "backend",
        T::Backend,
        &[Arg::anon(T::Strands)],
    )
    .sup(),
    // shard
    Func::meth(
        ObjectKind::Shard,
        "set_warmup",
        T::Void,
        &[Arg::def("probability", T::Real, Value::Real(0.0))],
    )
    .sup(),
    Func::meth(
        ObjectKind::Shard,
        "set_rampup",
        T::Void,
        &[Arg::def("duration", T::Duration, Value::Duration(0.0))],
    )
    .sup(),
    Func::meth(
        ObjectKind::Shard,
        "associate",
        T::Void,
        &[Arg::def("param", T::Blob, Value::Null)],
    ),
    Func::meth(
        ObjectKind::Shard,
        "add_backend",
        T::Bool,
        &[
            Arg::req("backend", T::Backend),
            Arg::opt("ident", T::String),
            Arg::opt("rampup", T::Duration),
            Arg::opt("weight", T::Real),
        ],
    )
    .sup(),
    Func::meth(
        ObjectKind::Shard,
        "remove_backend",
        T::Bool,
        &[
            Arg::opt_def("backend", T::Backend, Value::Null),
            Arg::opt_def("ident", T::String, Value::Null),
        ],
    )
    .sup(),
    Func::meth(ObjectKind::Shard, "clear", T::Bool, &[]).sup(),
    Func::meth(
        ObjectKind::Shard,
        "reconfigure",
        T::Bool,
        &[Arg::def("replicas", T::Int, Value::Int(67))],
    )
    .sup(),
    Func::meth(ObjectKind::Shard, "key", T::Int, &[Arg::anon(T::Strands)]).sup(),
    Func::meth(
        ObjectKind::Shard,
        "backend",
        T::Backend,
        &[
            Arg::opt_def("by", BY, Value::Enum("HASH")),
            Arg::opt("key", T::Int),
            Arg::opt("key_blob", T::Blob),
            Arg::opt_def("alt", T::Int, Value::Int(0)),
            Arg::opt_def("warmup", T::Real, Value::Real(-1.0)),
            Arg::opt_def("rampup", T::Bool, Value::Bool(true)),
            Arg::opt_def("healthy", HEALTHY, Value::Enum("CHOSEN")),
            Arg::opt("param", T::Blob),
            Arg::opt("resolve", RESOLVE),
        ],
    )
    .sup(),
    Func::meth(ObjectKind::Shard, "debug", T::Void, &[Arg::anon(T::Int)]),
    // shard_param
    Func::meth(ObjectKind::ShardParam, "clear", T::Void, &[])
        .note("fails the VCL in client subs other than vcl_pipe"),
    Func::meth(
        ObjectKind::ShardParam,
        "set",
        T::Void,
        &[
            Arg::opt("by", BY),
            Arg::opt("key", T::Int),
            Arg::opt("key_blob", T::Blob),
            Arg::opt("alt", T::Int),
            Arg::opt("warmup", T::Real),
            Arg::opt("rampup", T::Bool),
            Arg::opt("healthy", HEALTHY),
        ],
    )
    .note("fails the VCL in client subs other than vcl_pipe"),
    Func::meth(ObjectKind::ShardParam, "get_by", T::String, &[]),
    Func::meth(ObjectKind::ShardParam, "get_key", T::Int, &[]),
    Func::meth(ObjectKind::ShardParam, "get_alt", T::Int, &[]),
    Func::meth(ObjectKind::ShardParam, "get_warmup", T::Real, &[]),
    Func::meth(ObjectKind::ShardParam, "get_rampup", T::Bool, &[]),
    Func::meth(ObjectKind::ShardParam, "get_healthy", T::String, &[]),
    Func::meth(ObjectKind::ShardParam, "use", T::Blob, &[])
        .note("fails the VCL in client subs other than vcl_pipe"),
    // least_connections (ringcache extension)
    Func::meth(
        ObjectKind::LeastConnections,
        "add_backend",
        T::Void,
        ONE_BACKEND,
    )
    .sup()
    .ext(),
    Func::meth(
        ObjectKind::LeastConnections,
        "remove_backend",
        T::Void,
        ONE_BACKEND,
    )
    .sup()
    .ext(),
    Func::meth(ObjectKind::LeastConnections, "backend", T::Backend, &[])
        .sup()
        .ext(),
];

/// `"regsub"`, `"std.tolower"`, `"directors.lookup"`.
pub fn lookup_func(name: &str) -> Option<&'static Func> {
    FUNCS.iter().find(|f| f.name == name)
}

/// `"directors.round_robin"` etc.
pub fn lookup_constructor(name: &str) -> Option<&'static Func> {
    CONSTRUCTORS.iter().find(|f| f.name == name)
}

/// `lookup_method(ObjectKind::Shard, "backend")`.
pub fn lookup_method(kind: ObjectKind, name: &str) -> Option<&'static Func> {
    METHODS
        .iter()
        .find(|f| f.object == Some(kind) && f.name == name)
}

/// All methods of an object kind.
pub fn methods_of(kind: ObjectKind) -> impl Iterator<Item = &'static Func> {
    METHODS.iter().filter(move |f| f.object == Some(kind))
}

/// The VMODs `import` accepts.
pub fn modules() -> &'static [&'static str] {
    &["std", "directors"]
}

/// Varnish's message for an `import` of any other module (`vcc_vmod.c`).
pub fn unknown_module_message(name: &str) -> String {
    format!("Could not find VMOD {name}")
}

/// A statement keyword of VCL 7.1 (`vcc_Action_Init`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Statement {
    pub name: &'static str,
    /// Where it is allowed; elsewhere `Not a valid action in subroutine 'vcl_x'.`
    /// ([`restriction_error`] with `Access::Action`).
    pub mask: SubMask,
    /// For the function-like statements `ban(STRING)`, `hash_data(STRANDS)`,
    /// `synthetic(STRANDS)`: their one argument.
    pub args: Option<&'static [Arg]>,
    pub supported: bool,
}

pub static STATEMENTS: &[Statement] = &[
    Statement {
        name: "ban",
        mask: SubMask::ALL,
        args: Some(&[Arg::anon(T::String)]),
        supported: true,
    },
    Statement {
        name: "call",
        mask: SubMask::ALL,
        args: None,
        supported: true,
    },
    Statement {
        name: "hash_data",
        mask: Sub::Hash.mask(),
        args: Some(&[Arg::anon(T::Strands)]),
        supported: true,
    },
    Statement {
        name: "if",
        mask: SubMask::ALL,
        args: None,
        supported: true,
    },
    Statement {
        name: "new",
        mask: Sub::Init.mask(),
        args: None,
        supported: true,
    },
    Statement {
        name: "return",
        mask: SubMask::ALL,
        args: None,
        supported: true,
    },
    Statement {
        name: "set",
        mask: SubMask::ALL,
        args: None,
        supported: true,
    },
    Statement {
        name: "synthetic",
        mask: SubMask::of(&[Sub::Synth, Sub::BackendError]),
        args: Some(&[Arg::anon(T::Strands)]),
        supported: true,
    },
    Statement {
        name: "unset",
        mask: SubMask::ALL,
        args: None,
        supported: true,
    },
];

pub fn lookup_statement(name: &str) -> Option<&'static Statement> {
    STATEMENTS.iter().find(|s| s.name == name)
}

// ---------------------------------------------------------------------------------------------
// Type methods and attributes (vcc_types.c): `x.resolve()`, `"s".upper()`, `storage.s0.happy`

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeMethod {
    /// The receiver type (`String` covers every string expression, headers included).
    pub on: Type,
    pub name: &'static str,
    pub ret: Type,
    /// Written with `()`; an attribute otherwise.
    pub call: bool,
    pub supported: bool,
}

pub static TYPE_METHODS: &[TypeMethod] = &[
    TypeMethod {
        on: T::Backend,
        name: "resolve",
        ret: T::Backend,
        call: true,
        supported: true,
    },
    TypeMethod {
        on: T::String,
        name: "upper",
        ret: T::String,
        call: true,
        supported: true,
    },
    TypeMethod {
        on: T::String,
        name: "lower",
        ret: T::String,
        call: true,
        supported: true,
    },
    TypeMethod {
        on: T::Stevedore,
        name: "free_space",
        ret: T::Bytes,
        call: false,
        supported: false,
    },
    TypeMethod {
        on: T::Stevedore,
        name: "used_space",
        ret: T::Bytes,
        call: false,
        supported: false,
    },
    TypeMethod {
        on: T::Stevedore,
        name: "happy",
        ret: T::Bool,
        call: false,
        supported: false,
    },
];

/// `Unknown property 'x' for type T` otherwise (Varnish prints the token, then the type).
pub fn lookup_type_method(on: Type, name: &str) -> Option<&'static TypeMethod> {
    let on = match on {
        Type::Strands | Type::Header => Type::String,
        t => t,
    };
    TYPE_METHODS.iter().find(|m| m.on == on && m.name == name)
}

// ---------------------------------------------------------------------------------------------
// Operators (vcc_expr.c, vcc_action.c)

/// Binary arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The result type of `lhs op rhs` for numeric operands, or `None` (then, for `+` in a string
/// context or with a string on the left, it is string concatenation of two
/// [`Type::to_string_ok`] operands; else `LHS + RHS not possible.`).
/// `+`/`-`: `vcc_adds` (BYTES±BYTES, DURATION±DURATION, INT±INT, INT/REAL mixes → REAL,
/// TIME-TIME → DURATION, TIME±DURATION → TIME). `*`/`/`: the right side is INT or
/// [`Type::mul_type`], the result has the left's type. `%`: INT only.
pub fn arith_result(op: ArithOp, lhs: Type, rhs: Type) -> Option<Type> {
    use Type::*;
    match op {
        ArithOp::Add | ArithOp::Sub => match (lhs, rhs) {
            (Bytes, Bytes) => Some(Bytes),
            (Duration, Duration) => Some(Duration),
            (Int, Int) => Some(Int),
            (Int, Real) | (Real, Int) | (Real, Real) => Some(Real),
            (Time, Time) if op == ArithOp::Sub => Some(Duration),
            (Time, Duration) => Some(Time),
            _ => None,
        },
        ArithOp::Mul | ArithOp::Div => {
            let m = lhs.mul_type()?;
            (rhs == Int || rhs == m).then_some(lhs)
        }
        ArithOp::Rem => (lhs == Int && rhs == Int).then_some(Int),
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `~`: STRING against a REGEX literal, IP against an ACL.
    Match,
    /// `!~`.
    NoMatch,
}

impl CmpOp {
    pub fn token(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
            CmpOp::Match => "~",
            CmpOp::NoMatch => "!~",
        }
    }
}

/// Whether `lhs op ...` exists (`vcc_cmps`); else `Operator <op> not possible on <TYPE>`.
/// Both sides must then have the same type (`Comparison of different types: INT '==' REAL`),
/// except `~`/`!~`, whose right side is a REGEX (strings) or an ACL (IP).
pub fn compare_ok(lhs: Type, op: CmpOp) -> bool {
    use Type::*;
    let relational = matches!(
        op,
        CmpOp::Eq | CmpOp::Ne | CmpOp::Lt | CmpOp::Gt | CmpOp::Le | CmpOp::Ge
    );
    let identity = matches!(op, CmpOp::Eq | CmpOp::Ne);
    match lhs {
        Int | Duration | Bytes | Real | Time => relational,
        Backend | Acl | Probe | Stevedore | Sub | Instance | Bool => identity,
        Ip => identity || matches!(op, CmpOp::Match | CmpOp::NoMatch),
        String | Strands | Header => true,
        _ => false,
    }
}

/// The right side type of `~` for a left side type.
pub fn match_rhs(lhs: Type) -> Option<Type> {
    match lhs {
        Type::String | Type::Strands | Type::Header => Some(Type::Regex),
        Type::Ip => Some(Type::Acl),
        _ => None,
    }
}

/// `set` operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

/// The type the right side of `set <var of type ty> op ...` must have (`assign[]` in
/// vcc_action.c), or `None` when the operator is not available for that type (Varnish then
/// expects `=`). STRING and HEADER take any string expression; BODY takes strings or a BLOB.
pub fn assign_rhs(ty: Type, op: AssignOp) -> Option<Type> {
    use AssignOp as A;
    match (ty, op) {
        (Type::Int, _) => Some(Type::Int),
        (Type::Time, A::Set) => Some(Type::Time),
        (Type::Time | Type::Duration, A::Add | A::Sub) => Some(Type::Duration),
        (Type::Time | Type::Duration, A::Mul | A::Div) => Some(Type::Real),
        (Type::Duration, A::Set) => Some(Type::Duration),
        (Type::String | Type::Header, A::Set | A::Add) => Some(Type::String),
        (Type::Body, A::Set | A::Add) => Some(Type::Body),
        (_, A::Set) => Some(ty),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn var(name: &str) -> &'static Var {
        lookup_var(name).unwrap().var()
    }

    fn var40(name: &str) -> &'static Var {
        resolve_var(name, Syntax::V40).unwrap().var()
    }

    #[test]
    fn var_table_sane() {
        // A name repeats only with disjoint syntax ranges.
        for (i, a) in VARS.iter().enumerate() {
            for b in &VARS[i + 1..] {
                if a.name == b.name {
                    assert!(a.until < b.since || b.until < a.since, "{}", a.name);
                }
            }
            // Every writable or unsetable var is readable where it is writable, except the
            // write-only BODY ones.
            if a.ty != Type::Body {
                assert!(a.read.includes(a.write), "{} write ⊄ read", a.name);
                assert!(a.read.includes(a.unset), "{} unset ⊄ read", a.name);
            } else {
                assert!(a.read.is_empty(), "{}", a.name);
            }
            // Only headers and bodies are unsetable.
            if !a.unset.is_empty() {
                assert!(matches!(a.ty, Type::Header | Type::Body), "{}", a.name);
            }
            assert!(a.since <= a.until);
            assert!(SubMask::ALL.includes(a.read.union(a.write).union(a.unset)));
            // Header families end with ".http."; nothing else does.
            assert_eq!(
                a.is_header_family(),
                a.name.ends_with(".http."),
                "{}",
                a.name
            );
            // Client vars never reach the backend side and vice versa, except the
            // connection-level ones.
            if a.name.starts_with("req.") || a.name.starts_with("resp.") {
                assert!(
                    SubMask::CLIENT.includes(a.read.union(a.write)),
                    "{}",
                    a.name
                );
            }
            if a.name.starts_with("beresp.") {
                assert!(
                    SubMask::BACKEND.includes(a.read.union(a.write)),
                    "{}",
                    a.name
                );
            }
        }
        // Each name resolves in at least one syntax, and every entry is reachable.
        for v in VARS.iter().filter(|v| !v.is_header_family()) {
            let s = if v.in_syntax(Syntax::V41) {
                Syntax::V41
            } else {
                Syntax::V40
            };
            assert_eq!(resolve_var(v.name, s).unwrap().var(), v);
        }
        assert!(VARS.len() > 100);
    }

    #[test]
    fn masks() {
        assert_eq!(SubMask::CLIENT.iter().count(), 9);
        assert_eq!(SubMask::BACKEND.iter().count(), 3);
        assert_eq!(SubMask::ALL.iter().count(), 14);
        assert_eq!(SubMask::CLIENT.intersect(SubMask::BACKEND), SubMask::NONE);
        assert!(Sub::Deliver.is_client());
        assert!(Sub::BackendError.is_backend());
        assert!(Sub::Fini.is_housekeeping());
        for s in Sub::ALL {
            assert_eq!(Sub::from_name(s.name()), Some(s));
        }
        assert_eq!(Sub::from_name("vcl_foo"), None);
        assert_eq!(Sub::from_name("recv"), None);
    }

    #[test]
    fn spot_checks_against_the_docs() {
        // req.url: read/write from every client sub, vcl_deliver included; nowhere backend.
        let url = var("req.url");
        assert_eq!(url.ty, Type::String);
        assert!(access_allowed(url, Sub::Recv, Access::Write));
        assert!(access_allowed(url, Sub::Deliver, Access::Write));
        assert!(access_allowed(url, Sub::Synth, Access::Read));
        assert!(!access_allowed(url, Sub::BackendFetch, Access::Read));
        assert_eq!(
            access_error(url, Sub::BackendFetch, Access::Read).unwrap(),
            "Not available in subroutine 'vcl_backend_fetch'."
        );
        assert_eq!(
            access_error(url, Sub::Recv, Access::Unset).unwrap(),
            "Variable cannot be unset."
        );
        // beresp.ttl writable in vcl_backend_response and vcl_backend_error.
        let ttl = var("beresp.ttl");
        assert_eq!(ttl.ty, Type::Duration);
        assert!(access_allowed(ttl, Sub::BackendResponse, Access::Write));
        assert!(access_allowed(ttl, Sub::BackendError, Access::Write));
        assert!(!access_allowed(ttl, Sub::BackendFetch, Access::Read));
        // obj.ttl read-only, readable in vcl_hit and vcl_deliver.
        let ottl = var("obj.ttl");
        assert!(ottl.write.is_empty());
        assert!(access_allowed(ottl, Sub::Hit, Access::Read));
        assert!(access_allowed(ottl, Sub::Deliver, Access::Read));
        assert_eq!(
            access_error(ottl, Sub::Hit, Access::Write).unwrap(),
            "Variable is read only."
        );
        assert_eq!(
            access_error(ottl, Sub::Recv, Access::Write).unwrap(),
            "Not available in subroutine 'vcl_recv'."
        );
        assert_eq!(
            access_error_from(ottl, Sub::Recv, Access::Write).unwrap(),
            "Not available from subroutine 'vcl_recv'."
        );
        // obj.http and obj.status: vcl_hit only.
        assert_eq!(var("obj.http.x").read, Sub::Hit.mask());
        assert!(!access_allowed(
            var("obj.status"),
            Sub::Deliver,
            Access::Read
        ));
        assert_eq!(var("obj.hits").ty, Type::Int);
        // resp.http.* writable and unsetable in vcl_deliver and vcl_synth only.
        let rh = var("resp.http.X");
        for s in [Sub::Deliver, Sub::Synth] {
            assert!(access_allowed(rh, s, Access::Write));
            assert!(access_allowed(rh, s, Access::Unset));
        }
        assert_eq!(rh.write.iter().count(), 2);
        assert_eq!(
            access_error(rh, Sub::Recv, Access::Unset).unwrap(),
            "Cannot be unset in subroutine 'vcl_recv'."
        );
        // beresp.http.* in vcl_deliver.
        assert_eq!(
            access_error(var("beresp.http.x"), Sub::Deliver, Access::Read).unwrap(),
            "Not available in subroutine 'vcl_deliver'."
        );
        // bereq.*: vcl_pipe plus backend for most, backend only for the others.
        assert!(access_allowed(var("bereq.url"), Sub::Pipe, Access::Write));
        assert!(access_allowed(
            var("bereq.http.h"),
            Sub::Pipe,
            Access::Unset
        ));
        assert!(!access_allowed(
            var("bereq.retries"),
            Sub::Pipe,
            Access::Read
        ));
        assert!(access_allowed(
            var("bereq.retries"),
            Sub::BackendError,
            Access::Read
        ));
        assert_eq!(
            access_error(var("bereq.retries"), Sub::BackendFetch, Access::Write).unwrap(),
            "Variable is read only."
        );
        assert!(access_allowed(
            var("bereq.connect_timeout"),
            Sub::Pipe,
            Access::Write
        ));
        assert!(!access_allowed(
            var("bereq.first_byte_timeout"),
            Sub::Pipe,
            Access::Read
        ));
        assert_eq!(var("bereq.is_bgfetch").ty, Type::Bool);
        // req.* specifics.
        assert_eq!(var("req.backend_hint").ty, Type::Backend);
        assert!(access_allowed(
            var("req.backend_hint"),
            Sub::Hit,
            Access::Write
        ));
        assert!(access_allowed(
            var("req.hash_always_miss"),
            Sub::Deliver,
            Access::Write
        ));
        assert!(var("req.restarts").write.is_empty());
        assert!(access_allowed(var("req.ttl"), Sub::Recv, Access::Write));
        assert_eq!(var("req.grace").ty, Type::Duration);
        assert!(!access_allowed(var("req.hash"), Sub::Recv, Access::Read));
        // beresp.uncacheable/backend.
        assert!(access_allowed(
            var("beresp.uncacheable"),
            Sub::BackendResponse,
            Access::Write
        ));
        assert_eq!(
            access_error(var("beresp.backend"), Sub::BackendResponse, Access::Write).unwrap(),
            "Variable is read only."
        );
        // The write-only bodies.
        assert_eq!(
            access_error(var("resp.body"), Sub::Deliver, Access::Write).unwrap(),
            "Cannot be set in subroutine 'vcl_deliver'."
        );
        assert!(access_allowed(var("resp.body"), Sub::Synth, Access::Write));
        assert!(!access_allowed(var("resp.body"), Sub::Synth, Access::Read));
        assert!(access_allowed(
            var("bereq.body"),
            Sub::BackendFetch,
            Access::Unset
        ));
        // Connection and global.
        assert!(access_allowed(
            var("client.ip"),
            Sub::BackendFetch,
            Access::Read
        ));
        assert!(!access_allowed(var("client.ip"), Sub::Init, Access::Read));
        assert_eq!(
            access_error(var("client.ip"), Sub::Recv, Access::Write).unwrap(),
            "Variable is read only."
        );
        assert!(access_allowed(var("now"), Sub::Init, Access::Read));
        assert!(access_allowed(var("now"), Sub::Fini, Access::Read));
        assert_eq!(var("server.ip").ty, Type::Ip);
        assert_eq!(var("local.ip").ty, Type::Ip);
        assert_eq!(var("remote.ip").ty, Type::Ip);
        assert!(access_allowed(
            var("client.identity"),
            Sub::Recv,
            Access::Write
        ));
        assert!(!access_allowed(
            var("client.identity"),
            Sub::BackendFetch,
            Access::Write
        ));
    }

    #[test]
    fn syntax_versions() {
        // req.proto: writable in 4.0, read-only in 4.1.
        assert!(access_allowed(var40("req.proto"), Sub::Recv, Access::Write));
        assert!(!access_allowed(var("req.proto"), Sub::Recv, Access::Write));
        assert!(var("resp.proto").write.is_empty());
        assert!(!var40("beresp.proto").write.is_empty());
        // 4.0-only and 4.1-only names.
        let e = resolve_var("req.esi", Syntax::V41).unwrap_err();
        assert_eq!(
            e.message("req.esi"),
            "Symbol not found: 'req.esi' (Only available when VCL syntax <= 4.0)"
        );
        assert!(resolve_var("req.esi", Syntax::V40).is_ok());
        let e = resolve_var("local.socket", Syntax::V40).unwrap_err();
        assert_eq!(
            e.message("local.socket"),
            "Symbol not found: 'local.socket' (Only available when 4.1 <= VCL syntax)"
        );
        assert!(lookup_var("resp.do_esi").is_some());
        assert!(lookup_var("beresp.storage_hint").is_none());
        assert!(resolve_var("beresp.backend.ip", Syntax::V40).is_ok());
        assert_eq!(
            resolve_var("req.nope", Syntax::V41)
                .unwrap_err()
                .message("req.nope"),
            "Symbol not found: 'req.nope'"
        );
        // 7.1 has req.ttl, not trunk's req.max_age.
        assert!(lookup_var("req.max_age").is_none());
    }

    #[test]
    fn header_lookups() {
        match lookup_var("req.http.X-Foo").unwrap() {
            VarLookup::Header { var, header } => {
                assert_eq!(var.name, "req.http.");
                assert_eq!(header, "X-Foo");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lookup_var("req.http.X-Foo").unwrap().ty(), Type::Header);
        assert_eq!(
            lookup_var("req_top.http.host").unwrap().var().name,
            "req_top.http."
        );
        assert_eq!(
            lookup_var("bereq.http.a").unwrap().var().name,
            "bereq.http."
        );
        assert_eq!(
            lookup_var("beresp.http.a").unwrap().var().name,
            "beresp.http."
        );
        assert_eq!(lookup_var("obj.http.a").unwrap().var().name, "obj.http.");
        assert_eq!(lookup_var("resp.http.a").unwrap().var().name, "resp.http.");
        // Quoted names may carry any token character.
        assert!(lookup_var("req.http.grammatically.valid").is_some());
        assert!(lookup_var("req.http.").is_none());
        assert!(lookup_var("req.http").is_none());
        assert_eq!(
            resolve_var("req.http.a b", Syntax::V41),
            Err(VarError::BadHeader(
                "Invalid character ' ' in header name.".into()
            ))
        );
        assert_eq!(
            check_header_name("a:b").unwrap_err(),
            "Invalid character ':' in header name."
        );
        assert_eq!(
            check_header_name("a\"b").unwrap_err(),
            "Invalid character '\\\"' in header name."
        );
        assert_eq!(
            check_header_name("a\u{1}").unwrap_err(),
            "Invalid character '\\001' in header name."
        );
        let long = "x".repeat(127);
        assert_eq!(
            check_header_name(&long).unwrap_err(),
            "HTTP header (xxxxxxxxxxxxxxxxxxxx..) is too long."
        );
        assert!(check_header_name(&long[..126]).is_ok());
    }

    #[test]
    fn actions() {
        use Action::*;
        // Every sub's list is in Varnish order, made of 7.1 actions, and fail is everywhere
        // but vcl_fini.
        for s in Sub::ALL {
            let a = allowed_actions(s);
            assert!(a.windows(2).all(|w| w[0] < w[1]), "{s}");
            assert!(a.iter().all(|x| Action::VCL71.contains(x)));
            assert_eq!(a.contains(&Fail), s != Sub::Fini, "{s}");
        }
        assert!(!allowed_actions(Sub::Deliver).contains(&Lookup));
        assert_eq!(allowed_actions(Sub::Hash), &[Fail, Lookup]);
        assert_eq!(
            allowed_actions(Sub::Hit),
            &[Deliver, Fail, Pass, Restart, Synth]
        );
        assert!(!allowed_actions(Sub::Hit).contains(&Fetch));
        assert!(!allowed_actions(Sub::Hit).contains(&Miss));
        assert!(allowed_actions(Sub::Miss).contains(&Fetch));
        assert!(allowed_actions(Sub::Recv).contains(&Purge));
        assert!(allowed_actions(Sub::Recv).contains(&Vcl));
        assert!(allowed_actions(Sub::BackendResponse).contains(&Pass));
        assert!(allowed_actions(Sub::BackendResponse).contains(&Retry));
        assert!(allowed_actions(Sub::BackendFetch).contains(&Error));
        assert!(!allowed_actions(Sub::BackendError).contains(&Error));
        assert_eq!(allowed_actions(Sub::Init), &[Fail, Ok]);
        assert_eq!(allowed_actions(Sub::Fini), &[Ok]);
        assert!(!allowed_actions(Sub::Synth).contains(&Synth));
        // Legacy.
        let l = legacy_actions(Sub::Hit);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].action, l[0].replacement), (Fetch, Miss));
        assert!(legacy_actions(Sub::Recv).is_empty());
        // Names.
        assert_eq!(Action::from_name("lookup"), Some(Lookup));
        assert_eq!(Action::from_name("miss"), None);
        assert_eq!(Action::from_name("error"), Some(Error));
        assert_eq!(Action::from_name("deliverx"), None);
        // Arguments.
        assert!(matches!(Synth.args(), ActionArgs::Required(a) if a.len() == 2 && a[1].optional));
        assert!(matches!(Pass.args(), ActionArgs::Optional([a]) if a.ty == Type::Duration));
        assert!(matches!(Fail.args(), ActionArgs::Optional([a]) if a.ty == Type::String));
        assert!(matches!(Error.args(), ActionArgs::Optional(_)));
        assert_eq!(Deliver.args(), ActionArgs::None);
        assert_eq!(
            Pass.mask(),
            SubMask::of(&[Sub::Recv, Sub::Miss, Sub::Hit, Sub::BackendResponse])
        );
        assert_eq!(
            Restart.mask(),
            SubMask::of(&[
                Sub::Recv,
                Sub::Pass,
                Sub::Purge,
                Sub::Miss,
                Sub::Hit,
                Sub::Deliver,
                Sub::Synth
            ])
        );
        // Messages.
        assert_eq!(
            legal_returns_message(Sub::Hit),
            "Legal returns are: \"deliver\" \"fail\" \"pass\" \"restart\" \"synth\""
        );
        assert_eq!(invalid_return_message(Lookup), "Invalid return \"lookup\"");
    }

    #[test]
    fn functions() {
        let f = lookup_func("std.tolower").unwrap();
        assert_eq!(f.ret, Type::String);
        assert_eq!(f.args.len(), 1);
        assert_eq!(f.args[0].ty, Type::Strands);
        assert_eq!(f.signature(), "STRING std.tolower(STRANDS s)");
        let r = lookup_func("regsub").unwrap();
        assert_eq!(
            r.args.iter().map(|a| a.ty).collect::<Vec<_>>(),
            [Type::String, Type::Regex, Type::String]
        );
        assert!(lookup_func("regsuball").unwrap().supported);
        let c = lookup_func("std.collect").unwrap();
        assert_eq!(c.ret, Type::Void);
        assert_eq!(c.args[0].ty, Type::Header);
        assert_eq!(c.args[1].default, Some(Value::Str(", ")));
        let i = lookup_func("std.integer").unwrap();
        assert_eq!(i.args.len(), 7);
        assert!(i.args.iter().all(|a| a.optional));
        assert_eq!(i.args[1].name, Some("fallback"));
        let ip = lookup_func("std.ip").unwrap();
        assert!(!ip.args[0].omittable());
        assert_eq!(ip.args[2].default, Some(Value::Bool(true)));
        assert_eq!(
            ip.signature(),
            "IP std.ip(STRING s, [IP fallback], BOOL resolve=1, [STRING p])"
        );
        assert_eq!(lookup_func("std.duration").unwrap().ret, Type::Duration);
        assert_eq!(
            lookup_func("std.healthy").unwrap().args[0].ty,
            Type::Backend
        );
        assert_eq!(lookup_func("std.port").unwrap().ret, Type::Int);
        assert_eq!(lookup_func("std.random").unwrap().ret, Type::Real);
        assert_eq!(lookup_func("std.log").unwrap().ret, Type::Void);
        assert!(lookup_func("std.real2integer").unwrap().deprecated);
        assert!(!lookup_func("std.querysort").unwrap().supported);
        assert!(lookup_func("std.now").is_none()); // trunk only
        assert!(lookup_func("tolower").is_none());
        // The issue's required functions are all supported.
        for n in [
            "regsub",
            "regsuball",
            "std.healthy",
            "std.tolower",
            "std.toupper",
            "std.integer",
            "std.duration",
            "std.log",
            "std.ip",
            "std.port",
            "std.random",
            "std.collect",
        ] {
            assert!(lookup_func(n).unwrap().supported, "{n}");
        }
        let names: HashSet<_> = FUNCS.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FUNCS.len());
        assert!(FUNCS.iter().all(|f| f.restrict == SubMask::ALL));
        assert_eq!(modules(), ["std", "directors"]);
        assert_eq!(unknown_module_message("foo"), "Could not find VMOD foo");
    }

    #[test]
    fn directors() {
        let rr = lookup_constructor("directors.round_robin").unwrap();
        assert_eq!(rr.object, Some(ObjectKind::RoundRobin));
        assert_eq!(rr.restrict, Sub::Init.mask());
        assert_eq!(rr.ret, Type::Instance);
        let fb = lookup_constructor("directors.fallback").unwrap();
        assert_eq!(fb.args[0].name, Some("sticky"));
        assert_eq!(fb.args[0].default, Some(Value::Bool(false)));
        assert!(
            lookup_constructor("directors.least_connections")
                .unwrap()
                .extension
        );
        assert!(lookup_constructor("directors.nope").is_none());
        assert_eq!(
            ObjectKind::from_constructor("directors.shard"),
            Some(ObjectKind::Shard)
        );
        for k in ObjectKind::ALL {
            let c = lookup_constructor(&format!("directors.{}", k.name())).unwrap();
            assert_eq!(c.object, Some(k));
            if k.is_director() {
                let b = lookup_method(k, "backend").unwrap();
                assert_eq!(b.ret, Type::Backend);
                assert!(lookup_method(k, "add_backend").is_some());
                assert!(lookup_method(k, "remove_backend").is_some());
            }
            let names: Vec<_> = methods_of(k).map(|m| m.name).collect();
            let set: HashSet<_> = names.iter().collect();
            assert_eq!(set.len(), names.len(), "{k:?}");
        }
        let add = lookup_method(ObjectKind::Random, "add_backend").unwrap();
        assert_eq!(
            add.args.iter().map(|a| a.ty).collect::<Vec<_>>(),
            [Type::Backend, Type::Real]
        );
        assert!(!add.args[1].omittable());
        let add = lookup_method(ObjectKind::Hash, "add_backend").unwrap();
        assert_eq!(add.args[1].default, Some(Value::Real(1.0)));
        assert_eq!(
            lookup_method(ObjectKind::Hash, "backend").unwrap().args[0].ty,
            Type::Strands
        );
        let sb = lookup_method(ObjectKind::Shard, "backend").unwrap();
        let names: Vec<_> = sb.args.iter().map(|a| a.name.unwrap()).collect();
        assert_eq!(
            names,
            ["by", "key", "key_blob", "alt", "warmup", "rampup", "healthy", "param", "resolve"]
        );
        assert!(sb.args.iter().all(|a| a.optional));
        assert_eq!(sb.args[0].ty, Type::Enum(&["HASH", "URL", "KEY", "BLOB"]));
        assert_eq!(sb.args[0].default, Some(Value::Enum("HASH")));
        assert_eq!(sb.args[6].default, Some(Value::Enum("CHOSEN")));
        assert_eq!(sb.args[8].default, None);
        assert_eq!(
            lookup_method(ObjectKind::Shard, "reconfigure")
                .unwrap()
                .args[0]
                .default,
            Some(Value::Int(67))
        );
        assert_eq!(
            lookup_method(ObjectKind::Shard, "add_backend").unwrap().ret,
            Type::Bool
        );
        assert!(lookup_method(ObjectKind::RoundRobin, "reconfigure").is_none());
        assert!(lookup_method(ObjectKind::ShardParam, "backend").is_none());
    }

    #[test]
    fn statements_and_restrictions() {
        assert_eq!(
            lookup_statement("hash_data").unwrap().mask,
            Sub::Hash.mask()
        );
        assert_eq!(
            lookup_statement("synthetic").unwrap().mask,
            SubMask::of(&[Sub::Synth, Sub::BackendError])
        );
        assert_eq!(lookup_statement("new").unwrap().mask, Sub::Init.mask());
        assert_eq!(lookup_statement("set").unwrap().mask, SubMask::ALL);
        assert!(lookup_statement("ban").is_some());
        assert!(lookup_statement("elsif").is_none());
        assert_eq!(
            restriction_error(Access::Action, Sub::Recv, false),
            "Not a valid action in subroutine 'vcl_recv'."
        );
        assert_eq!(
            restriction_error(Access::Write, Sub::Hit, true),
            "Cannot be set from subroutine 'vcl_hit'."
        );
    }

    #[test]
    fn operators() {
        use ArithOp as O;
        use Type::*;
        // obj.ttl + obj.grace > 0s
        assert_eq!(arith_result(O::Add, Duration, Duration), Some(Duration));
        assert!(compare_ok(Duration, CmpOp::Gt));
        assert_eq!(arith_result(O::Sub, Time, Time), Some(Duration));
        assert_eq!(arith_result(O::Add, Time, Time), None);
        assert_eq!(arith_result(O::Add, Time, Duration), Some(Time));
        assert_eq!(arith_result(O::Add, Duration, Time), None);
        assert_eq!(arith_result(O::Add, Int, Real), Some(Real));
        assert_eq!(arith_result(O::Mul, Duration, Real), Some(Duration));
        assert_eq!(arith_result(O::Mul, Duration, Int), Some(Duration));
        assert_eq!(arith_result(O::Mul, Duration, Duration), None);
        assert_eq!(arith_result(O::Rem, Int, Int), Some(Int));
        assert_eq!(arith_result(O::Rem, Real, Int), None);
        assert_eq!(arith_result(O::Add, String, Int), None); // concatenation, not arithmetic
        assert!(compare_ok(Backend, CmpOp::Eq));
        assert!(!compare_ok(Backend, CmpOp::Lt));
        assert!(compare_ok(String, CmpOp::Match));
        assert!(compare_ok(Header, CmpOp::Lt));
        assert!(compare_ok(Ip, CmpOp::Match));
        assert!(!compare_ok(Ip, CmpOp::Lt));
        assert!(!compare_ok(Bool, CmpOp::Lt));
        assert!(!compare_ok(Int, CmpOp::Match));
        assert_eq!(match_rhs(Ip), Some(Acl));
        assert_eq!(match_rhs(Header), Some(Regex));
        // BOOL and STRING contexts.
        assert!(Backend.to_bool_ok() && Header.to_bool_ok() && Duration.to_bool_ok());
        assert!(!Real.to_bool_ok() && !Time.to_bool_ok() && !Ip.to_bool_ok());
        assert!(Time.to_string_ok() && Backend.to_string_ok() && Ip.to_string_ok());
        assert!(!Probe.to_string_ok() && !Sub.to_string_ok() && !Http.to_string_ok());
        // set operators.
        assert_eq!(assign_rhs(Header, AssignOp::Add), Some(String));
        assert_eq!(assign_rhs(Duration, AssignOp::Mul), Some(Real));
        assert_eq!(assign_rhs(Bool, AssignOp::Add), None);
        assert_eq!(assign_rhs(Backend, AssignOp::Set), Some(Backend));
        assert_eq!(assign_rhs(Int, AssignOp::Div), Some(Int));
        // Type methods.
        assert_eq!(lookup_type_method(Backend, "resolve").unwrap().ret, Backend);
        assert!(lookup_type_method(Header, "upper").unwrap().call);
        assert!(!lookup_type_method(Stevedore, "happy").unwrap().call);
        assert!(lookup_type_method(Int, "resolve").is_none());
        assert_eq!(Strands.name(), "STRING");
    }
}
