//! Boot and the shard runtime: the bridge from the control plane's `Config` to running shards.
//!
//! Why boot binds every listener itself: with `SO_REUSEPORT` each shard has its own listening
//! socket for each address, and for `-a host:0` all of them must share the one port the kernel
//! picked for the first. Binding on the control plane, before any shard starts, also turns "port
//! in use" into a clean startup error instead of a shard dying later. Shards receive plain std
//! listeners and build everything else (runtime, pools, their part of the cache) on their own
//! thread, so io_uring rings are created by the thread that submits to them.

pub mod conn_slot;
pub mod count;
pub mod deliver;
pub mod env;
pub mod fetch_fsm;
pub mod io;
pub mod pipe;
pub mod req_fsm;
pub mod session;
pub mod shard;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc;

use crate::cli::{Config, VclSource};
use crate::health::poller::Cmd;
use crate::health::slots::ProbeChange;
use crate::params::{AutoOff, AutoValue, Params};
use crate::stats::{Stats, C};
use crate::vcl::LoadedVcl;

use shard::{Shard, ShardMsg};

/// What every shard shares, read-only (plus per-shard atomics).
pub struct Shared {
    /// The runtime parameters (`param.set` publishes a new snapshot; a shard reads them
    /// through `Shard::params`).
    pub params: Arc<crate::control::Published<Params>>,
    /// The ban list (tested at lookup; `ban()` in VCL adds to it).
    pub bans: Arc<crate::bans::Bans>,
    /// The active VCL (switched by the control plane; a shard checks its generation per
    /// request).
    pub active: Arc<crate::control::Active>,
    pub shards: usize,
    pub storage_bytes: u64,
    /// Every shard's counters (MAIN, VBE); the control plane reads them.
    pub stats: Arc<Stats>,
    pub inboxes: Vec<mpsc::UnboundedSender<ShardMsg>>,
    /// Backend health: the board shards read.
    pub health: Arc<crate::health::Health>,
    /// Heartbeats, open connections and the drain flag (`lifecycle`).
    pub pulse: crate::lifecycle::Pulse,
    /// How often each shard bumps its heartbeat.
    pub heartbeat_every: Duration,
}

/// Which io engine a runtime got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    IoUring,
    /// io_uring could not be set up; the epoll driver runs instead (reason attached).
    Epoll(String),
}

/// How a runtime's io_uring is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// The kernel's defaults.
    Plain,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1+; falls back to
    /// [`Ring::Plain`] on an older kernel): completions are posted only when the thread waits
    /// in the ring, never by interrupting it with task work. Measured on the poller: the
    /// lateness tail drops (docs/benchmarks.md, "Against the physical limit").
    DeferTaskrun,
}

/// Builds a monoio runtime on the current thread (io_uring set up as `ring` says, else epoll)
/// and runs `f` on it.
pub fn run_runtime<F, Fut>(entries: u32, ring: Ring, f: F) -> Result<(), String>
where
    F: FnOnce(Engine) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let forced_epoll = std::env::var("RINGCACHE_FORCE_EPOLL").is_ok_and(|v| v == "1");
    if !forced_epoll {
        let build = |ring: Ring| {
            let mut urb = io_uring::IoUring::builder();
            if ring == Ring::DeferTaskrun {
                urb.setup_single_issuer().setup_defer_taskrun();
            }
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(entries)
                .uring_builder(urb)
                .enable_timer()
                .build()
        };
        let built = match build(ring) {
            Err(_) if ring != Ring::Plain => build(Ring::Plain),
            r => r,
        };
        match built {
            Ok(mut rt) => {
                rt.block_on(f(Engine::IoUring));
                return Ok(());
            }
            Err(e) => return run_epoll(f, format!("io_uring setup failed: {e}")),
        }
    }
    run_epoll(f, "RINGCACHE_FORCE_EPOLL=1".to_string())
}

fn run_epoll<F, Fut>(f: F, reason: String) -> Result<(), String>
where
    F: FnOnce(Engine) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(f(Engine::Epoll(reason)));
    Ok(())
}

