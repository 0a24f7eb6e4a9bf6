#!/usr/bin/env bash
# Health load test: probes stay truthful under load. wrk saturates the server with cache hits
# while a probe with `.timeout = 200ms` runs against an idle, healthy backend; any "Went sick"
# (or any failed probe) is a false verdict caused by the server's own load. The same against
# varnishd 7.1. docs/benchmarks.md ("Health: probes stay truthful under load") has the results.
#
#   bash loadtest/probe_truth.sh
#   DURATION=15 SKIP_VARNISH=1 bash loadtest/probe_truth.sh                  # smoke run
#
# Setup (nothing pinned: both cores are busy, and the poller floats and shares them):
#   * `hot`: loadtest/responder.rs (1 KiB body, max-age 3600, --stats-file), the origin of the
#     cached object wrk hits (`/obj`);
#   * `idle`: loadtest/probe_origin.rs, answers `200` + `Connection: close` and closes, logging
#     every probe (accept and close times);
#   * VCL: `probe idlep { .url = "/"; .timeout = 200ms; .interval = 1s; .window = 5;
#     .threshold = 3; .initial = 3; }` on `idle` (`.initial = threshold`: healthy from the start,
#     so every "Went sick" is false); vcl_recv sends requests with `X-Idle` to `idle`, the rest
#     to `hot` (both referenced);
#   * ringcache `-p cores=2 -s 256m` (two shards, one per core, the poller thread floating);
#     varnishd `-s malloc,256m`, default parameters;
#   * the cache is warmed and a hit checked (`X-Varnish` with two numbers), then
#     `wrk -t2 -c64 -d${DURATION}s --latency` on `/obj` (two client threads: with one, wrk is
#     the limit and the server's cores are not saturated), and the run is checked again after.
#
# Counted during the wrk run, for `idle`: probes run and failed, "Went sick" / "Went healthy"
# from the Backend_health lines (ringcache: its stderr; varnishd: `varnishlog -g raw -i
# Backend_health`), the probes' response times (the timeout is 200 ms) and, cross-checks,
# `backend.list -p`'s Happy bits at the end (64 probes of history: a 60 s run fits) and the
# probes the idle origin saw, with their lateness seen from the origin (loadtest/probe_stats.py:
# next accept − previous close − interval). ringcache's `poller.stats` (reset at the start)
# gives the poller's own lateness. Also req/s, p50/p99 latency, errors, CPU of each process.
#
# Env knobs: DURATION (60, s), CONNS (64), WRK_THREADS (2), RUNS (1; >1 alternates), SKIP_VARNISH,
# SKIP_RINGCACHE, SKIP_BUILD, QUIET_WAIT (600 s to wait for an idle machine before each run),
# CARGO_TARGET_DIR, OUT_DIR (loadtest/out), KEEP=1 keeps the work directory, SOURCE (what the
# binaries were built from, for the report, with SKIP_BUILD=1).
set -euo pipefail

DURATION=${DURATION:-60}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
RUNS=${RUNS:-1}
SKIP_VARNISH=${SKIP_VARNISH:-0}
SKIP_RINGCACHE=${SKIP_RINGCACHE:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
QUIET_WAIT=${QUIET_WAIT:-600}
KEEP=${KEEP:-0}
SETTLE=5  # s between the warm-up and the run (the probe has run a few times)
INTERVAL=1 # s, as in the VCL
BODY=1024
URL_PATH=/obj

for v in DURATION CONNS WRK_THREADS RUNS QUIET_WAIT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || [[ $v == QUIET_WAIT && ${!v} =~ ^[0-9]+$ ]] ||
        { echo "$v must be a positive whole number" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$ROOT/loadtest/out}
RINGCACHE_BIN=$TARGET/release/ringcache
RESPONDER_BIN=$TARGET/release/examples/responder
PROBE_ORIGIN_BIN=$TARGET/release/probe_origin
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"
# shellcheck source=loadtest/probe_common.sh
source "$ROOT/loadtest/probe_common.sh"

for tool in wrk curl python3 rustc; do command -v "$tool" >/dev/null || die "$tool not found"; done
if [[ $SKIP_VARNISH != 1 ]]; then
    for tool in varnishd varnishadm varnishlog; do command -v "$tool" >/dev/null || die "$tool not found (or SKIP_VARNISH=1)"; done
fi

init_work ringcache-truth

secs() { python3 -c 'import sys; print("%.3f" % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e9))' "$1" "$2"; }
pct() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[3]) / float(sys.argv[2]) * 100))' "$1" "$2" "$CLK_TCK"; }

