//! Startup: the ready line, a varnishd-style command line (`-t`, `-P`, ignored `-n -j -l`),
//! and startup failures (port in use, unresolvable backend, bad
//! flags and parameters) that must exit non-zero with a reason on stderr.

#[macro_use]
mod common;

use common::*;
use std::net::TcpListener;

shard_tests!(
    ready_line_reports_shards,
    port_in_use_fails,
    restart_on_same_port_succeeds,
    unresolvable_backend_fails,
    unknown_param_fails,
    bad_param_value_fails,
    unknown_flag_fails,
    varnishd_command_line_starts,
);

fn cores_arg(cores: usize) -> String {
    format!("cores={cores}")
}

fn non_empty_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Expects a non-zero exit with exactly one non-empty stderr line; returns that line.
fn expect_one_line_failure(args: &[&str]) -> String {
    let (status, err) = Server::start_expect_fail(args);
    assert!(!status.success(), "{args:?} must fail; stderr: {err}");
    let lines = non_empty_lines(&err);
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected a one-line reason on stderr, got:\n{err}"
    );
    lines[0].to_string()
}

// Goal: the server announces its listen address and `ready (<N> shards, io_uring|epoll)`.
// Method: start with cores=N and look at stderr.
fn ready_line_reports_shards(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, cores, &[]);
    let log = s.stderr_text();
    let ready = log
        .lines()
        .find(|l| l.contains("ringcache: ready ("))
        .expect("ready line");
    assert!(
        ready.contains(&format!("ready ({cores} shards, io_uring)"))
            || ready.contains(&format!("ready ({cores} shards, epoll)")),
        "ready line {ready:?} does not report {cores} shards"
    );
    assert_eq!(s.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(s.addr().port(), 0);
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
}

// Goal: a restart on the same port right after the previous instance stopped succeeds (a
// systemd restart, a quick stop/start). The kernel tears a dead process's io_uring rings down
// asynchronously, so its listener can outlive it for a moment.
// Method: serve traffic, kill the server, at once start a new one on the same port; it must
// come up and serve. Repeated a few times to catch the window.
fn restart_on_same_port_succeeds(cores: usize) {
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    let first = Server::for_origin(&o, cores, &[]);
    let listen = first.addr().to_string();
    let backend = o.addr().to_string();
    let c = cores_arg(cores);
    let mut current = first;
    for round in 0..3 {
        for _ in 0..20 {
            assert_eq!(get(current.addr(), "/r", &[]).status, 200);
        }
        drop(current);
        current = Server::try_start(&["-a", &listen, "-b", &backend, "-p", &c])
            .unwrap_or_else(|e| panic!("restart {round} on {listen} failed: {e}"));
    }
    assert_eq!(get(current.addr(), "/r", &[]).status, 200);
}

// Goal: binding a port that is in use fails: non-zero exit, message containing "in use".
// Method: hold a std listener (no SO_REUSEPORT) and start ringcache on its port.
fn port_in_use_fails(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = holder.local_addr().unwrap().to_string();
    let backend = o.addr().to_string();
    let c = cores_arg(cores);
    let (status, err) = Server::start_expect_fail(&["-a", &listen, "-b", &backend, "-p", &c]);
    assert!(!status.success(), "must fail; stderr: {err}");
    assert!(
        err.to_ascii_lowercase().contains("in use"),
        "stderr must say the address is in use: {err}"
    );
    drop(holder);
}

// Goal: an unresolvable backend host fails at startup (Varnish resolves at load time).
fn unresolvable_backend_fails(cores: usize) {
    let c = cores_arg(cores);
    let (status, err) =
        Server::start_expect_fail(&["-a", "127.0.0.1:0", "-b", "nosuchhost.invalid:80", "-p", &c]);
    assert!(!status.success(), "must fail; stderr: {err}");
    assert!(!err.trim().is_empty(), "no reason on stderr");
}

// Goal: an unknown parameter name is rejected with a one-line reason.
fn unknown_param_fails(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let b = o.addr().to_string();
    let c = cores_arg(cores);
    let line =
        expect_one_line_failure(&["-a", "127.0.0.1:0", "-b", &b, "-p", &c, "-p", "nosuch=1"]);
    assert!(
        line.contains("nosuch"),
        "reason should name the parameter: {line}"
    );
}

// Goal: a bad parameter value is rejected with a one-line reason.
fn bad_param_value_fails(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let b = o.addr().to_string();
    let c = cores_arg(cores);
    let line = expect_one_line_failure(&[
        "-a",
        "127.0.0.1:0",
        "-b",
        &b,
        "-p",
        &c,
        "-p",
        "default_ttl=abc",
    ]);
    assert!(
        line.contains("default_ttl") || line.contains("abc"),
        "reason should name the parameter or value: {line}"
    );
}

// Goal: an unknown command-line flag is rejected with a one-line reason.
fn unknown_flag_fails(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let b = o.addr().to_string();
    let c = cores_arg(cores);
    expect_one_line_failure(&["-a", "127.0.0.1:0", "-b", &b, "-p", &c, "--no-such-flag"]);
}

// Goal: a varnishd command line from a unit file starts as is: `-t` is the default TTL (seen
// in `param.show`), `-P` writes the pid file (removed at exit), `-n`/`-j`/`-l` are accepted
// with one notice each on stderr.
fn varnishd_command_line_starts(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let b = o.addr().to_string();
    let c = cores_arg(cores);
    let dir = std::env::temp_dir().join(format!("ringcache-pid-{}-{cores}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pid_file = dir.join("varnishd.pid");
    let pid_path = pid_file.to_string_lossy().to_string();
    let mut s = Server::start(&[
        "-a",
        "127.0.0.1:0",
        "-b",
        &b,
        "-p",
        &c,
        "-t",
        "300",
        "-P",
        &pid_path,
        "-n",
        "/var/lib/varnish/edge",
        "-j",
        "unix,user=vcache",
        "-l",
        "80m",
        "-F",
    ]);
    let written = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(written.trim(), s.pid().to_string());
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let r = adm.cmd("param.show default_ttl");
    assert!(r.body.contains("300"), "{r:?}");
    let err = s.stderr_text();
    for flag in [
        "-n /var/lib/varnish/edge ignored",
        "-j unix,user=vcache ignored",
        "-l 80m ignored",
    ] {
        assert!(err.contains(flag), "{flag}: {err}");
    }
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("exits");
    assert!(st.success(), "{st:?}");
    assert!(!pid_file.exists(), "pid file removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}