/// A startup failure, reported as one line.
#[derive(Debug)]
pub struct BootError(pub String);

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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
    s.set_reuse_port(true)?;
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    // The epoll driver needs a non-blocking socket; io_uring does not mind either way.
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// How long boot waits for a port held by a process that has just exited.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Fails if something already listens on `addr` (SO_REUSEPORT alone would silently share it).
///
/// A previous instance that has just exited can still hold its listener for a moment: the
/// kernel releases sockets referenced by an io_uring ring (the listener has an accept in
/// flight) when it tears the ring down, asynchronously, after the process is gone. So a quick
/// restart retries for `PORT_RELEASE_WAIT` before calling the port taken; a live holder keeps it
/// and the error stands.
fn check_free(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match probe_bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Binds (and drops) a plain socket on `addr`: succeeds only if nothing listens there.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() == 0 {
        return Ok(());
    }
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
    s.bind(&addr.into())
}

/// Binds `shards` listeners per address; returns them per shard and the bound addresses.
fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
) -> Result<(Vec<Vec<std::net::TcpListener>>, Vec<SocketAddr>), BootError> {
    let mut per_shard: Vec<Vec<std::net::TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for &addr in addrs {
        let explain = |e: std::io::Error| {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "address already in use".to_string()
            } else {
                e.to_string()
            };
            BootError(format!("cannot listen on {addr}: {why}"))
        };
        check_free(addr).map_err(explain)?;
        let first = bind_one(addr).map_err(explain)?;
        let actual = first.local_addr().map_err(explain)?;
        per_shard[0].push(first);
        for list in per_shard.iter_mut().skip(1) {
            list.push(bind_one(actual).map_err(explain)?);
        }
        bound.push(actual);
    }
    Ok((per_shard, bound))
}

/// Compiles the VCL (`-f`) or generates it (`-b`); warnings go to stderr, errors refuse to boot.
fn load_vcl(src: &VclSource) -> Result<LoadedVcl, BootError> {
    match src {
        VclSource::Backend(b) => LoadedVcl::for_backend(b)
            .map_err(|e| BootError(format!("the -b VCL did not compile:\n{e}"))),
        VclSource::File(path) => match LoadedVcl::from_file(path) {
            Ok((v, warnings)) => {
                if !warnings.is_empty() {
                    eprint!("{warnings}");
                }
                Ok(v)
            }
            Err(e) => {
                eprint!("{e}");
                Err(BootError(format!(
                    "VCL compilation failed: {}",
                    path.display()
                )))
            }
        },
    }
}