adm() {
    case $SERVER in
    ringcache) timeout 60 "$RINGCACHE_BIN" adm -T "127.0.0.1:$ADMIN_PORT" -t 30 "$@" ;;
    varnish) timeout 60 varnishadm -n "$VDIR" -t 30 "$@" ;;
    esac
}

gen_vcl() { # $1 hot port, $2 idle port
    cat <<EOF
vcl 4.1;

probe idlep {
    .url = "/";
    .timeout = 200ms;
    .interval = 1s;
    .window = 5;
    .threshold = 3;
    .initial = 3;
}

backend hot { .host = "127.0.0.1"; .port = "$1"; }
backend idle { .host = "127.0.0.1"; .port = "$2"; .host_header = "idle"; .probe = idlep; }

sub vcl_recv {
    if (req.http.x-idle) {
        set req.backend_hint = idle;
    } else {
        set req.backend_hint = hot;
    }
}
EOF
}

# Check one response: 200, BODY bytes, a hit. Prints X-Varnish or the problem.
check_hit() {
    local out code len xv
    out=$(curl -s -m 5 -o /dev/null -D "$RUN/hdr" -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$SRV_PORT$URL_PATH") || { echo "curl failed"; return 1; }
    read -r code len <<<"$out"
    xv=$(tr -d '\r' <"$RUN/hdr" | awk -F': *' 'tolower($1)=="x-varnish"{print $2}')
    [[ $code == 200 ]] || { echo "status $code"; return 1; }
    [[ $len == "$BODY" ]] || { echo "body $len bytes, want $BODY"; return 1; }
    [[ $xv =~ ^[0-9]+\ [0-9]+$ ]] || { echo "not a hit (X-Varnish: '${xv:-none}')"; return 1; }
    echo "$xv"
}

# One run of $SERVER, number $1; writes $RUN/result.kv.
measure() {
    local run=$1 i why=""
    RUN=$WORK/$SERVER-$run
    mkdir -p "$RUN"
    chmod 755 "$RUN"
    local kv=$RUN/result.kv
    : >"$kv"
    put() { printf '%s=%s\n' "$1" "$2" >>"$kv"; }
    put server "$SERVER"
    put run "$run"
    wait_quiet "$QUIET_WAIT"
    put quiet "$QUIET_NOTE"

    # Origins.
    local hport hpid hstats=$RUN/hot.count
    hport=$(free_port)
    "$RESPONDER_BIN" --listen "127.0.0.1:$hport" --body-size "$BODY" --max-age 3600 \
        --stats-file "$hstats" >"$RUN/hot.log" 2>&1 &
    hpid=$!
    PIDS+=("$hpid")
    wait_port "$hport" "$hpid" || die "hot origin did not start: $(cat "$RUN/hot.log")"
    ORIGIN_THREADS=1 start_probe_origin none "$RUN/idle" "$RUN/idle.count"
    local ipid=$ORIGIN_PID
    gen_vcl "$hport" "$ORIGIN_PORT" >"$RUN/truth.vcl"

    # Server.
    SRV_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    case $SERVER in
    ringcache)
        "$RINGCACHE_BIN" -a "127.0.0.1:$SRV_PORT" -f "$RUN/truth.vcl" -T "127.0.0.1:$ADMIN_PORT" \
            -p cores=2 -s 256m >"$RUN/server.log" 2>&1 &
        ;;
    varnish)
        VDIR=$RUN/varnish
        varnishd -F -n "$VDIR" -a "127.0.0.1:$SRV_PORT" -f "$RUN/truth.vcl" -T "127.0.0.1:$ADMIN_PORT" \
            -s malloc,256m >"$RUN/server.log" 2>&1 &
        ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    local up=0
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        if curl -s -m 2 -o /dev/null "http://127.0.0.1:$SRV_PORT$URL_PATH" 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    ((up)) || { tail -20 "$RUN/server.log" >&2; die "$SERVER did not come up"; }
    # varnishd's Backend_health lines, unbuffered, from now on (ringcache's are on its stderr).
    local vlpid="" hlog=$RUN/server.log
    if [[ $SERVER == varnish ]]; then
        hlog=$RUN/varnishlog.out
        varnishlog -n "$VDIR" -u -g raw -i Backend_health >"$hlog" 2>"$RUN/varnishlog.err" &
        vlpid=$!
        PIDS+=("$vlpid")
    fi
    for ((i = 0; i < 3; i++)); do curl -s -m 5 -o /dev/null "http://127.0.0.1:$SRV_PORT$URL_PATH" || true; done
    local xv
    xv=$(check_hit) || die "$SERVER warm-up check: $xv"
    sleep "$SETTLE"

    # The Backend_health lines of the run are those written between t0 and t1.
    [[ $SERVER == ringcache ]] && { adm poller.stats -r >/dev/null 2>&1 || true; }
    local lines0 lines1
    lines0=$(wc -l <"$hlog")
    local o0 o1 c0 c1 p0 p1 b0 b1 st0 st1 t0 t1 w0 w1
    o0=$(cat "$hstats" 2>/dev/null || echo 0)
    c0=$(tree_ticks "$SRV_PID")
    local og0 og1
    og0=$(($(tree_ticks "$hpid") + $(tree_ticks "$ipid")))
    p0=$(thread_ticks "$SRV_PID" ringcache-polle)
    read -r b0 st0 < <(sys_ticks)
    t0=$(now_ns)
    log "$SERVER run $run: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s"
    timeout $((DURATION + 30)) python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write("%.6f\n" % (u.ru_utime + u.ru_stime))
