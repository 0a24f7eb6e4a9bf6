//! The admin listener: blocking std sockets on control-plane threads.
//!
//! One accept thread per `-T` address, one thread per connection, at most
//! [`MAX_CONNECTIONS`] at once (the next one is told so and closed). A connection that sends
//! nothing for [`IDLE_TIMEOUT`] is closed; a line longer than [`protocol::MAX_LINE`] is refused
//! and the connection closed. Nothing here runs on a shard.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::commands::{self, Context, Session};
use super::protocol::{self, status, Reader, Request};
use super::AdminConfig;

/// Concurrent admin connections.
pub const MAX_CONNECTIONS: usize = 16;
/// An admin connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one response may take to leave.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound admin sockets, not yet accepting.
pub struct Listener {
    sockets: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(16)?;
    Ok(s.into())
}

/// Checks the secret file and binds every `-T` address (port 0: the kernel picks one for the
/// first address and the others share it). Errors are one line.
pub fn bind(cfg: &AdminConfig) -> Result<Listener, String> {
    if let Some(path) = &cfg.secret {
        match std::fs::read(path) {
            Ok(s) if s.is_empty() => {
                return Err(format!("-S {}: the secret file is empty", path.display()))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "-S {}: cannot read the secret file: {e}",
                    path.display()
                ))
            }
        }
    }
    let mut sockets = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for &want in &cfg.listen {
        let mut addr = want;
        if addr.port() == 0 {
            if let Some(first) = addrs.first() {
                addr.set_port(first.port());
            }
        }
        let explain = |e: io::Error| {
            let why = if e.kind() == io::ErrorKind::AddrInUse {
                "address already in use".to_string()
            } else {
                e.to_string()
            };
            if addr == want {
                format!("-T {want}: cannot listen: {why}")
            } else {
                format!("-T {want}: cannot listen on {addr}: {why}")
            }
        };
        let s = bind_one(addr).map_err(explain)?;
        addrs.push(s.local_addr().map_err(explain)?);
        sockets.push(s);
    }
    Ok(Listener { sockets, addrs })
}

impl Listener {
    /// The bound addresses (empty with `-T none`).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Starts accepting, one thread per address.
    pub fn start(self, ctx: Context) -> io::Result<()> {
        let ctx = Arc::new(ctx);
        let active = Arc::new(AtomicUsize::new(0));
        for sock in self.sockets {
            let ctx = ctx.clone();
            let active = active.clone();
            std::thread::Builder::new()
                .name("ringcache-admin".into())
                .spawn(move || accept_loop(sock, ctx, active))?;
        }
        Ok(())
    }
}

/// Decrements the connection count when a connection thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: TcpListener, ctx: Arc<Context>, active: Arc<AtomicUsize>) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("ringcache: admin: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            refuse(stream);
            continue;
        }
        let slot = Slot(active.clone());
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("ringcache-admin-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = serve(stream, peer, &ctx);
            });
        if let Err(e) = spawned {
            // The closure (and its slot) was dropped with the error.
            eprintln!("ringcache: admin: cannot start a connection thread: {e}");
        }
    }
}

/// Tells a connection over the limit why it is closed.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let body = format!("Too many admin connections (limit {MAX_CONNECTIONS})");
    let _ = stream.write_all(&protocol::frame(status::CANT, &body));
}

/// One admin connection, until it closes, errs, idles out or is told to close.
fn serve(mut stream: TcpStream, peer: SocketAddr, ctx: &Context) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let (mut sess, first) = match Session::open(ctx, peer.to_string()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ringcache: admin: cannot make a challenge: {e}");
            return Err(e);
        }
    };
    stream.write_all(&protocol::frame(first.status, &first.body))?;
    let mut reader = Reader::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(req) = reader.next_request(sess.authenticated()) {
            let reply = match req {
                Request::Args(words) => commands::execute(ctx, &mut sess, words),
                Request::TooLong => commands::Reply {
                    status: status::COMMS,
                    body: format!(
                        "Request too long (limit {} bytes per line, {} per here-document)\n",
                        protocol::MAX_LINE,
                        protocol::MAX_HEREDOC
                    ),
                    close: true,
                },
            };
            stream.write_all(&protocol::frame(reply.status, &reply.body))?;
            if reply.close {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Includes the idle timeout (WouldBlock/TimedOut).
            Err(e) => return Err(e),
        };
        reader.push(&buf[..n]);
    }
}
