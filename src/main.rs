//! `ringcache`: parse the command line, then boot the server in the foreground (or run an admin
//! client: `ringcache adm ...`, `ringcache stat ...`).

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

use ringcache::cli::{self, Action};

fn main() {
    match cli::parse(std::env::args_os()) {
        Ok(Action::Print(text)) => print!("{text}"),
        Ok(Action::Admin(request)) => std::process::exit(ringcache::admin::client::run(&request)),
        Ok(Action::CheckVcl(file)) => std::process::exit(check_vcl(&file)),
        Ok(Action::Serve(config)) => {
            for n in &config.notices {
                eprintln!("ringcache: {n}");
            }
            let pid_file = config.pid_file.clone();
            if let Some(p) = &pid_file {
                if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                    eprintln!("ringcache: error: -P {}: {e}", p.display());
                    std::process::exit(1);
                }
            }
            let code = match ringcache::server::run(*config) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("ringcache: error: {e}");
                    1
                }
            };
            if let Some(p) = &pid_file {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(code);
        }
        Err(e) => {
            eprintln!("ringcache: error: {e}");
            std::process::exit(2);
        }
    }
}

/// `-C -f FILE`: every error (or the warnings) on stderr; 0 when it compiles, 1 otherwise.
fn check_vcl(file: &std::path::Path) -> i32 {
    let opts = ringcache::vcl::CompileOptions::default();
    let (map, r) = ringcache::vcl::compile_file(file, &opts);
    match r {
        Ok((_, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", map.render_all(&warnings));
            }
            0
        }
        Err(diags) => {
            eprint!("{}", map.render_all(&diags));
            1
        }
    }
}
