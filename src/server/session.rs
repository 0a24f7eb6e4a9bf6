//! One client connection: read requests, run each through recv -> lookup -> fetch -> deliver,
//! write responses in order.
//!
//! Why one task per connection, sequential: HTTP/1.1 pipelined responses must go out in request
//! order, and handling one request at a time per connection gives that for free while the
//! shard interleaves thousands of connections. The read buffer is reused across requests;
//! request heads are split off it as shared `Bytes`, so parsing copies nothing.
//!
//! What happens to a request once read is `req_fsm`'s business (the VCL state machine); this
//! module owns the socket, the read buffer, request framing and the protocol-level errors that
//! never reach VCL (400, 413, 414, 431, 501, 505). After `return (pipe)` the connection leaves
//! HTTP and becomes a tunnel (`pipe`).

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::http::chunked::ChunkedDecoder;
use crate::http::error::ParseError;
use crate::http::request::{self, BodyFraming, RequestHead};
use crate::stats::C;

use super::deliver::{self, Next};
use super::io::{read_timeout, secs, write_all_timeout, Read, Write};
use super::pipe;
use super::req_fsm::{self, ConnInfo, Done, PipeRequest};
use super::shard::Shard;

/// A client connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    rbuf: BytesMut,
}

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut conn = Conn {
        stream,
        peer,
        local,
        rbuf: BytesMut::with_capacity(4096),
    };
    let mut served = false;
    loop {
        let head = match read_head(&shard, &mut conn, served).await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                shard.counters().inc(C::client_req_400);
                send_parse_error(&shard, &mut conn, &e).await;
                break;
            }
        };
        shard
            .counters()
            .add(C::s_req_hdrbytes, head.head_len as u64);
        let body = match read_body(&shard, &mut conn, &head).await {
            Ok(b) => b,
            Err(BodyError::Parse(e)) => {
                shard.counters().inc(C::client_req_400);
                send_parse_error(&shard, &mut conn, &e).await;
                break;
            }
            Err(BodyError::TooLarge) => {
                shard.counters().inc(C::client_req_400);
                let xid = shard.next_xid();
                let _ = deliver::send_plain(
                    &shard,
                    &mut conn.stream,
                    413,
                    "Payload Too Large",
                    xid,
                    false,
                )
                .await;
                break;
            }
            Err(BodyError::Gone) => break,
        };
        shard.counters().inc(C::client_req);
        let info = ConnInfo {
            peer: conn.peer,
            local: conn.local,
        };
        served = true;
        match req_fsm::handle(&shard, &mut conn.stream, info, head, body).await {
            Done::Next(Next::KeepAlive) => continue,
            Done::Next(Next::Close) => break,
            Done::Pipe(p) => {
                let xid = shard.next_xid();
                run_pipe(&shard, conn, p, xid).await;
                shard.conn_closed();
                return;
            }
        }
    }
    shard.conn_closed();
}

/// Reads until a complete request head is buffered. `Ok(None)`: the client went away or idled
/// out between requests (close quietly), or the drain began while this keep-alive connection
/// (`kept`: it has served a request) waited for its next request with nothing buffered. A new
/// connection gets its first request served even during the drain.
async fn read_head(
    shard: &Shard,
    conn: &mut Conn,
    kept: bool,
) -> Result<Option<RequestHead>, ParseError> {
    let idle = secs(shard.params().timeout_idle);
    loop {
        if !conn.rbuf.is_empty() {
            if let Some(h) = request::parse_request(&mut conn.rbuf, &shard.params().req_limits)? {
                return Ok(Some(h));
            }
        }
        let buf = std::mem::take(&mut conn.rbuf);
        let read = if kept && buf.is_empty() {
            // Dropping the read when the drain wins is safe: the connection closes.
            match race(
                read_timeout(&mut conn.stream, buf, idle),
                shard.drain_started(),
            )
            .await
            {
                Some(r) => r,
                None => return Ok(None),
            }
        } else {
            read_timeout(&mut conn.stream, buf, idle).await
        };
        match read {
            Read::Data(_, b) => conn.rbuf = b,
            Read::Eof(_) | Read::Failed(_) => return Ok(None),
            Read::TimedOut => {
                shard.counters().inc(C::sess_closed_err);
                return Ok(None);
            }
        }
    }
}

/// `a`'s output, or `None` if `b` completes first (`a` is then dropped).
async fn race<A: Future, B: Future<Output = ()>>(a: A, b: B) -> Option<A::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if b.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