sys.exit(r.returncode)' wrk "-t$WRK_THREADS" "-c$CONNS" "-d${DURATION}s" --latency "http://127.0.0.1:$SRV_PORT$URL_PATH" \
        >"$RUN/wrk.out" 2>"$RUN/wrk.cpu" || why="wrk failed"
    t1=$(now_ns)
    c1=$(tree_ticks "$SRV_PID")
    og1=$(($(tree_ticks "$hpid") + $(tree_ticks "$ipid")))
    p1=$(thread_ticks "$SRV_PID" ringcache-polle)
    read -r b1 st1 < <(sys_ticks)
    lines1=$(wc -l <"$hlog")
    sed -n "$((lines0 + 1)),${lines1}p" "$hlog" | grep 'Backend_health' >"$RUN/health.log" || true
    # Health at the end: backend.list -p holds the last 64 probes' bits.
    adm backend.list -p >"$RUN/backend.list" 2>&1 || true
    if [[ $SERVER == ringcache ]]; then
        adm poller.stats >"$RUN/poller.stats" 2>&1 || true
        awk 'NF == 2 { print "poller_" $1 "=" $2 }' "$RUN/poller.stats" >>"$kv"
    else
        stop_tree "$vlpid"
        forget "$vlpid"
        put varnishlog_errors "$(tr '\n' ' ' <"$RUN/varnishlog.err" | head -c 300)"
    fi
    xv=$(check_hit) || why="${why:+$why; }after run: $xv"
    sleep 0.5
    o1=$(cat "$hstats" 2>/dev/null || echo 0)
    stop_tree "$SRV_PID"
    forget "$SRV_PID"
    stop_tree "$hpid"
    forget "$hpid"
    sleep 0.2
    stop_tree "$ipid"
    forget "$ipid"

    local el wrk_cpu
    el=$(secs "$t0" "$t1")
    wrk_cpu=$(tail -1 "$RUN/wrk.cpu" 2>/dev/null || echo 0)
    [[ $wrk_cpu =~ ^[0-9.]+$ ]] || wrk_cpu=0
    put window_s "$el"
    put proc_cpu_pct "$(pct $((c1 - c0)) "$el")"
    if [[ $SERVER == ringcache ]]; then put poller_cpu_pct "$(pct $((p1 - p0)) "$el")"; fi
    put wrk_cpu_pct "$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2]) * 100))' "$wrk_cpu" "$el")"
    put all_cpu_pct "$(pct $((b1 - b0)) "$el")"
    put origins_cpu_pct "$(pct $((og1 - og0)) "$el")"
    # Others: all busy CPU but the server, wrk and the two origins (varnishlog counts as other).
    put others_cpu_pct "$(python3 -c 'import sys; a, s, o, w, tck, el = map(float, sys.argv[1:]); print("%.2f" % max(0, (a - s - o) / tck / el * 100 - w))' \
        "$((b1 - b0))" "$((c1 - c0))" "$((og1 - og0))" "$(grep '^wrk_cpu_pct=' "$kv" | cut -d= -f2)" "$CLK_TCK" "$el")"
    put steal_pct "$(pct $((st1 - st0)) "$el")"
    put hot_origin_requests "$((o1 - o0))"
    # wrk figures and the health lines.
    python3 - "$RUN/wrk.out" "$RUN/health.log" "$RUN/backend.list" "$el" >>"$kv" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % p, t, re.M)
    return "%.3f" % (float(m.group(1)) * unit[m.group(2)]) if m else "nan"
