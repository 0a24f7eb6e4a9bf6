//! How long a health change takes to reach a shard, and what a shard's health check costs.
//!
//! Why: shards decide on every backend choice from the health board (atomic bitsets the poller
//! writes); the claim is that a change is visible at once and a check is a few loads. This
//! measures both with real threads: a writer (the poller's role) flips a slot's probe verdict
//! and records when; a reader (a shard's role) spins on `Board::healthy` and records when it
//! saw the flip. Latency = seen − written, over many flips, on two cores when there are two
//! (pinned writer on core 0, reader on core 1). `cargo bench --bench health_board`; under
//! `cargo test` it runs a few flips only, as a smoke test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache::health::Board;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let flips: usize = if bench { 20_000 } else { 50 };
    let board = Arc::new(Board::new());
    let slot = 4_321;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let epoch = Instant::now();
    // Nanoseconds since `epoch` at which the writer flipped, and the value it wrote.
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let (board, written, done) = (board.clone(), written.clone(), done.clone());
        let core = cores.get(1).copied();
        std::thread::spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            let mut lat = Vec::with_capacity(flips);
            let mut last = board.healthy(slot);
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                let h = board.healthy(slot);
                if h != last {
                    let seen = epoch.elapsed().as_nanos() as u64;
                    let w = written.load(Ordering::Acquire);
                    lat.push(seen.saturating_sub(w));
                    last = h;
                }
            }
            lat
        })
    };
    if let Some(c) = cores.first() {
        core_affinity::set_for_current(*c);
    }
    let mut up = board.probe_healthy(slot);
    for _ in 0..flips {
        // Let the reader see the previous flip before the next one.
        let settle = Instant::now() + Duration::from_micros(50);
        while Instant::now() < settle {
            std::hint::spin_loop();
        }
        up = !up;
        written.store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        board.set_probe(slot, up);
    }
    std::thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Release);
    let mut lat = reader.join().expect("reader");
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));

    // Cost of one check on a warm cache line.
    let n = if bench { 50_000_000u64 } else { 1_000 };
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc += board.healthy(std::hint::black_box(slot + (i as usize & 7))) as u64;
    }
    let per_check = t.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(acc);

    println!(
        "health_board: {} flips seen of {flips}; propagation p50 {} ns, p99 {} ns, max {} ns \
         ({} cores); one healthy() check {per_check:.2} ns",
        lat.len(),
        pct(0.50).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
        lat.last().copied().unwrap_or(0),
        cores.len(),
    );
}