enum BodyError {
    Parse(ParseError),
    TooLarge,
    Gone,
}

/// Reads the request body (Content-Length or chunked), answering `Expect: 100-continue`.
async fn read_body(shard: &Shard, conn: &mut Conn, head: &RequestHead) -> Result<Bytes, BodyError> {
    let max = shard.params().http_req_body_max;
    let idle = secs(shard.params().timeout_idle);
    let need_continue = head.expect_continue;
    match head.body {
        BodyFraming::None | BodyFraming::Length(0) => Ok(Bytes::new()),
        BodyFraming::Length(n) => {
            if n > max {
                return Err(BodyError::TooLarge);
            }
            let n = n as usize;
            if need_continue && conn.rbuf.len() < n {
                send_continue(conn).await?;
            }
            while conn.rbuf.len() < n {
                conn.rbuf.reserve(n - conn.rbuf.len());
                let buf = std::mem::take(&mut conn.rbuf);
                match read_timeout(&mut conn.stream, buf, idle).await {
                    Read::Data(_, b) => conn.rbuf = b,
                    _ => return Err(BodyError::Gone),
                }
            }
            shard.counters().add(C::s_req_bodybytes, n as u64);
            Ok(conn.rbuf.split_to(n).freeze())
        }
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            if need_continue && conn.rbuf.is_empty() {
                send_continue(conn).await?;
            }
            let mut dec = ChunkedDecoder::new(16 * 1024);
            let mut out = BytesMut::new();
            loop {
                let done = dec
                    .decode(&mut conn.rbuf, &mut out)
                    .map_err(BodyError::Parse)?;
                if out.len() as u64 > max {
                    return Err(BodyError::TooLarge);
                }
                if done {
                    break;
                }
                let buf = std::mem::take(&mut conn.rbuf);
                match read_timeout(&mut conn.stream, buf, idle).await {
                    Read::Data(_, b) => conn.rbuf = b,
                    _ => return Err(BodyError::Gone),
                }
            }
            shard.counters().add(C::s_req_bodybytes, out.len() as u64);
            Ok(out.freeze())
        }
    }
}

async fn send_continue(conn: &mut Conn) -> Result<(), BodyError> {
    match write_all_timeout(
        &mut conn.stream,
        &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
        secs(5.0),
    )
    .await
    {
        Write::Done(_) => Ok(()),
        _ => Err(BodyError::Gone),
    }
}

/// Answers a malformed request with its status; the caller closes the connection.
async fn send_parse_error(shard: &Shard, conn: &mut Conn, e: &ParseError) {
    let xid = shard.next_xid();
    let _ = deliver::send_plain(shard, &mut conn.stream, e.status(), e.reason(), xid, false).await;
}

/// Opens the backend side of a `return (pipe)`, sends the request and what the client sent
/// after it, then tunnels until both sides are done.
async fn run_pipe(shard: &Shard, mut conn: Conn, p: PipeRequest, xid: u64) {
    let connected = crate::backend::conn::connect(
        &p.endpoint.dest,
        p.connect_timeout,
        crate::backend::conn::Purpose::Traffic,
    )
    .await;
    let mut backend = match connected {
        Ok(s) => s,
        Err(e) => {
            let why = match e {
                crate::backend::conn::ConnectError::Failed(e) => format!("failed: {e}"),
                crate::backend::conn::ConnectError::TimedOut => "timed out".to_string(),
            };
            crate::logs::emit(
                "FetchError",
                format!(
                    "FetchError {xid} pipe: connect to {} ({}) {why}",
                    p.name, p.endpoint.dest
                ),
            );
            shard.counters().inc(C::backend_fail);
            let _ = deliver::send_plain(
                shard,
                &mut conn.stream,
                503,
                "Backend fetch failed",
                xid,
                false,
            )
            .await;
            return;
        }
    };
    shard.counters().inc(C::backend_conn);
    let mut wire = Vec::with_capacity(p.wire.len() + conn.rbuf.len());
    wire.extend_from_slice(&p.wire);
    // Bytes the client sent after the request head (and body) belong to the tunnel.
    wire.extend_from_slice(&conn.rbuf);
    conn.rbuf.clear();
    if !matches!(
        write_all_timeout(&mut backend, wire, p.idle).await,
        Write::Done(_)
    ) {
        return;
    }
    pipe::splice(shard, conn.stream, p.job(backend)).await;
}
