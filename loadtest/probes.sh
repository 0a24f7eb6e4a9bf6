#!/usr/bin/env bash
# Health load test: N probed backends (default 10,000) at `.interval = 1s` (INTERVAL_MS), ringcache against
# varnishd 7.1 running the same generated VCL. What the health issue asks: the poller's CPU and
# probe lateness (p50/p99 of start time minus due time); goal under 25 % of one core, p99 under
# 5 ms. docs/benchmarks.md ("Health: 10,000 probed backends") has the method and results.
#
#   bash loadtest/probes.sh
#   N=2000 DURATION=20 WARMUP=5 SKIP_VARNISH=1 bash loadtest/probes.sh      # smoke run
#
# Setup. One origin, loadtest/probe_origin.rs (std-only Rust, built with rustc -O), answers
# every probe `200`, `Connection: close` and closes; it is pinned to CPU $ORIGIN_CPU (0) and
# logs each probe's Host header, accept time and close time. The VCL has N backends b0..bN-1,
# all on that origin, each with `.host_header = "bI"` (so the origin tells them apart) and the
# shared probe `{ .url = "/"; .interval = ${INTERVAL_MS}ms; .timeout = 1s; .window = 5;
# .threshold = 3; .initial = 3; }`; vcl_recv references every backend (`if (req.http.x-b == "bI") {...}`),
# since both servers refuse unused backends. The server runs pinned to CPU $SERVER_CPU (1):
# ringcache `-p cores=1` (its one shard, idle, and the poller share that core), varnishd with
# default parameters but cli_timeout (a 10k-backend VCL takes minutes to compile and load) and
# cli_limit (so that `backend.list` shows every backend).
#
# Per server: compile time (`ringcache -C`; `varnishd -C`, which runs VCC and the C compiler), boot
# time (start to ready: ringcache's "ready" line, varnishd's `status` = running) and the time
# until the origin has seen every backend once (the first round); then WARMUP s, then a
# DURATION s window in which it measures:
#   * CPU, in % of one core, from /proc (utime+stime): ringcache's "ringcache-poller" thread
#     and whole process; varnishd's whole process tree (manager + child), its per-thread-name
#     split, and the same servers' idle CPU with `-b` (no probe) for BASELINE s, subtracted;
#   * lateness, seen from the origin (loadtest/probe_stats.py): per backend, the next probe's
#     accept time minus the previous probe's close time minus the interval. Both servers
#     schedule the next poke one interval after the previous one completed, so this is the
#     poller's lateness plus two loopback hand-offs (the prober noticing the close, the next
#     connect reaching accept): an upper bound of what the poller's own `Lateness` histogram
#     records. That histogram itself is read over the admin port when it has `poller.stats`
#     (reset at the window's start with `poller.stats -r`, read at its end);
#   * probes per second, backends probed, health at the end (`backend.list`), "Went sick"
#     lines (ringcache's stderr; none expected: `.initial = threshold`), RSS and VmHWM.
#
# The physical limit: loadtest/prober.rs (`cargo build --release --example prober`), a minimal
# io_uring prober that makes the same exchanges for the same N backends on the same schedule
# (one thread, one ring, no VCL, no health window, no log) is measured like a server, pinned to
# the server's CPU, in every run (SKIP_PROBER=1 leaves it out; PROBER_MODE=linked|steps): the
# poller's CPU per probe over the prober's is what ringcache's own machinery costs.
#
# The kernel's floor: `probe_origin --client` pinned to the server's CPU makes FLOOR_COUNT
# probe exchanges one after the other against the same origin and reports its CPU per
# connection; a poller's CPU per probe is compared with it (on loopback most of both ends' TCP
# work is charged to the sender, so this floor is most of what a probe costs, whoever sends it).
#
# Noise: before each run the script waits (QUIET_WAIT) for idle CPUs; after the window, "others"
# is the CPU used by neither the server nor the origin; a window above NOISE_MAX % of a core
# is repeated (up to RETRIES times), stays in the table marked "noisy", and is left out of the
# ratios.
#
# INTERVAL_MS (1000) sets the probes' `.interval`: N=1000 INTERVAL_MS=100 is the probe rate of
# 10,000 backends at 1 s with a tenth of the backends: varnishd needs ~7.5 minutes (VCC and gcc)
# to load 10,000 backends, 30 s to load 1,000 (docs/benchmarks.md).
#
# Env knobs: N (10000), DURATION (60, s), WARMUP (10, s after ready), BASELINE (20, s; 0 skips),
# RUNS (1; >1 alternates ringcache, varnish, prober, ringcache, ...), SKIP_VARNISH, SKIP_RINGCACHE,
# SKIP_PROBER, PROBER_MODE (steps),
# SKIP_BUILD, SERVER_CPU (1, or none), ORIGIN_CPU (0, or none), ORIGIN_THREADS (4),
# QUIET_WAIT (600 s to wait for an idle machine before each run), NOISE_MAX (15), RETRIES (2),
# FLOOR_COUNT (20000; 0 skips), BOOT_WAIT (900 s), SKIP_VARNISH_C=1 (no separate `varnishd -C`:
# it takes as long as varnishd's boot, minutes at N=10000),
# CARGO_TARGET_DIR, OUT_DIR (loadtest/out), KEEP=1 keeps the work directory, SOURCE (what the
# binaries were built from, for the report, with SKIP_BUILD=1).
set -euo pipefail