m = re.search(r"Requests/sec:\s+([\d.]+)", t)
print("reqps=%s" % (m.group(1) if m else "0"))
m = re.search(r"(\d+) requests in", t)
print("requests=%s" % (m.group(1) if m else "0"))
print("p50_ms=%s" % lat(50))
print("p99_ms=%s" % lat(99))
errs = []
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if m and int(m.group(1)):
    errs.append("non-2xx=" + m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
if m and any(int(x) for x in m.groups()):
    errs.append("socket(c/r/w/t)=" + "/".join(m.groups()))
print("wrk_errors=%s" % (",".join(errs) or "none"))
# Backend_health lines of `idle`.
rx = re.compile(r'Backend_health - (\S+) (Went|Still) (sick|healthy) (\S{8}) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ?(.*)$')
n = bad = went_sick = went_healthy = 0
rts, msgs = [], {}
for line in open(sys.argv[2], errors="replace"):
    m = rx.search(line)
    if not m or not m.group(1).endswith("idle"):
        continue
    if m.group(10).strip() in ('""', ""):
        continue  # a probe's creation line, not a probe
    n += 1
    happy = m.group(4)[7] == "H"
    bad += not happy
    if m.group(2) == "Went":
        if m.group(3) == "sick":
            went_sick += 1
        else:
            went_healthy += 1
    rts.append(float(m.group(8)))
    if not happy:
        k = m.group(10).strip()[:60]
        msgs[k] = msgs.get(k, 0) + 1
rts.sort()
q = lambda p: "%.3f" % (rts[min(len(rts) - 1, int(p * len(rts)))] * 1e3) if rts else "nan"
print("probes_logged=%d" % n)
print("probes_bad=%d" % bad)
print("went_sick=%d" % went_sick)
print("went_healthy=%d" % went_healthy)
print("probe_rt_p50_ms=%s" % q(0.5))
print("probe_rt_p99_ms=%s" % q(0.99))
print("probe_rt_max_ms=%s" % ("%.3f" % (rts[-1] * 1e3) if rts else "nan"))
print("bad_messages=%s" % ("; ".join("%s x%d" % kv for kv in msgs.items()) or "-"))
# backend.list -p: the Happy line of idle (64 bits, newest last) and its health.
bl = open(sys.argv[3], errors="replace").read()
m = re.search(r"^\S*idle\s.*?(healthy|sick).*?$(.*?)^\s+([-H]{64}) Happy", bl, re.M | re.S)
if m:
    print("list_health=%s" % m.group(1))
    print("list_happy_last64=%s" % m.group(3).count("H"))
    print("list_unhappy_last64=%s" % m.group(3).lstrip("-").count("-"))
EOF
    python3 "$ROOT/loadtest/probe_stats.py" "$RUN/idle" "$t0" "$t1" "$INTERVAL" - idle |
        sed 's/^/origin_/' >>"$kv"
    local status=ok
    [[ -z $why ]] || status="CHECK FAILED: $why"
    grep -q '^wrk_errors=none$' "$kv" || status="errors: $(grep '^wrk_errors=' "$kv" | cut -d= -f2-)"
    put status "$status"
    log "$SERVER run $run: $(tr '\n' ' ' <"$kv")"
}

