//! systemd's notify protocol (`sd_notify(3)`), without libsystemd.
//!
//! Why our own ~100 lines: the protocol is one datagram of `KEY=VALUE` lines to the unix socket
//! named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`), declared
//! stable by systemd, and the rest of libsystemd is not needed. Pulling in a C library (or a crate
//! wrapping one) for a `sendto` would add a build dependency every packager has to carry.
//!
//! Errors never stop the server: without `$NOTIFY_SOCKET` every send is a no-op, an address
//! that cannot be used is reported once at boot, and a failed send is reported once (the man
//! page's advice is to ignore them; one line helps whoever wonders why systemd hears nothing).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket in the file system (`/run/systemd/notify`).
    Path(PathBuf),
    /// An abstract socket (`@name` in the variable; the name without the `@`).
    Abstract(Vec<u8>),
}

/// Parses `$NOTIFY_SOCKET`. `Ok(None)`: unset or empty (not under systemd).
pub fn parse_target(v: Option<&OsStr>) -> Result<Option<Target>, String> {
    let Some(v) = v else {
        return Ok(None);
    };
    let b = v.as_bytes();
    match b.first() {
        None => Ok(None),
        Some(b'/') => Ok(Some(Target::Path(PathBuf::from(v)))),
        Some(b'@') if b.len() > 1 => Ok(Some(Target::Abstract(b[1..].to_vec()))),
        _ => Err(format!(
            "NOTIFY_SOCKET={} is not supported (want an absolute path or @abstract-name)",
            v.to_string_lossy()
        )),
    }
}

/// Sends notifications to systemd (or nowhere).
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    socket: Option<UnixDatagram>,
    /// A send failed already (reported once).
    failed: AtomicBool,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            socket: None,
            failed: AtomicBool::new(false),
        }
    }

    /// From `$NOTIFY_SOCKET`; a value that cannot be used is reported on stderr and ignored.
    pub fn from_env() -> Notifier {
        match parse_target(std::env::var_os("NOTIFY_SOCKET").as_deref()) {
            Ok(Some(t)) => Notifier::to(t),
            Ok(None) => Notifier::none(),
            Err(e) => {
                eprintln!("ringcache: systemd: {e}; not notifying");
                Notifier::none()
            }
        }
    }

    /// A notifier sending to `target`.
    pub fn to(target: Target) -> Notifier {
        let socket = match UnixDatagram::unbound() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("ringcache: systemd: cannot create a notify socket: {e}");
                None
            }
        };
        Notifier {
            target: Some(target),
            socket,
            failed: AtomicBool::new(false),
        }
    }

    /// Is there anyone to notify?
    pub fn enabled(&self) -> bool {
        self.target.is_some() && self.socket.is_some()
    }

    /// Sends `msg` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn send(&self, msg: &str) {
        let (Some(target), Some(sock)) = (&self.target, &self.socket) else {
            return;
        };
        if let Err(e) = send_to(sock, target, msg.as_bytes()) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                eprintln!("ringcache: systemd: notify failed: {e} (further failures not logged)");
            }
        }
    }
}

fn send_to(sock: &UnixDatagram, target: &Target, msg: &[u8]) -> std::io::Result<usize> {
    match target {
        Target::Path(p) => sock.send_to(msg, p),
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds (what `MONOTONIC_USEC=` carries; `Instant` hides it).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// The watchdog timeout systemd asks for (`$WATCHDOG_USEC`), if it is meant for this process
/// (`$WATCHDOG_PID` unset or equal to `pid`). `Err` for a value that does not parse.
pub fn watchdog_timeout(
    usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(p) = watchdog_pid {
        match p.to_str().and_then(|s| s.trim().parse::<u32>().ok()) {
            Some(p) if p == pid => {}
            Some(_) => return Ok(None),
            None => {
                return Err(format!(
                    "WATCHDOG_PID={} is not a process id",
                    p.to_string_lossy()
                ))
            }
        }
    }
    match usec.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(0) => Ok(None),
        Some(us) => Ok(Some(Duration::from_micros(us))),
        None => Err(format!(
            "WATCHDOG_USEC={} is not a number of microseconds",
            usec.to_string_lossy()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn targets() {
        assert_eq!(parse_target(None), Ok(None));
        assert_eq!(parse_target(Some(OsStr::new(""))), Ok(None));
        assert_eq!(
            parse_target(Some(OsStr::new("/run/systemd/notify"))),
            Ok(Some(Target::Path("/run/systemd/notify".into())))
        );
        assert_eq!(
            parse_target(Some(OsStr::new("@sd-notify/x"))),
            Ok(Some(Target::Abstract(b"sd-notify/x".to_vec())))
        );
        assert!(parse_target(Some(OsStr::new("@"))).is_err());
        assert!(parse_target(Some(OsStr::new("relative/path"))).is_err());
        assert!(parse_target(Some(OsStr::new("vsock:2:1234"))).is_err());
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!(
            "ringcache-notify-{}-{}",
            std::process::id(),
            monotonic_usec()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::to(Target::Path(path.clone()));
        assert!(n.enabled());
        n.send("READY=1\nSTATUS=up");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringcache-test-{}-{}", std::process::id(), monotonic_usec());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let var = OsString::from(format!("@{name}"));
        let t = parse_target(Some(&var)).expect("parses").expect("some");
        Notifier::to(t).send("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let n = Notifier::to(Target::Path("/nonexistent/ringcache/notify.sock".into()));
        n.send("READY=1");
        n.send("READY=1");
        Notifier::none().send("READY=1");
        assert!(!Notifier::none().enabled());
    }

    #[test]
    fn watchdog_settings() {
        let s = |v: &str| Some(OsString::from(v));
        let w = |u: Option<OsString>, p: Option<OsString>| {
            watchdog_timeout(u.as_deref(), p.as_deref(), 42)
        };
        assert_eq!(w(None, None), Ok(None));
        assert_eq!(w(s("2000000"), None), Ok(Some(Duration::from_secs(2))));
        assert_eq!(w(s("2000000"), s("42")), Ok(Some(Duration::from_secs(2))));
        assert_eq!(
            w(s("2000000"), s("41")),
            Ok(None),
            "meant for another process"
        );
        assert_eq!(w(s("0"), None), Ok(None));
        assert!(w(s("soon"), None).is_err());
        assert!(w(s("1"), s("me")).is_err());
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec();
        assert!(a > 0 && b > a, "{a} {b}");
    }
}
