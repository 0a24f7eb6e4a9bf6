//! Fuzz target `vcl_compile`: any bytes, read as a VCL file (invalid UTF-8 handled as for a file
//! on disk), go through the whole front end: include expansion (nothing is ever read from the
//! filesystem), parsing, the checker with the built-in VCL appended (host names resolved in
//! memory, never through DNS), and the rendering of every diagnostic. The property: no input
//! panics or hangs. See docs/vcl.md, "Fuzzing", for the command.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ringcache::vcl::parser::parse_without_includes;
use ringcache::vcl::{compile, CompileOptions, SourceMap};

fuzz_target!(|data: &[u8]| {
    let opts = CompileOptions {
        resolver: Some(Arc::new(|host: &str, port: &str| {
            if host.ends_with(".invalid") {
                return Err("Name or service not known".into());
            }
            let port = port.parse().unwrap_or(80);
            Ok(vec![SocketAddr::from(([192, 0, 2, 10], port))])
        })),
        // Alternate, so both settings of the unused-symbol rule are explored.
        allow_unused: data.len() % 2 == 1,
        ..Default::default()
    };
    let mut map = SourceMap::new();
    let id = map.add_bytes("fuzz.vcl", None, data);
    let diags = match parse_without_includes(&mut map, id) {
        Err(e) => e,
        Ok(vcl) => match compile(&mut map, &vcl, &opts) {
            Ok(p) => p.warnings,
            Err(e) => e,
        },
    };
    let _ = map.render_all(&diags);
});