N=${N:-10000}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-10}
BASELINE=${BASELINE:-20}
RUNS=${RUNS:-1}
SKIP_VARNISH=${SKIP_VARNISH:-0}
SKIP_RINGCACHE=${SKIP_RINGCACHE:-0}
SKIP_PROBER=${SKIP_PROBER:-0}
PROBER_MODE=${PROBER_MODE:-steps}
SKIP_BUILD=${SKIP_BUILD:-0}
SERVER_CPU=${SERVER_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-0}
ORIGIN_THREADS=${ORIGIN_THREADS:-4}
QUIET_WAIT=${QUIET_WAIT:-600}
NOISE_MAX=${NOISE_MAX:-15} # % of a core used by others during a window before it is repeated
RETRIES=${RETRIES:-2}      # extra attempts for a noisy window
FLOOR_COUNT=${FLOOR_COUNT:-20000}
BOOT_WAIT=${BOOT_WAIT:-900}
KEEP=${KEEP:-0}
SKIP_VARNISH_C=${SKIP_VARNISH_C:-0}
INTERVAL_MS=${INTERVAL_MS:-1000}

for v in N DURATION WARMUP BASELINE RUNS QUIET_WAIT BOOT_WAIT NOISE_MAX RETRIES FLOOR_COUNT INTERVAL_MS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a whole number" >&2; exit 2; }
done
((N >= 1 && N <= 60000)) || { echo "N must be 1..60000" >&2; exit 2; }
((INTERVAL_MS >= 10)) || { echo "INTERVAL_MS must be at least 10" >&2; exit 2; }
INTERVAL=$(python3 -c 'import sys; print(int(sys.argv[1]) / 1000)' "$INTERVAL_MS") # seconds

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$ROOT/loadtest/out}
RINGCACHE_BIN=$TARGET/release/ringcache
PROBER_BIN=$TARGET/release/examples/prober
PROBE_ORIGIN_BIN=$TARGET/release/probe_origin
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"
# shellcheck source=loadtest/probe_common.sh
source "$ROOT/loadtest/probe_common.sh"

for tool in taskset python3 rustc; do command -v "$tool" >/dev/null || die "$tool not found"; done
if [[ $SKIP_VARNISH != 1 ]]; then
    for tool in varnishd varnishadm; do command -v "$tool" >/dev/null || die "$tool not found (or SKIP_VARNISH=1)"; done
fi

init_work ringcache-probes

# `taskset -c CPU` (or nothing for "none") as a command prefix, in arrays.
SRV_PIN=()
[[ $SERVER_CPU == none ]] || SRV_PIN=(taskset -c "$SERVER_CPU")

# The VCL: $1 = origin port, $2 = output file.
gen_vcl() {
    python3 - "$N" "$1" "$INTERVAL_MS" >"$2" <<'EOF'
import sys
n, port, iv = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = ["vcl 4.1;", "",
       "probe p {",
       '    .url = "/";',
       "    .interval = %sms;" % iv,
       "    .timeout = 1s;",
       "    .window = 5;",
       "    .threshold = 3;",
       "    .initial = 3;",
       "}", ""]
for i in range(n):
    out.append('backend b%d { .host = "127.0.0.1"; .port = "%s"; .host_header = "b%d"; .probe = p; }'
               % (i, port, i))
out += ["", "sub vcl_recv {"]
for i in range(n):
    out.append('    if (req.http.x-b == "b%d") { set req.backend_hint = b%d; }' % (i, i))
out += ["}", ""]
print("\n".join(out))
EOF
}

