//! The io engine: when io_uring cannot be set up, ringcache falls back to the epoll driver,
//! says so once, and serves normally.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, Origin, Reply};

/// Starts ringcache with `extra` env and, when `deny_uring`, a seccomp filter that makes
/// `io_uring_setup(2)` fail with EPERM (as Docker's default profile and
/// `kernel.io_uring_disabled` do). Returns the child, its listen address and its stderr so far.
/// The child, killed on drop so a failed assertion never leaves a server running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    origin: &Origin,
    cores: usize,
    deny_uring: bool,
    env: &[(&str, &str)],
) -> (Proc, std::net::SocketAddr, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcache"));
    cmd.args([
        "-a",
        "127.0.0.1:0",
        "-b",
        &origin.addr().to_string(),
        "-p",
        &format!("cores={cores}"),
        "-p",
        "cpu_affinity=off",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd.env_remove("RINGCACHE_FORCE_EPOLL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if deny_uring {
        #[cfg(target_arch = "x86_64")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and only calls
            // async-signal-safe prctl(2) with a filter program that lives on this stack frame
            // for the duration of the call; it allocates nothing and touches no locks.
            unsafe {
                cmd.pre_exec(|| {
                    deny_io_uring_setup();
                    Ok(())
                });
            }
        }
    }
    let mut child = Proc(cmd.spawn().expect("spawn ringcache"));
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut addr = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("ringcache: listening on ") {
                    addr = a.trim().parse().ok();
                }
                let ready = line.starts_with("ringcache: ready");
                lines.push(line);
                if ready {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(_) => break,
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("ringcache did not start: {lines:?}"));
    (child, addr, lines)
}

/// Installs a seccomp filter: io_uring_setup (425) -> EPERM, everything else allowed.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring_setup() {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const NR_IO_URING_SETUP: u32 = 425;
    let prog = [
        // A = seccomp_data.nr
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: NR_IO_URING_SETUP,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: plain prctl(2) calls; `fprog` and `prog` outlive them. Failure leaves io_uring
    // allowed, which the test then detects (it asserts the fallback line).
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const SockFprog, 0, 0);
    }
}

fn stop(child: Proc) {
    drop(child);
}

fn origin() -> Origin {
    Origin::start(|req, _| Reply::ok(format!("body of {}", req.url)).cc("max-age=60"))
}

// Goal: a kernel or sandbox that refuses io_uring still gets a working server on epoll, and the
// operator is told once.
// Method: seccomp makes io_uring_setup fail with EPERM in the child; expect exactly one
// "io_uring is not available" line, "ready (2 shards, epoll)", then a miss and a hit.
#[cfg(target_arch = "x86_64")]
#[test]
fn falls_back_to_epoll_when_io_uring_is_refused() {
    let o = origin();
    let (child, addr, lines) = start(&o, 2, true, &[]);
    let notes = lines
        .iter()
        .filter(|l| l.contains("io_uring is not available"))
        .count();
    assert_eq!(notes, 1, "the fallback is said exactly once: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "ringcache: ready (2 shards, epoll)"),
        "{lines:?}"
    );
    let r1 = get(addr, "/e", &[]);
    assert_eq!(r1.status, 200, "{}", r1.summary());
    assert_eq!(r1.body_str(), "body of /e");
    let r2 = get(addr, "/e", &[]);
    assert!(r2.is_hit(), "{}", r2.summary());
    assert_eq!(o.request_count(), 1);
    stop(child);
}

// Goal: without any restriction the io_uring driver is used and nothing about epoll is said.
// Method: start normally and read the ready line.
#[test]
fn uses_io_uring_when_available() {
    let o = origin();
    let (child, addr, lines) = start(&o, 1, false, &[]);
    assert!(
        lines
            .iter()
            .any(|l| l == "ringcache: ready (1 shards, io_uring)"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("epoll")), "{lines:?}");
    assert_eq!(get(addr, "/u", &[]).status, 200);
    stop(child);
}

// Goal: RINGCACHE_FORCE_EPOLL=1 selects the epoll driver on purpose (for testing the path on
// machines where io_uring works), and the whole request path works on it.
// Method: start with the variable, expect the epoll ready line, a miss then a hit.
#[test]
fn forced_epoll_serves() {
    let o = origin();
    let (child, addr, lines) = start(&o, 2, false, &[("RINGCACHE_FORCE_EPOLL", "1")]);
    assert!(
        lines
            .iter()
            .any(|l| l == "ringcache: ready (2 shards, epoll)"),
        "{lines:?}"
    );
    assert_eq!(get(addr, "/f", &[]).status, 200);
    assert!(get(addr, "/f", &[]).is_hit());
    stop(child);
}
