//! Where a backend's connections go and what each new one says first: TCP or Unix socket
//! endpoints, `.preamble`, PROXY headers, and the stream type the fetch code reads and writes.
//!
//! Why a module of its own: a backend connection is more than an address. A `.path` backend is
//! a Unix socket; a `.via` backend connects to another backend (a TLS onloader, say) and opens
//! every connection with a PROXY v2 header naming the real destination and its authority; a
//! `.preamble` is written on every new connection. All of that is fixed when the VCL loads and
//! is the identity of a connection, so an [`Endpoint`] (destination + preamble) is also the key
//! of the per-shard pools: two backends naming the same endpoint share pooled connections, two
//! that differ in what they send first never do (Varnish's `VCP_Ref` keys pools the same way).
//! A `.proxy_header` line depends on the client of each fetch; it is sent per connection and
//! such connections are never pooled.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;

/// The address a backend's connections are opened to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    Tcp(SocketAddr),
    /// `.path`: a Unix domain socket.
    Uds(Arc<Path>),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Tcp(a) => write!(f, "{a}"),
            Dest::Uds(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A destination and the bytes every new connection to it starts with (`.preamble`, or the
/// PROXY v2 header of a `.via` backend). The key of a connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub dest: Dest,
    pub preamble: Option<Bytes>,
}

impl Endpoint {
    pub fn tcp(addr: SocketAddr) -> Endpoint {
        Endpoint {
            dest: Dest::Tcp(addr),
            preamble: None,
        }
    }
}

/// A connection to a backend: TCP or a Unix socket, read and written alike.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

// SAFETY: `Split` promises that the read and write halves of the value can be used
// concurrently. Both variants are monoio streams that implement `Split` themselves (their
// reads and writes are independent io_uring operations on one fd); the enum only delegates
// each call to the variant it holds, which never changes after construction.
unsafe impl monoio::io::Split for Stream {}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.readv(buf).await,
            Stream::Unix(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.write(buf).await,
            Stream::Unix(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.writev(buf).await,
            Stream::Unix(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush().await,
            Stream::Unix(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        }
    }
}

/// Why opening a connection failed.
#[derive(Debug)]
pub enum ConnectError {
    Failed(io::Error),
    TimedOut,
}

/// What a connection is for: it decides the socket options set after connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Fetches and pipes: `TCP_NODELAY`, since requests and bodies go out in several writes.
    Traffic,
    /// Health probes: one write and a read to the close, so no option and no `setsockopt(2)`
    /// (one syscall less per probe on the poller, 10,000 a second at the scale target).
    Probe,
}

/// Opens a connection to `dest` within `limit`, with the options `purpose` needs.
pub async fn connect(
    dest: &Dest,
    limit: Duration,
    purpose: Purpose,
) -> Result<Stream, ConnectError> {
    let res = match dest {
        Dest::Tcp(addr) => monoio::time::timeout(limit, TcpStream::connect_addr(*addr))
            .await
            .map(|r| {
                r.map(|s| {
                    if purpose == Purpose::Traffic {
                        let _ = s.set_nodelay(true);
                    }
                    Stream::Tcp(s)
                })
            }),
        Dest::Uds(path) => monoio::time::timeout(limit, UnixStream::connect(&**path))
            .await
            .map(|r| r.map(Stream::Unix)),
    };
    match res {
        Err(_) => Err(ConnectError::TimedOut),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// How long connects to an endpoint are held down after `e` (Varnish's `VCP_Open`): remote
/// errors (refused, network unreachable) for `backend_remote_error_holddown`, local ones
/// (permission, no local address) for `backend_local_error_holddown`; others not at all.
pub fn holddown_for(e: &io::Error, remote: f64, local: f64) -> Option<f64> {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) | Some(libc::ENETUNREACH) => Some(remote),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EADDRNOTAVAIL) => Some(local),
        _ => None,
    }
    .filter(|s| *s > 0.0)
}

/// The 12-byte PROXY v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// `PP2_TYPE_AUTHORITY`.
const PP2_TYPE_AUTHORITY: u8 = 0x02;

/// A PROXY v1 line for a connection from `client` to `server` (Varnish's
/// `vpx_format_proxy_v1`): the family is the server's; a client of the other family is
/// written as an address of the server's family (IPv4-mapped or unspecified).
pub fn proxy_v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let client = same_family(client, server);
    let fam = if server.is_ipv6() { "TCP6" } else { "TCP4" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port()
    )
    .into_bytes()
}