# Seconds between two ns timestamps, 3 decimals.
secs() { python3 -c 'import sys; print("%.3f" % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e9))' "$1" "$2"; }
# % of one core for $1 ticks over $2 seconds.
pct() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[3]) / float(sys.argv[2]) * 100))' "$1" "$2" "$CLK_TCK"; }

# Admin command against the server of this run.
adm() {
    case $SERVER in
    ringcache) timeout 60 "$RINGCACHE_BIN" adm -T "127.0.0.1:$ADMIN_PORT" -t 30 "$@" ;;
    varnish) timeout 60 varnishadm -n "$VDIR" -t 30 "$@" ;;
    esac
}

# Start $SERVER with VCL file $1 (or "-b" and the origin port as $2). Sets SRV_PID, START_NS,
# READY_NS (empty when it did not come up within BOOT_WAIT).
start_server() {
    local what=$1 arg=$2 log=$3 src i
    SRV_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    if [[ $what == -b ]]; then src=(-b "127.0.0.1:$arg"); else src=(-f "$arg"); fi
    START_NS=$(now_ns)
    case $SERVER in
    ringcache)
        "${SRV_PIN[@]}" "$RINGCACHE_BIN" -a "127.0.0.1:$SRV_PORT" "${src[@]}" -T "127.0.0.1:$ADMIN_PORT" \
            -p cores=1 -s 256m >"$log" 2>&1 &
        ;;
    varnish)
        VDIR=$WORK/varnish-$SRV_PORT
        "${SRV_PIN[@]}" varnishd -F -n "$VDIR" -a "127.0.0.1:$SRV_PORT" "${src[@]}" -T "127.0.0.1:$ADMIN_PORT" \
            -p cli_timeout=900 -p cli_limit=99999999 -s malloc,256m >"$log" 2>&1 &
        ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    READY_NS=
    for ((i = 0; i < BOOT_WAIT * 20; i++)); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        case $SERVER in
        ringcache) grep -q -m1 '^ringcache: ready' "$log" && READY_NS=$(now_ns) ;;
        varnish)
            # The manager answers before the child has loaded the VCL; "running" means loaded.
            if ((i % 4 == 0)) && [[ -e $VDIR/_.vsm_mgt ]] &&
                adm status 2>/dev/null | grep -q 'running'; then
                READY_NS=$(now_ns)
            fi
            ;;
        esac
        [[ -n $READY_NS ]] && break
        sleep 0.05
    done
    if [[ -z $READY_NS ]]; then
        log "$SERVER did not become ready; its log:"
        tail -20 "$log" >&2
        return 1
    fi
}

stop_server() {
    stop_tree "$SRV_PID"
    forget "$SRV_PID"
}

# A key=value line in the current run's result file.
put() { printf '%s=%s\n' "$1" "$2" >>"$KV"; }

# Opens run $2, attempt $3 of $1 (a server, or "prober"): its directory and result file
# ($RUN, $KV), a quiet machine, a fresh origin. Resets LAST_NOISY.
run_begin() {
    local who=$1 run=$2 attempt=$3
    LAST_NOISY=0
    RUN=$WORK/$who-$run-$attempt
    mkdir -p "$RUN"
    chmod 755 "$RUN"
    KV=$RUN/result.kv
    : >"$KV"
    put server "$who"
    put run "$run"
    put attempt "$attempt"
    wait_quiet "$QUIET_WAIT"
    put quiet "$QUIET_NOTE"
    put load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
    start_probe_origin "$ORIGIN_CPU" "$RUN/origin" "$RUN/origin.count"
}

# The measured window: DURATION s of sleep between two readings of the origin's CPU, the
# machine's CPU and steal, and TCP's listen overflows and timeouts (W_* globals; W_EL in s).
window() {
    W_O0=$(tree_ticks "$ORIGIN_PID")
    read -r W_B0 W_ST0 < <(sys_ticks)
    W_LO0=$(tcpext ListenOverflows)
    W_RTO0=$(tcpext TCPTimeouts)
    W_T0=$(now_ns)
    sleep "$DURATION"
    W_T1=$(now_ns)
    W_O1=$(tree_ticks "$ORIGIN_PID")
    read -r W_B1 W_ST1 < <(sys_ticks)
    W_LO1=$(tcpext ListenOverflows)
    W_RTO1=$(tcpext TCPTimeouts)
    W_EL=$(secs "$W_T0" "$W_T1")
}