/// Boots the server and serves until a `SIGTERM`/`SIGINT` drain ends; returns the exit status.
pub fn run(config: Config) -> Result<i32, BootError> {
    let started = std::time::Instant::now();
    // Before any thread exists, so every thread inherits the mask (see `lifecycle::signals`).
    let signals = crate::lifecycle::signals::Signals::block()
        .map_err(|e| BootError(format!("cannot block signals: {e}")))?;
    let notifier = crate::lifecycle::notify::Notifier::from_env();
    let watchdog = match crate::lifecycle::notify::watchdog_timeout(
        std::env::var_os("WATCHDOG_USEC").as_deref(),
        std::env::var_os("WATCHDOG_PID").as_deref(),
        std::process::id(),
    ) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ringcache: systemd: {e}; no watchdog pings");
            None
        }
    };
    let available = core_affinity::get_core_ids().unwrap_or_default();
    let n_avail = available.len().max(1);
    let shards = match config.params.cores {
        AutoValue::Auto => n_avail,
        AutoValue::Value(n) => n as usize,
    };
    let pin_shards = config.params.cpu_affinity && shards <= n_avail && !available.is_empty();
    let poller_core = match config.params.poller_core {
        AutoOff::Off => None,
        AutoOff::Value(n) => Some(core_affinity::CoreId { id: n as usize }),
        AutoOff::Auto if shards < n_avail && config.params.cpu_affinity => {
            available.get(shards).copied()
        }
        AutoOff::Auto => None,
    };

    let vcl = load_vcl(&config.vcl)?;
    let (listeners, bound) = bind_all(&config.listen, shards)?;
    // The lifecycle thread's handles on every listening socket, to shut them down at drain.
    let mut listener_dups = Vec::new();
    for l in listeners.iter().flatten() {
        listener_dups.push(
            l.try_clone()
                .map_err(|e| BootError(format!("cannot duplicate a listener: {e}")))?,
        );
    }
    // Bound before any shard starts, so a bad -T or -S is a clean startup error.
    let admin = crate::admin::server::bind(&config.admin).map_err(BootError)?;
    let metrics = bind_metrics(&config.params.metrics_listen)?;

    let mut inboxes = Vec::with_capacity(shards);
    let mut receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = mpsc::unbounded();
        inboxes.push(tx);
        receivers.push(rx);
    }
    let health = Arc::new(crate::health::Health::new());
    health.log_pokes.store(
        config.params.log_probes,
        std::sync::atomic::Ordering::Relaxed,
    );
    // The log writers start before anything logs (the poller's first Backend_health lines).
    crate::logs::start(
        &crate::logs::Sink::from_param(&config.params.log_file),
        health.clone(),
    )
    .map_err(BootError)?;
    if !config.params.access_log.is_empty() {
        crate::logs::access::start(&config.params.access_log).map_err(BootError)?;
    }
    let stats = Arc::new(Stats::new(shards));
    let stop = Arc::new(AtomicBool::new(false));
    let reported = health.clone();
    let (poller, _poller_thread) = crate::health::poller::spawn(
        poller_core,
        Box::new(move |slot, w, t, line| crate::health::apply_report(&reported, slot, w, t, line)),
        stop.clone(),
    )
    .map_err(|e| BootError(format!("cannot start the poller thread: {e}")))?;
    let lateness = poller.lateness.clone();
    let bans = Arc::new(crate::bans::Bans::new(shards, stats.clone()));
    bans.spawn_keeper()
        .map_err(|e| BootError(format!("cannot start the ban list thread: {e}")))?;
    let mut control = crate::control::Control::boot(
        vcl,
        health.clone(),
        Box::new(move |ch| {
            poller.send(match ch {
                ProbeChange::Start { slot, probe } => Cmd::Start {
                    slot,
                    target: probe,
                },
                ProbeChange::Stop { slot } => Cmd::Stop { slot },
            });
        }),
        lateness,
        config.params.clone(),
        bans.clone(),
    )
    .map_err(BootError)?;
    control.set_stats(stats.clone());
    let control = Arc::new(control);
    let shared = Arc::new(Shared {
        params: control.params.clone(),
        bans,
        active: control.active.clone(),
        shards,
        storage_bytes: config.storage_bytes,
        stats: stats.clone(),
        inboxes,
        health: health.clone(),
        pulse: crate::lifecycle::Pulse::new(shards),
        heartbeat_every: crate::lifecycle::heartbeat_every(watchdog),
    });

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Engine, String>>();
    let mut threads = Vec::with_capacity(shards);
    for (id, (lst, rx)) in listeners.into_iter().zip(receivers).enumerate() {
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let core = if pin_shards {
            available.get(id).copied()
        } else {
            None
        };
        let t = std::thread::Builder::new()
            .name(format!("ringcache-shard-{id}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let ready2 = ready.clone();
                let r = run_runtime(4096, Ring::Plain, move |engine| {
                    shard_main(id, shared, lst, rx, engine, ready2)
                });
                if let Err(e) = r {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| BootError(format!("cannot start shard thread: {e}")))?;
        threads.push(t);
    }
    drop(ready_tx);

    let mut engine = Engine::IoUring;
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(e)) => engine = e,
            Ok(Err(e)) => return Err(BootError(format!("shard failed to start: {e}"))),
            Err(_) => return Err(BootError("shards did not start in time".into())),
        }
    }
    for a in &bound {
        eprintln!("ringcache: listening on {a}");
    }
    let admin_addrs = admin.addrs().to_vec();
    let readings: crate::stats::view::Readings = {
        let (stats, control) = (stats.clone(), control.clone());
        Arc::new(move || {
            let plane = control.plane(started.elapsed().as_secs());
            crate::stats::view::collect(&stats, &plane)
        })
    };
    admin
        .start(crate::admin::commands::Context {
            counters: readings.clone(),
            secret: config.admin.secret.clone(),
            control: Some(control.clone()),
        })
        .map_err(|e| BootError(format!("cannot start the admin thread: {e}")))?;
    for a in &admin_addrs {
        eprintln!("ringcache: admin on {a}");
    }
    if let Some(m) = metrics {
        let addrs = m.addrs();
        m.start(readings)
            .map_err(|e| BootError(format!("cannot start the metrics thread: {e}")))?;
        for a in &addrs {
            eprintln!("ringcache: metrics on {a}");
        }
    }
    let engine_name = match &engine {
        Engine::IoUring => "io_uring".to_string(),
        Engine::Epoll(reason) => {
            eprintln!("ringcache: io_uring is not available ({reason}); using the epoll driver");
            "epoll".to_string()
        }
    };
    eprintln!("ringcache: ready ({shards} shards, {engine_name})");
    // The shard threads are not joined: they serve until the process exits, which the
    // lifecycle thread decides (after a drain, they have no connection left).
    drop(threads);
    let exit = crate::lifecycle::Lifecycle {
        signals,
        notifier,
        watchdog,
        control,
        shared,
        listeners: listener_dups,
        vcl_file: match &config.vcl {
            VclSource::File(p) => Some(p.clone()),
            VclSource::Backend(_) => None,
        },
        drain_timeout: Duration::try_from_secs_f64(config.params.drain_timeout)
            .unwrap_or(Duration::MAX),
    }
    .run();
    // Lines and access records still queued reach their files before the process exits.
    crate::logs::flush(Duration::from_secs(2));
    crate::logs::access::flush(Duration::from_secs(2));
    Ok(exit.code())
}

