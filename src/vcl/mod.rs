//! The VCL compiler: Varnish 7.1 configuration language.
//!
//! Why a front end of our own instead of a generic parser: operators bring the `default.vcl`
//! they run on varnishd and expect it to load unchanged, or to be refused with an error as
//! precise as varnishd's. So the lexer and parser follow libvcc's grammar rule for rule
//! (`vcc_token.c`, `vcc_parse.c`, `vcc_expr.c`, `vcc_backend.c`, `vcc_acl.c`) and reuse its
//! wording, while diagnostics are collected (several per run) and rendered as
//! `FILE:LINE:COL: message`, the source line and a caret.
//!
//! The parts: `diag` (source map, spans, diagnostics and their rendering), `lexer` (tokens),
//! `ast` (the untyped syntax tree), `parser` (syntax only, `include` resolved), `symbols` (the
//! Varnish symbol tables the checker resolves names and types against), `check` (names, types,
//! permissions, tables; the built-in VCL appended), `program` (the compiled, pre-resolved
//! form the interpreter runs) and `re` (its regexes, with matchers of their own for the
//! common anchored and literal shapes).

pub mod ast;
pub mod check;
pub mod diag;
pub mod exec;
pub mod lexer;
pub mod loaded;
pub mod parser;
pub mod program;
pub mod re;
pub mod symbols;

pub use check::{compile, compile_file, CompileOptions, CompileResult, Resolver, BUILTIN_VCL};
pub use diag::{Diagnostic, FileId, Severity, SourceMap, Span};
pub use loaded::{LoadError, LoadedVcl};
pub use parser::{parse, parse_file, parse_str};
pub use program::Program;