# The window's readings, with $1 the ticks the measured server (or prober) used in it.
put_window() {
    local own=$1
    put window_s "$W_EL"
    put origin_cpu_pct "$(pct $((W_O1 - W_O0)) "$W_EL")"
    put others_cpu_pct "$(pct $((W_B1 - W_B0 - own - (W_O1 - W_O0))) "$W_EL")"
    put steal_pct "$(pct $((W_ST1 - W_ST0)) "$W_EL")"
    put listen_overflows "$((W_LO1 - W_LO0))"
    put tcp_rtos "$((W_RTO1 - W_RTO0))"
}

# Closes run $2, attempt $3 of $1: stops the origin, adds the lateness it saw
# (probe_stats.py), marks the window noisy (LAST_NOISY) when others used over NOISE_MAX %.
run_end() {
    local who=$1 run=$2 attempt=$3 others
    sleep 0.3
    stop_tree "$ORIGIN_PID"
    forget "$ORIGIN_PID"
    python3 "$ROOT/loadtest/probe_stats.py" "$RUN/origin" "$W_T0" "$W_T1" "$INTERVAL" "$START_NS" b >>"$KV"
    others=$(grep '^others_cpu_pct=' "$KV" | cut -d= -f2)
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$others" "$NOISE_MAX"; then
        LAST_NOISY=1
        put noisy "others used ${others}% of a core"
    fi
    log "$who run $run attempt $attempt: $(tr '\n' ' ' <"$KV")"
}

# One measured run of $SERVER (ringcache or varnish), run number $1, attempt $2. Writes
# $RUN/result.kv; sets LAST_NOISY.
measure() {
    local run=$1 attempt=$2
    run_begin "$SERVER" "$run" "$attempt"
    local vcl=$RUN/probes.vcl t_a t_b
    gen_vcl "$ORIGIN_PORT" "$vcl"
    put vcl_lines "$(wc -l <"$vcl")"
    put vcl_bytes "$(wc -c <"$vcl")"

    # Compile time on its own (the server is not running yet). varnishd -C runs VCC and the C
    # compiler, as its boot does: SKIP_VARNISH_C=1 saves that time for large N.
    if [[ $SERVER == ringcache || $SKIP_VARNISH_C != 1 ]]; then
        t_a=$(now_ns)
        case $SERVER in
        ringcache) "${SRV_PIN[@]}" "$RINGCACHE_BIN" -C -f "$vcl" >"$RUN/compile.out" 2>&1 || die "ringcache -C failed: $(tail -5 "$RUN/compile.out")" ;;
        varnish) "${SRV_PIN[@]}" varnishd -C -f "$vcl" -n "$WORK/vcc-$run" >"$RUN/compile.out" 2>&1 || die "varnishd -C failed: $(tail -5 "$RUN/compile.out")" ;;
        esac
        t_b=$(now_ns)
        put compile_s "$(secs "$t_a" "$t_b")"
        rm -f "$RUN/compile.out"
    fi

    log "$SERVER run $run: starting with $N probed backends"
    start_server -f "$vcl" "$RUN/server.log" || { put status "did not start"; stop_tree "$ORIGIN_PID"; forget "$ORIGIN_PID"; return; }
    put boot_s "$(secs "$START_NS" "$READY_NS")"
    log "$SERVER run $run: ready after $(secs "$START_NS" "$READY_NS") s; warming up ${WARMUP}s"
    sleep "$WARMUP"

    local p0 p1 c0 c1 have_ps=0
    # The poller's own lateness histogram, when the admin port has `poller.stats` (reset here).
    if [[ $SERVER == ringcache ]] && adm help 2>/dev/null | grep -q '^poller.stats'; then
        have_ps=1
        adm poller.stats -r >/dev/null 2>&1 || have_ps=0
    fi
    p0=$(thread_ticks "$SRV_PID" ringcache-polle) # comm keeps 15 bytes of "ringcache-poller"
    local ps0 ps1
    ps0=$(thread_ticks "$SRV_PID" ringcache-polle stime)
    c0=$(tree_ticks "$SRV_PID")
    comm_ticks "$SRV_PID" >"$RUN/comm0.tsv"
    window
    p1=$(thread_ticks "$SRV_PID" ringcache-polle)
    ps1=$(thread_ticks "$SRV_PID" ringcache-polle stime)
    if ((have_ps)); then
        adm poller.stats >"$RUN/poller.stats" 2>&1 || true
        awk 'NF == 2 { print "poller_" $1 "=" $2 }' "$RUN/poller.stats" >>"$KV"
    fi
    c1=$(tree_ticks "$SRV_PID")
    comm_ticks "$SRV_PID" >"$RUN/comm1.tsv"
    local el=$W_EL rss hwm
    read -r rss hwm < <(tree_rss "$SRV_PID")
    put_window $((c1 - c0))
    put proc_cpu_pct "$(pct $((c1 - c0)) "$el")"
    if [[ $SERVER == ringcache ]]; then
        put poller_cpu_pct "$(pct $((p1 - p0)) "$el")"
        put poller_sys_pct "$(pct $((ps1 - ps0)) "$el")"
        put poller_ticks "$((p1 - p0))"
    fi
    put proc_ticks "$((c1 - c0))"
    put rss_mib "$((rss / 1024))"
    put hwm_mib "$((hwm / 1024))"
    put threads "$(ls /proc/"$SRV_PID"/task 2>/dev/null | wc -l)+$(for p in $(descendants "$SRV_PID"); do ls /proc/"$p"/task; done 2>/dev/null | wc -l)"
    # CPU per thread name during the window (threads alive at both ends).
    put threads_cpu "$(python3 - "$RUN/comm0.tsv" "$RUN/comm1.tsv" "$el" "$CLK_TCK" <<'EOF'