/// Binds `-p metrics_listen` (empty: off) before any shard starts.
fn bind_metrics(
    spec: &str,
) -> Result<Option<crate::stats::prometheus::MetricsListener>, BootError> {
    if spec.is_empty() {
        return Ok(None);
    }
    let addrs = crate::cli::parse_addrs(spec)
        .map_err(|m| BootError(format!("-p metrics_listen={spec}: {m}")))?;
    crate::stats::prometheus::bind(&addrs)
        .map(Some)
        .map_err(BootError)
}

/// A shard's event loop: accept on its listeners, serve sessions, handle its inbox.
async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    inbox: mpsc::UnboundedReceiver<ShardMsg>,
    engine: Engine,
    ready: std::sync::mpsc::Sender<Result<Engine, String>>,
) {
    let shard = Rc::new(Shard::new(id, shared));
    let mut mono = Vec::new();
    for l in listeners {
        match monoio::net::TcpListener::from_std(l) {
            Ok(m) => mono.push(m),
            Err(e) => {
                let _ = ready.send(Err(format!("listener: {e}")));
                return;
            }
        }
    }
    monoio::spawn(shard::inbox_loop(shard.clone(), inbox));
    let beating = shard.clone();
    monoio::spawn(async move {
        // Moves only while this runtime runs its tasks: the systemd watchdog's proof of life.
        let every = beating.shared.heartbeat_every;
        loop {
            beating.shared.pulse.beat(beating.id);
            monoio::time::sleep(every).await;
        }
    });
    let ticker = shard.clone();
    monoio::spawn(async move {
        loop {
            // Upkeep often enough that idle timeouts are honoured within a quarter second.
            monoio::time::sleep(Duration::from_millis(250)).await;
            ticker.tick();
        }
    });
    let n = mono.len();
    let mut accept_tasks = Vec::with_capacity(n);
    for l in mono {
        accept_tasks.push(monoio::spawn(accept_loop(shard.clone(), l)));
    }
    let _ = ready.send(Ok(engine));
    for t in accept_tasks {
        t.await;
    }
    // Draining: the listeners are closed; sessions in flight finish on this runtime until the
    // lifecycle thread ends the process.
    std::future::pending::<()>().await;
}

/// Accepts connections until the drain. The accept future is never dropped while in flight
/// (monoio 0.2.4 leaks the fd of an accept that completes after cancellation): the drain
/// `shutdown()`s the listening socket, the accept in flight completes with an error, and the
/// loop ends; the listener is closed when it returns.
async fn accept_loop(shard: Rc<Shard>, listener: monoio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let c = shard.counters();
                if shard.conns.get() >= shard.conn_limit() {
                    c.inc(C::sess_dropped);
                    monoio::spawn(refuse(stream));
                    continue;
                }
                c.inc(C::sess_conn);
                shard.conn_opened();
                // Accepted as the drain began: served (its response says `Connection: close`).
                monoio::spawn(session::serve(shard.clone(), stream, peer));
            }
            Err(_) if shard.shared.pulse.draining() => return,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                crate::logs::emit(
                    "SessError",
                    format!("SessError accept failed on shard {}: {e}", shard.id),
                );
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Answers a connection over the limit with a 503 and closes it.
async fn refuse(mut stream: monoio::net::TcpStream) {
    const RESP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 5\r\nConnection: close\r\n\r\n";
    let _ = io::write_all_timeout(&mut stream, RESP, Duration::from_secs(1)).await;
}