/// A PROXY v2 header (command PROXY, stream) from `client` to `server`, with an authority TLV
/// when `authority` is non-empty (Varnish's `vpx_format_proxy_v2`).
pub fn proxy_v2(client: SocketAddr, server: SocketAddr, authority: Option<&str>) -> Vec<u8> {
    let client = same_family(client, server);
    let auth = authority.filter(|a| !a.is_empty()).map(str::as_bytes);
    let tlv = auth.map_or(0, |a| 3 + a.len());
    let mut out = Vec::with_capacity(16 + 36 + tlv);
    out.extend_from_slice(&V2_SIG);
    out.push(0x21);
    let (fam, len) = if server.is_ipv6() {
        (0x21, 36)
    } else {
        (0x11, 12)
    };
    out.push(fam);
    out.extend_from_slice(&((len + tlv) as u16).to_be_bytes());
    for a in [client, server] {
        match a.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&server.port().to_be_bytes());
    if let Some(a) = auth {
        out.push(PP2_TYPE_AUTHORITY);
        out.extend_from_slice(&(a.len() as u16).to_be_bytes());
        out.extend_from_slice(a);
    }
    out
}

/// The preamble of a `.via` connection: PROXY v2 from the unspecified address of the
/// destination's family (Varnish's `bogo_ip`) to `dest`, with the authority TLV.
pub fn via_preamble(dest: SocketAddr, authority: Option<&str>) -> Bytes {
    let bogo = match dest {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    Bytes::from(proxy_v2(bogo, dest, authority))
}

/// `a` written in `like`'s address family.
fn same_family(a: SocketAddr, like: SocketAddr) -> SocketAddr {
    match (a.ip(), like.is_ipv6()) {
        (IpAddr::V4(ip), true) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        (IpAddr::V6(ip), false) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), a.port()),
        },
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn proxy_v1_lines() {
        assert_eq!(
            proxy_v1(sa("10.1.2.3:5555"), sa("127.0.0.1:80")),
            b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 80\r\n"
        );
        assert_eq!(
            proxy_v1(sa("[2001:db8::1]:5555"), sa("[::1]:8080")),
            b"PROXY TCP6 2001:db8::1 ::1 5555 8080\r\n"
        );
        // A client of the other family is written in the server's.
        assert_eq!(
            proxy_v1(sa("10.0.0.1:1"), sa("[::1]:2")),
            b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n"
        );
    }

    #[test]
    fn proxy_v2_bytes() {
        let h = proxy_v2(sa("1.2.3.4:258"), sa("5.6.7.8:80"), None);
        let mut want = V2_SIG.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 0, 80]);
        assert_eq!(h, want);
        let h = proxy_v2(sa("[::]:0"), sa("[::1]:443"), Some("example.com"));
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36 + 3 + 11]);
        assert_eq!(h.len(), 16 + 36 + 3 + 11);
        assert_eq!(&h[16 + 32..16 + 36], &[0, 0, 1, 187]);
        assert_eq!(&h[16 + 36..16 + 39], &[PP2_TYPE_AUTHORITY, 0, 11]);
        assert_eq!(&h[16 + 39..], b"example.com");
        // An empty authority sends no TLV.
        assert_eq!(
            proxy_v2(sa("[::]:0"), sa("[::1]:443"), Some("")).len(),
            16 + 36
        );
    }

    #[test]
    fn via_preamble_names_the_destination() {
        let p = via_preamble(sa("192.0.2.7:443"), Some("origin.example"));
        assert_eq!(
            &p[16..20],
            &[0, 0, 0, 0],
            "source is the unspecified address"
        );
        assert_eq!(&p[20..24], &[192, 0, 2, 7]);
        assert_eq!(&p[26..28], &443u16.to_be_bytes());
        assert!(p.ends_with(b"origin.example"));
    }

    #[test]
    fn holddown_classes() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(holddown_for(&e(libc::ECONNREFUSED), 0.25, 10.0), Some(0.25));
        assert_eq!(holddown_for(&e(libc::ENETUNREACH), 0.25, 10.0), Some(0.25));
        assert_eq!(holddown_for(&e(libc::EACCES), 0.25, 10.0), Some(10.0));
        assert_eq!(
            holddown_for(&e(libc::EADDRNOTAVAIL), 0.25, 10.0),
            Some(10.0)
        );
        assert_eq!(holddown_for(&e(libc::ETIMEDOUT), 0.25, 10.0), None);
        assert_eq!(holddown_for(&e(libc::ECONNREFUSED), 0.0, 10.0), None);
    }
}