import sys
def rd(p):
    return {l.split("\t")[0]: (int(l.split("\t")[1]), int(l.split("\t")[2])) for l in open(p) if l.strip()}
a, b = rd(sys.argv[1]), rd(sys.argv[2])
el, tck = float(sys.argv[3]), float(sys.argv[4])
rows = sorted(((b[k][0] - a.get(k, (0, 0))[0], k, b[k][1]) for k in b), reverse=True)
print("; ".join("%s x%d %.2f%%" % (k, n, t / tck / el * 100) for t, k, n in rows if t > 0) or "-")
EOF
)"

    # Health at the end, and what the admin port knows about the poller.
    adm backend.list >"$RUN/backend.list" 2>&1 || true
    put backends_listed "$(grep -c '^boot\.b[0-9]' "$RUN/backend.list" || true)"
    put backends_healthy "$(grep '^boot\.b[0-9]' "$RUN/backend.list" | grep -c -w 'healthy' || true)"
    put backends_sick "$(grep '^boot\.b[0-9]' "$RUN/backend.list" | grep -c -w 'sick' || true)"
    if [[ $SERVER == ringcache ]]; then
        put went_sick "$(grep -c 'Went sick' "$RUN/server.log" || true)"
        put health_lines "$(grep -c '^Backend_health' "$RUN/server.log" || true)"
    fi
    stop_server
    run_end "$SERVER" "$run" "$attempt"
    [[ $KEEP == 1 ]] || rm -f "$RUN"/origin/probes-*.log "$RUN/server.log" "$vcl"
}

# One measured run of the minimal io_uring prober (loadtest/prober.rs), run $1, attempt $2: the
# same backends, schedule, origin and CPU as a server; its own report gives its lateness.
measure_prober() {
    local run=$1 attempt=$2
    run_begin prober "$run" "$attempt"
    log "prober run $run: $N backends, mode $PROBER_MODE"
    START_NS=$(now_ns)
    "${SRV_PIN[@]}" "$PROBER_BIN" --target "127.0.0.1:$ORIGIN_PORT" --backends "$N" \
        --interval-ms "$INTERVAL_MS" --warmup "$WARMUP" --duration "$((DURATION + 3))" --mode "$PROBER_MODE" \
        >"$RUN/prober.out" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    sleep "$WARMUP"
    local p0 p1 ps0 ps1 el
    p0=$(thread_ticks "$SRV_PID" prober)
    ps0=$(thread_ticks "$SRV_PID" prober stime)
    window
    p1=$(thread_ticks "$SRV_PID" prober)
    ps1=$(thread_ticks "$SRV_PID" prober stime)
    el=$W_EL
    wait "$SRV_PID" || put status "prober failed: $(tail -3 "$RUN/prober.out" | tr '\n' ' ')"
    forget "$SRV_PID"
    put_window $((p1 - p0))
    put proc_cpu_pct "$(pct $((p1 - p0)) "$el")"
    put proc_ticks "$((p1 - p0))"
    put poller_cpu_pct "$(pct $((p1 - p0)) "$el")"
    put poller_sys_pct "$(pct $((ps1 - ps0)) "$el")"
    put poller_ticks "$((p1 - p0))"
    # Its own lateness, in the poller's keys (its window is its own, within a few ms of this one).
    awk -F= '/^prober_late_(p50|p99|max)_us=/ { sub("prober_late_", "", $1); print "poller_lateness_" $1 "=" $2 }
             /^prober_exchanges=/ { print "poller_probes=" $2 }
             /^prober_/ { print }' "$RUN/prober.out" >>"$KV"
    run_end prober "$run" "$attempt"
    [[ $KEEP == 1 ]] || rm -f "$RUN"/origin/probes-*.log
}

