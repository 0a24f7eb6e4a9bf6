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
        Ok(Action::Serve(config)) => {
            if let Err(e) = ringcache::server::run(*config) {
                eprintln!("ringcache: error: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("ringcache: error: {e}");
            std::process::exit(2);
        }
    }
}
