//! `return (pipe)`: the client connection becomes a TCP tunnel to a backend.
//!
//! Why a module of its own: after the backend request is sent, ringcache stops speaking HTTP on
//! the connection (WebSocket upgrades, CONNECT-like methods, anything VCL chooses to pipe), so
//! neither side's bytes are parsed. Both directions are copied concurrently; when one side
//! finishes sending, the other side's write half is shut down (the half-close travels through)
//! and the tunnel ends when both directions are done, or when neither moved a byte for
//! `pipe_timeout`. Either way both connections are closed, never pooled.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::backend::Stream;
use crate::stats::C;

use super::conn_slot::ConnGuard;
use super::shard::Shard;

/// A tunnel ready to run: the backend connection with the request already sent.
pub struct PipeJob {
    pub backend: Stream,
    pub idle: Duration,
    /// The tunnel's claim on a backend connection, released when it ends.
    pub _conn: ConnGuard,
}

/// Bytes one read may bring.
const CHUNK: usize = 16 * 1024;

/// Copies bytes both ways between `client` and the job's backend until both directions end.
pub async fn splice(shard: &Shard, client: TcpStream, job: PipeJob) {
    let (cr, cw) = client.into_split();
    let (br, bw) = job.backend.into_split();
    let idle = job.idle;
    let up = monoio::spawn(copy(cr, bw, idle));
    let down = copy(br, cw, idle).await;
    let up = up.await;
    let c = shard.counters();
    c.add(C::s_pipe_in, up);
    c.add(C::s_pipe_out, down);
}

/// Copies `from` to `to` until EOF, an error or `idle` without data; then shuts `to`'s write
/// side down. Returns the bytes copied.
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(mut from: R, mut to: W, idle: Duration) -> u64 {
    let mut total = 0u64;
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.clear();
        let (res, b) = match monoio::time::timeout(idle, from.read(buf)).await {
            Ok(r) => r,
            Err(_) => break,
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
        let data: Bytes = buf.split().freeze();
        match monoio::time::timeout(idle, to.write_all(data)).await {
            Ok((Ok(_), _)) => {}
            _ => break,
        }
        if buf.capacity() < CHUNK {
            buf = BytesMut::with_capacity(CHUNK);
        }
    }
    let _ = to.shutdown().await;
    total
}