# Idle CPU of $SERVER with -b (no probe), BASELINE s after 3 s of settling.
baseline() {
    local dir=$WORK/$SERVER-baseline c0 c1 t0 t1 el
    mkdir -p "$dir"
    chmod 755 "$dir"
    wait_quiet "$QUIET_WAIT"
    start_probe_origin "$ORIGIN_CPU" "$dir/origin" "$dir/origin.count"
    start_server -b "$ORIGIN_PORT" "$dir/server.log" || die "$SERVER -b did not start"
    sleep 3
    c0=$(tree_ticks "$SRV_PID")
    t0=$(now_ns)
    sleep "$BASELINE"
    t1=$(now_ns)
    c1=$(tree_ticks "$SRV_PID")
    el=$(secs "$t0" "$t1")
    {
        echo "server=$SERVER"
        echo "run=baseline"
        echo "window_s=$el"
        echo "proc_cpu_pct=$(pct $((c1 - c0)) "$el")"
        echo "boot_s=$(secs "$START_NS" "$READY_NS")"
    } >"$dir/result.kv"
    read -r rss hwm < <(tree_rss "$SRV_PID")
    echo "rss_mib=$((rss / 1024))" >>"$dir/result.kv"
    stop_server
    stop_tree "$ORIGIN_PID"
    forget "$ORIGIN_PID"
    log "$SERVER baseline: $(tr '\n' ' ' <"$dir/result.kv")"
}

# ---------------------------------------------------------------------------------------------
# SOURCE (env) describes the binaries when they were not built from this tree (SKIP_BUILD=1).
COMMIT=${SOURCE:-"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null ||
    echo " + uncommitted changes in $(git -C "$ROOT" diff --name-only HEAD -- src | tr '\n' ' ')(diff sha1 $(git -C "$ROOT" diff HEAD -- src | sha1sum | cut -c1-8))")"}
if [[ $SKIP_BUILD != 1 && $SKIP_RINGCACHE != 1 ]]; then
    log "building ringcache (release)"
    (cd "$ROOT" && cargo build --release --bin ringcache) >&2 || die "cargo build failed"
fi
[[ $SKIP_RINGCACHE == 1 || -x $RINGCACHE_BIN ]] || die "$RINGCACHE_BIN missing"
if [[ $SKIP_BUILD != 1 && $SKIP_PROBER != 1 ]]; then
    log "building the minimal io_uring prober (release)"
    (cd "$ROOT" && cargo build --release --example prober) >&2 || die "cargo build --example prober failed"
fi
[[ $SKIP_PROBER == 1 || -x $PROBER_BIN ]] || die "$PROBER_BIN missing"
build_probe_origin "$PROBE_ORIGIN_BIN"