# ---------------------------------------------------------------------------------------------
# SOURCE (env) describes the binaries when they were not built from this tree (SKIP_BUILD=1).
COMMIT=${SOURCE:-"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null ||
    echo " + uncommitted changes in $(git -C "$ROOT" diff --name-only HEAD -- src | tr '\n' ' ')(diff sha1 $(git -C "$ROOT" diff HEAD -- src | sha1sum | cut -c1-8))")"}
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --bin ringcache --example responder) >&2 || die "cargo build failed"
fi
[[ -x $RESPONDER_BIN ]] || die "$RESPONDER_BIN missing"
[[ $SKIP_RINGCACHE == 1 || -x $RINGCACHE_BIN ]] || die "$RINGCACHE_BIN missing"
build_probe_origin "$PROBE_ORIGIN_BIN"

SERVERS=()
[[ $SKIP_RINGCACHE == 1 ]] || SERVERS+=(ringcache)
[[ $SKIP_VARNISH == 1 ]] || SERVERS+=(varnish)
((${#SERVERS[@]})) || die "nothing to measure"
for ((run = 1; run <= RUNS; run++)); do
    for SERVER in "${SERVERS[@]}"; do measure "$run"; done
done

mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/probe-truth-$(date +%Y%m%d-%H%M%S).md
{
    echo "# ringcache health load test: probes under load, $(date -Is)"
    echo
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
    echo "- source: $COMMIT; ringcache binary $(date -r "$RINGCACHE_BIN" +%FT%T 2>/dev/null || echo -)"
    [[ $SKIP_VARNISH == 1 ]] || echo "- $(varnishd -V 2>&1 | head -1)"
    echo "- wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --latency on cached 1 KiB hits; nothing pinned; probe .timeout = 200ms .interval = 1s .window = 5 .threshold = 3 .initial = 3"
    echo "- command: DURATION=$DURATION CONNS=$CONNS WRK_THREADS=$WRK_THREADS RUNS=$RUNS bash loadtest/probe_truth.sh"
    echo
    LOADTEST_DIR="$ROOT/loadtest" python3 - "$WORK" <<'EOF'
import glob, os, sys
sys.path.insert(0, os.environ["LOADTEST_DIR"])
from probe_stats import load_results
res = load_results(sys.argv[1])
g = lambda d, k: d.get(k, "-")
print("| server | run | req/s | p50 / p99 ms | wrk errors | hot origin reqs | probes logged / seen by origin | failed probes | Went sick | backend.list -p at end (happy of last 64) | probe time p50 / p99 / max ms | lateness (origin) p50 / p99 / max ms | poller lateness p50 / p99 / max ms | server CPU % | poller CPU % | wrk CPU % | others % | all CPUs % | status | machine |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in res:
    pl = "-"
    if d.get("poller_probes"):
        ms = lambda k: "%.3f" % (float(d[k]) / 1000)
        pl = "%s / %s / %s" % (ms("poller_lateness_p50_us"), ms("poller_lateness_p99_us"), ms("poller_lateness_max_us"))
    print("| %s | %s | %.0f | %s / %s | %s | %s | %s / %s | %s | %s | %s (%s) | %s / %s / %s | %s / %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        d["server"], d["run"], float(g(d, "reqps").replace("-", "0")), g(d, "p50_ms"), g(d, "p99_ms"),
        g(d, "wrk_errors"), g(d, "hot_origin_requests"), g(d, "probes_logged"), g(d, "origin_probes"),
        g(d, "probes_bad"), g(d, "went_sick"), g(d, "list_health"), g(d, "list_happy_last64"),
        g(d, "probe_rt_p50_ms"), g(d, "probe_rt_p99_ms"), g(d, "probe_rt_max_ms"),
        g(d, "origin_gap_p50_ms"), g(d, "origin_gap_p99_ms"), g(d, "origin_gap_max_ms"), pl,
        g(d, "proc_cpu_pct"), g(d, "poller_cpu_pct"), g(d, "wrk_cpu_pct"), g(d, "others_cpu_pct"), g(d, "all_cpu_pct"),
        g(d, "status"), g(d, "quiet")))
for d in res:
    if d.get("bad_messages", "-") != "-" or d.get("varnishlog_errors"):
        print("\n- %s run %s: failed probes: %s; varnishlog stderr: %s" % (d["server"], d["run"],
              g(d, "bad_messages"), d.get("varnishlog_errors") or "-"))
EOF
} >"$OUT"
echo
cat "$OUT"
echo
log "written to $OUT"