SERVERS=()
[[ $SKIP_RINGCACHE == 1 ]] || SERVERS+=(ringcache)
[[ $SKIP_VARNISH == 1 ]] || SERVERS+=(varnish)
[[ $SKIP_PROBER == 1 ]] || SERVERS+=(prober)
((${#SERVERS[@]})) || die "nothing to measure"
log "N=$N backends, interval ${INTERVAL_MS}ms; warm-up ${WARMUP}s, window ${DURATION}s; servers: ${SERVERS[*]}; server CPU $SERVER_CPU, origin CPU $ORIGIN_CPU"

for ((run = 1; run <= RUNS; run++)); do
    for SERVER in "${SERVERS[@]}"; do
        for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
            if [[ $SERVER == prober ]]; then measure_prober "$run" "$attempt"; else measure "$run" "$attempt"; fi
            ((LAST_NOISY)) || break
        done
    done
done
if ((BASELINE > 0)); then
    for SERVER in "${SERVERS[@]}"; do [[ $SERVER == prober ]] || baseline; done
fi
if ((FLOOR_COUNT > 0)); then
    # The kernel's floor for one probe exchange: a blocking client on the server's CPU.
    mkdir -p "$WORK/floor"
    wait_quiet "$QUIET_WAIT"
    start_probe_origin "$ORIGIN_CPU" "$WORK/floor/origin" "$WORK/floor/origin.count"
    {
        echo "server=floor"
        echo "run=floor"
        echo "quiet=$QUIET_NOTE"
        "${SRV_PIN[@]}" "$PROBE_ORIGIN_BIN" --client "127.0.0.1:$ORIGIN_PORT" --count "$FLOOR_COUNT"
    } >"$WORK/floor/result.kv"
    stop_tree "$ORIGIN_PID"
    forget "$ORIGIN_PID"
    log "floor: $(tr '\n' ' ' <"$WORK/floor/result.kv")"
fi

mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/probes-$(date +%Y%m%d-%H%M%S).md
{
    echo "# ringcache health load test: $N probed backends at .interval = ${INTERVAL_MS}ms, $(date -Is)"
    echo
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
    echo "- source: $COMMIT; ringcache binary $(date -r "$RINGCACHE_BIN" +%FT%T 2>/dev/null || echo -)"
    [[ $SKIP_VARNISH == 1 ]] || echo "- $(varnishd -V 2>&1 | head -1)"
    echo "- server on CPU $SERVER_CPU, probe origin ($ORIGIN_THREADS threads) on CPU $ORIGIN_CPU; warm-up ${WARMUP}s after ready, window ${DURATION}s"
    echo "- command: N=$N INTERVAL_MS=$INTERVAL_MS DURATION=$DURATION WARMUP=$WARMUP BASELINE=$BASELINE RUNS=$RUNS bash loadtest/probes.sh"
    echo
    LOADTEST_DIR="$ROOT/loadtest" python3 - "$WORK" <<'EOF'
import glob, os, sys, statistics as st
sys.path.insert(0, os.environ["LOADTEST_DIR"])
from probe_stats import load_results
res = load_results(sys.argv[1])
runs = [d for d in res if d.get("run") not in ("baseline", "floor")]
base = {d["server"]: d for d in res if d.get("run") == "baseline"}
floor = next((d for d in res if d.get("run") == "floor"), {})
tck = float(os.sysconf("SC_CLK_TCK"))
g = lambda d, k: d.get(k, "-")
def f(d, k):
    try:
        return float(d.get(k, "nan"))
    except ValueError:
        return float("nan")
print("## Runs\n")
print("| server | run | compile s | boot s | first round s | probes/s | backends probed | healthy at end | Went sick | poller CPU % (sys) | process CPU % | idle baseline % | net % | µs/probe poller / net | origin CPU % | others % | lateness (origin) p50 / p90 / p99 / p99.9 / max ms | > 5 ms | listen overflows / TCP RTOs | RSS / HWM MiB | machine |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in runs:
    if d.get("status"):
        print("| %s | %s | %s | %s | | | | | | | | | | | | | | | | | |" % (d["server"], d["run"], g(d, "compile_s"), d["status"]))
        continue
    b = base.get(d["server"], {})
    net = f(d, "proc_cpu_pct") - f(b, "proc_cpu_pct") if b else float("nan")
    probes = f(d, "probes")
    if not d.get("noisy"):
        d["net"] = net
    d["net_us"] = net / 100 * f(d, "window_s") * 1e6 / probes if probes else float("nan")
    d["poller_us"] = f(d, "poller_ticks") / tck * 1e6 / probes if probes and d.get("poller_ticks") else float("nan")
    pc = "%s (%s)" % (g(d, "poller_cpu_pct"), g(d, "poller_sys_pct")) if d.get("poller_cpu_pct") else "-"
    us = ("%.1f" % d["poller_us"] if d["poller_us"] == d["poller_us"] else "-") + " / %.1f" % d["net_us"]
    where = g(d, "quiet") + ("; NOISY: %s, repeated" % d["noisy"] if d.get("noisy") else "")
    print("| %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s / %s / %s / %s / %s | %s | %s / %s | %s / %s | %s |" % (
        d["server"], d["run"], g(d, "compile_s"), g(d, "boot_s"), g(d, "first_all_s"), g(d, "probes_per_s"),
        g(d, "hosts_probed_in_window"), g(d, "hosts_total"), g(d, "backends_healthy"), g(d, "backends_listed"),
        g(d, "went_sick"), pc, g(d, "proc_cpu_pct"), g(b, "proc_cpu_pct"), net, us,
        g(d, "origin_cpu_pct"), g(d, "others_cpu_pct"),
        g(d, "gap_p50_ms"), g(d, "gap_p90_ms"), g(d, "gap_p99_ms"), g(d, "gap_p999_ms"), g(d, "gap_max_ms"),
        g(d, "gap_over_5ms"), g(d, "listen_overflows"), g(d, "tcp_rtos"), g(d, "rss_mib"), g(d, "hwm_mib"), where))
print("\n## CPU by thread name during the window\n")
for d in runs:
    print("- %s run %s (%s threads): %s" % (d["server"], d["run"], g(d, "threads"), g(d, "threads_cpu")))
ap = [d for d in runs if d.get("poller_probes")]
if ap:
    print("\n## The poller's own lateness (`poller.stats`, reset at the window's start)\n")
    print("| server | run | probes started | lateness p50 / p99 / max ms |")
    print("|---|---|---|---|")
    for d in ap:
        ms = lambda k: "%.3f" % (f(d, k) / 1000)
        print("| %s | %s | %s | %s / %s / %s |" % (d["server"], d["run"], d["poller_probes"],
            ms("poller_lateness_p50_us"), ms("poller_lateness_p99_us"), ms("poller_lateness_max_us")))
if floor:
    print("\n## The kernel's floor\n")
    print("- a blocking client on the server's CPU, one probe exchange after the other against the same origin: "
          "%s µs CPU per connection (%s µs wall), %s connections, %s failures (%s)" % (g(floor, "floor_cpu_us_per_conn"),
          g(floor, "floor_wall_us_per_conn"), g(floor, "floor_connections"), g(floor, "floor_failures"), g(floor, "quiet")))
print("\n## Baselines (`-b`, no probe)\n")
for s, b in base.items():
    print("- %s: %s %% of a core over %s s, RSS %s MiB" % (s, g(b, "proc_cpu_pct"), g(b, "window_s"), g(b, "rss_mib")))
rc = [d for d in runs if d["server"] == "ringcache" and "net" in d]
vn = [d for d in runs if d["server"] == "varnish" and "net" in d]
pr = [d for d in runs if d["server"] == "prober" and not d.get("noisy") and not d.get("status")]
rp = [d for d in runs if d["server"] == "ringcache" and not d.get("noisy") and not d.get("status")]
if rp and pr:
    print("\n## ringcache's poller / the minimal io_uring prober (the physical limit), per run\n")
    print("| run | poller CPU % | prober CPU % | µs per probe: poller / prober | **ratio** | lateness p50 ms: poller / prober | p99 ms: poller / prober | origin-side p99 ms: ringcache / prober |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for d in rp:
        q = next((x for x in pr if x["run"] == d["run"]), None)
        if not q:
            continue
        r = d["poller_us"] / q["poller_us"] if q["poller_us"] else float("nan")
        ratios.append(r)
        ms = lambda x, k: "%.3f" % (f(x, k) / 1000)
        print("| %s | %s | %s | %.1f / %.1f | **%.2f** | %s / %s | %s / %s | %s / %s |" % (d["run"],
            g(d, "poller_cpu_pct"), g(q, "poller_cpu_pct"), d["poller_us"], q["poller_us"], r,
            ms(d, "poller_lateness_p50_us"), ms(q, "poller_lateness_p50_us"),
            ms(d, "poller_lateness_p99_us"), ms(q, "poller_lateness_p99_us"),
            g(d, "gap_p99_ms"), g(q, "gap_p99_ms")))
    if ratios:
        print("\nMedian ratio of CPU per probe, poller / prober: **%.2f** over %d runs." % (st.median(ratios), len(ratios)))
if rc and vn:
    med = lambda xs, k: st.median(f(d, k) for d in xs)
    print("\n## Ratios ringcache / varnishd (medians of runs)\n")
    print("| net process CPU | CPU per probe | lateness p50 | lateness p99 | RSS | boot |")
    print("|---|---|---|---|---|---|")
    r = lambda k: "%.3f" % (med(rc, k) / med(vn, k)) if med(vn, k) else "n/a"
    print("| %s (%.2f %% vs %.2f %%) | %s (%.1f vs %.1f µs) | %s | %s | %s | %s |" % (r("net"), med(rc, "net"), med(vn, "net"),
        r("net_us"), med(rc, "net_us"), med(vn, "net_us"),
        r("gap_p50_ms"), r("gap_p99_ms"), r("rss_mib"), r("boot_s")))
EOF
} >"$OUT"
echo
cat "$OUT"
echo
log "written to $OUT"
