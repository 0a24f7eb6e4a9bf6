#!/usr/bin/env bash
# Load test: ringcache vs varnishd vs the bare responder (the "physical limit"), cache hits only.
#
#   bash loadtest/bench.sh
#   RUNS=5 DURATION=10s CONNS=64 SIZES="1024 65536" SKIP_VARNISH=1 bash loadtest/bench.sh
#
# Method (docs/benchmarks.md): every server runs pinned to CPU $SERVER_CPU (default 1), wrk pinned
# to CPU $CLIENT_CPU (default 0), `wrk -t1 -c$CONNS -d$DURATION --latency`, servers measured
# alternately (A B C A B C ...) and each started fresh for every run, medians of $RUNS runs.
# The origins (one responder per body size) are pinned to the client CPU: a warm cache never
# contacts them during a measured run, so they cost nothing there and never steal the server core.
#
# Checks, per run: every thread of the server may run on the server CPU only; the cache answers
# 200 with the right body length and a hit (`X-Varnish` with two numbers) before and after the
# run; the origin served no request during the run (its --stats-file counter did not move), i.e.
# every response was a hit; wrk reported no non-2xx/3xx responses and no socket errors; bytes read
# per request are plausible for the body size. A failed check aborts the row (that server and body
# size): it is reported as such, never averaged in.
#
# µs/req = server CPU (utime+stime from /proc/<pid>/stat over the server's whole process tree)
# divided by requests completed. "other %" = CPU (all non-idle time but steal, over all CPUs, from
# /proc/stat) used by anything but the server and wrk during the run, in % of one core: a noise
# flag; "steal %" = time the hypervisor took; "TCP RTOs" = system-wide retransmission timeouts
# during the run (each stalls a request >= 200 ms: explains a wild p99). The load average is logged
# but useless as a flag: varnishd's ~200 threads inflate it even when the machine is idle.
#
# The machine is shared: before each run the script waits (up to QUIET_WAIT s) until the CPUs
# are idle for 2 s, and a run where others used more than NOISE_MAX % of a core is repeated (up
# to RETRIES times); the noisy attempt stays in the per-run table, marked, out of the medians.
# Besides the summary (medians, min-max), the report gives ratios taken inside each round (A B C
# back to back), which resist the box's drift between states better than ratios of medians.
#
# "ringcache-vcl" is the same binary serving loadtest/routing.vcl instead of -b: its ratio to
# "ringcache" is the cost of a 30-line routing VCL on the hit path.
#
# Env knobs: RUNS (3), DURATION (10s), CONNS (64), SIZES ("1024 65536"), SKIP_RINGCACHE=1, SKIP_VCL=1,
# SKIP_VARNISH=1, SKIP_RESPONDER=1, SKIP_BUILD=1, SERVER_CPU (1), CLIENT_CPU (0),
# NOISE_MAX (15), RETRIES (2), QUIET_WAIT (120), RINGCACHE_ARGS (extra arguments for ringcache),
# CARGO_TARGET_DIR, OUT_DIR (loadtest/out).
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
SIZES=${SIZES:-"1024 65536"}
SKIP_RINGCACHE=${SKIP_RINGCACHE:-0}
SKIP_VARNISH=${SKIP_VARNISH:-0}
SKIP_RESPONDER=${SKIP_RESPONDER:-0}
SKIP_VCL=${SKIP_VCL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
RINGCACHE_ARGS=${RINGCACHE_ARGS:-}
NOISE_MAX=${NOISE_MAX:-15}   # % of a core used by others in a run before it is noisy (idle: ~5)
RETRIES=${RETRIES:-2}        # extra attempts for a noisy run
QUIET_WAIT=${QUIET_WAIT:-120} # s to wait, before each run, for the machine to be idle

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$ROOT/loadtest/out}
RINGCACHE_BIN=$TARGET/release/ringcache
RESPONDER_BIN=$TARGET/release/examples/responder
URL_PATH=/obj

DUR_S=${DURATION%s}
[[ $DUR_S =~ ^[0-9]+$ ]] || { echo "DURATION must be seconds, e.g. 10s" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ && $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "bad RUNS/CONNS" >&2; exit 2; }
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=loadtest/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Tools: install wrk/varnish/curl from the distribution when missing (root + apt), else stop.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
[[ $SKIP_VARNISH == 1 ]] || command -v varnishd >/dev/null || need+=(varnish)
if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >&2 ||
            die "could not install ${need[*]}"
    else
        die "missing ${need[*]}: apt-get install ${need[*]} (or SKIP_VARNISH=1)"
    fi
fi
for tool in wrk taskset python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

WORK=$(mktemp -d /tmp/ringcache-bench.XXXXXX)
chmod 755 "$WORK" # varnishd drops privileges (users varnish/vcache) and must reach its -n dir
PIDS=()           # everything we started, killed on exit

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_tree "$p"; done
    rm -rf "$WORK"
    log "total runtime $((SECONDS / 60))m$((SECONDS % 60))s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# TCP retransmission timeouts so far, system-wide (each one stalls a connection >= 200 ms).
tcp_rtos() {
    awk '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1 }
                      else for (i = 2; i <= NF; i++) if (h[i] == "TCPTimeouts") print $i }' \
        /proc/net/netstat
}

# Every thread of the process tree of $1 may run on the server CPU only (ringcache pins its own
# shards: make sure they stayed where taskset put them). Prints the offenders.
check_pinning() {
    local p t allowed bad=""
    for p in "$1" $(descendants "$1"); do
        for t in /proc/"$p"/task/*; do
            allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status" 2>/dev/null) || continue
            [[ -z $allowed || $allowed == "$SERVER_CPU" ]] || bad+="$(cat "$t/comm" 2>/dev/null):$allowed "
        done
    done
    [[ -z $bad ]] || { echo "threads not on CPU $SERVER_CPU: $bad"; return 1; }
}

# Wait until the CPUs are idle: all busy time (user+nice+system+irq+softirq+steal) below 5 % of a
# core in each of 2 consecutive seconds, for at most QUIET_WAIT s. The origins, idle between runs,
# are the only thing of ours still running at this point.
wait_quiet() {
    local a b busy waited=0 calm=0 tck=$CLK_TCK
    while :; do
        read -r -a a </proc/stat
        sleep 1
        read -r -a b </proc/stat
        busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
        if ((busy * 100 < 5 * tck)); then
            calm=$((calm + 1))
            if ((calm >= 2)); then
                ((waited == 0)) || log "machine quiet after ${waited}s"
                return 0
            fi
            continue
        fi
        calm=0
        ((waited == 0)) && log "machine busy ($((busy * 100 / tck))% of a core used by others), waiting"
        waited=$((waited + 1))
        if ((waited >= QUIET_WAIT)); then
            log "still busy after ${QUIET_WAIT}s ($((busy * 100 / tck))%), measuring anyway"
            return 0
        fi
    done
}

origin_count() { cat "$1" 2>/dev/null || echo 0; }

# Check one response of the server on port $1: 200, body of $2 bytes, and a hit unless $3 = nohit.
# Prints the X-Varnish header (or "-") on success.
check_response() {
    local port=$1 size=$2 mode=$3 out code len xv
    out=$(curl -s -m 5 -o /dev/null -D "$WORK/hdr" -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$port$URL_PATH") || { echo "curl failed"; return 1; }
    read -r code len <<<"$out"
    xv=$(tr -d '\r' <"$WORK/hdr" | awk -F': *' 'tolower($1)=="x-varnish"{print $2}')
    [[ $code == 200 ]] || { echo "status $code"; return 1; }
    [[ $len == "$size" ]] || { echo "body $len bytes, want $size"; return 1; }
    if [[ $mode != nohit && ! $xv =~ ^[0-9]+\ [0-9]+$ ]]; then
        echo "not a hit (X-Varnish: '${xv:-none}')"
        return 1
    fi
    echo "${xv:--}"
}

# Start server $1 for body size $2 (origin port $3) on a fresh port, pinned to the server CPU.
# Sets SRV_PID and SRV_PORT.
start_server() {
    local name=$1 size=$2 oport=$3
    SRV_PORT=$(free_port)
    case $name in
    ringcache)
        # shellcheck disable=SC2086 # RINGCACHE_ARGS is a word list on purpose
        taskset -c "$SERVER_CPU" "$RINGCACHE_BIN" -a "127.0.0.1:$SRV_PORT" -b "127.0.0.1:$oport" \
            -p cores=1 -s 256m $RINGCACHE_ARGS >"$WORK/$name.log" 2>&1 &
        ;;
    ringcache-vcl)
        # The same binary serving loadtest/routing.vcl (30 lines: host/URL regex routing between
        # two backends, header normalisation), both backends on this origin.
        sed "s/@PORT@/$oport/g" "$ROOT/loadtest/routing.vcl" >"$WORK/routing-$oport.vcl"
        # shellcheck disable=SC2086 # RINGCACHE_ARGS is a word list on purpose
        taskset -c "$SERVER_CPU" "$RINGCACHE_BIN" -a "127.0.0.1:$SRV_PORT" -f "$WORK/routing-$oport.vcl" \
            -p cores=1 -s 256m $RINGCACHE_ARGS >"$WORK/$name.log" 2>&1 &
        ;;
    varnish)
        # Private workdir per instance; default jail (root starts it, workers run as vcache).
        taskset -c "$SERVER_CPU" varnishd -F -n "$WORK/varnish-$SRV_PORT" -a "127.0.0.1:$SRV_PORT" \
            -b "127.0.0.1:$oport" -s malloc,256m >"$WORK/$name.log" 2>&1 &
        ;;
    responder)
        taskset -c "$SERVER_CPU" "$RESPONDER_BIN" --listen "127.0.0.1:$SRV_PORT" \
            --body-size "$size" >"$WORK/$name.log" 2>&1 &
        ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_port "$SRV_PORT" "$SRV_PID"; then
        log "$name did not come up; its log:"
        tail -20 "$WORK/$name.log" >&2
        return 1
    fi
}

# Parse wrk's output ($1) into: reqps p50_ms p99_ms requests bytes_min bytes_max errors
parse_wrk() {
    python3 - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % p, t, re.M)
    return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
size = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read", t)
# wrk prints two decimals: the true count is within half a unit of the last digit either side.
reqs, nbytes = (int(m.group(1)), float(m.group(2)) * size[m.group(3)]) if m else (0, 0)
slack = 0.005 * size[m.group(3)] if m else 0
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
errs = []
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if m and int(m.group(1)):
    errs.append("non-2xx=" + m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
if m and any(int(x) for x in m.groups()):
    errs.append("socket(c/r/w/t)=" + "/".join(m.groups()))
if not rps or not reqs:
    errs.append("unparsable-wrk-output")
print(rps.group(1) if rps else 0, "%.3f" % lat(50), "%.3f" % lat(99), reqs,
      int(max(nbytes - slack, 0)), int(nbytes + slack), ",".join(errs) or "none")
EOF
}

RESULTS=$WORK/runs.tsv # server size run reqps p50 p99 us_req wrk_us_req other% steal% rtos status
: >"$RESULTS"

# One measured run of server $1, body size $2, origin port $3, origin stats file $4, run no. $5,
# attempt no. $6 (1 + retries). Sets LAST_NOISY.
measure() {
    local name=$1 size=$2 oport=$3 ostats=$4 run=$5 attempt=$6 mode=hit xv why=""
    LAST_NOISY=0
    wait_quiet
    [[ $name == responder ]] && mode=nohit
    if ! start_server "$name" "$size" "$oport"; then
        ABORTED[$name.$size]="did not start"
        return
    fi
    # Warm-up: a few requests (the first is the miss that fills the cache), then a verified hit.
    local i
    for ((i = 0; i < 3; i++)); do
        curl -s -m 5 -o /dev/null "http://127.0.0.1:$SRV_PORT$URL_PATH" || true
    done
    if ! xv=$(check_response "$SRV_PORT" "$size" "$mode"); then
        ABORTED[$name.$size]="warm-up check: $xv"
        stop_tree "$SRV_PID"
        return
    fi
    if ! xv=$(check_pinning "$SRV_PID"); then
        ABORTED[$name.$size]=$xv
        stop_tree "$SRV_PID"
        return
    fi
    sleep 0.5 # let the origin publish its counter
    local o0 t0 s0 b0 st0 load1 w0 w1 rto0 rto1
    o0=$(origin_count "$ostats")
    rto0=$(tcp_rtos)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(tree_ticks "$SRV_PID")
    read -r b0 st0 < <(sys_ticks)
    w0=$(date +%s.%N)
    timeout $((DUR_S + 30)) taskset -c "$CLIENT_CPU" python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write("%.6f\n" % (u.ru_utime + u.ru_stime))
sys.exit(r.returncode)' wrk -t1 "-c$CONNS" "-d${DUR_S}s" --latency "http://127.0.0.1:$SRV_PORT$URL_PATH" \
        >"$WORK/wrk.out" 2>"$WORK/wrk.cpu" || why="wrk failed (rc $?)"
    w1=$(date +%s.%N)
    local t1 b1 st1 o1
    t1=$(tree_ticks "$SRV_PID")
    read -r b1 st1 < <(sys_ticks)
    rto1=$(tcp_rtos)
    local xv_after
    xv_after=$(check_response "$SRV_PORT" "$size" "$mode") || why="${why:+$why; }after run: $xv_after"
    sleep 0.5
    o1=$(origin_count "$ostats")
    stop_tree "$SRV_PID"

    local reqps p50 p99 reqs bmin bmax errs
    read -r reqps p50 p99 reqs bmin bmax errs < <(parse_wrk "$WORK/wrk.out")
    [[ $errs == none ]] || why="${why:+$why; }$errs"
    if [[ $mode == hit && $o1 != "$o0" ]]; then
        why="${why:+$why; }origin served $((o1 - o0)) requests during the run (misses)"
    fi
    # Each response carries the body plus 60-800 bytes of status line and headers.
    if ((reqs > 0)) && ((bmax < reqs * (size + 60) || bmin > reqs * (size + 800))); then
        why="${why:+$why; }$((bmin / reqs))-$((bmax / reqs)) bytes read per request for a $size-byte body"
    fi
    local wrk_cpu
    wrk_cpu=$(tail -1 "$WORK/wrk.cpu" 2>/dev/null || echo 0)
    [[ $wrk_cpu =~ ^[0-9.]+$ ]] || wrk_cpu=0
    local row
    row=$(python3 -c '
import sys
(reqs, srv, busy, steal, wrk, w0, w1, tck) = map(float, sys.argv[1:])
el = w1 - w0
other = busy - srv - wrk * tck
print("%.1f %.1f %.0f %.1f" % (srv * 1e6 / tck / max(reqs, 1), wrk * 1e6 / max(reqs, 1),
      max(other, 0) / tck / el * 100, steal / tck / el * 100))' \
        "$reqs" "$((t1 - t0))" "$((b1 - b0))" "$((st1 - st0))" "$wrk_cpu" "$w0" "$w1" "$CLK_TCK")
    local us_req wrk_us other steal
    read -r us_req wrk_us other steal <<<"$row"
    local status=ok
    LAST_NOISY=0
    if [[ -n $why ]]; then
        status="ABORTED: $why"
        ABORTED[$name.$size]=$why
    elif ((other > NOISE_MAX)); then
        LAST_NOISY=1
        if ((attempt <= RETRIES)); then
            status="noisy (others ${other}%), repeated"
        else
            status="ok, noisy"
        fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$run" "$reqps" \
        "$p50" "$p99" "$us_req" "$wrk_us" "$other" "$steal" "$((rto1 - rto0))" "$status" >>"$RESULTS"
    log "$(printf '%-9s %6s B run %d: %9.0f req/s  p50 %6.3f ms  p99 %7.3f ms  %5.1f µs/req  wrk %5.1f µs/req  other %3s%%  steal %s%%  RTOs %d  load %s  %s' \
        "$name" "$size" "$run" "$reqps" "$p50" "$p99" "$us_req" "$wrk_us" "$other" "$steal" \
        "$((rto1 - rto0))" "$load1" "$status")"
}

# ---------------------------------------------------------------------------------------------
SERVERS=()
[[ $SKIP_RINGCACHE == 1 ]] || SERVERS+=(ringcache)
[[ $SKIP_RINGCACHE == 1 || $SKIP_VCL == 1 ]] || SERVERS+=(ringcache-vcl)
[[ $SKIP_VARNISH == 1 ]] || SERVERS+=(varnish)
[[ $SKIP_RESPONDER == 1 ]] || SERVERS+=(responder)
((${#SERVERS[@]})) || die "nothing to measure (all SKIP_*=1)"

# The source the binaries come from (taken before building: src/ may change meanwhile).
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
[[ $SKIP_BUILD == 1 ]] && COMMIT+=" (SKIP_BUILD=1: binaries built earlier: ringcache $(date -r "$RINGCACHE_BIN" +%FT%T 2>/dev/null || echo -), responder $(date -r "$RESPONDER_BIN" +%FT%T 2>/dev/null || echo -))"
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    build=(--example responder)
    [[ $SKIP_RINGCACHE == 1 ]] || build=(--bin ringcache "${build[@]}")
    (cd "$ROOT" && cargo build --release "${build[@]}") >&2 || die "cargo build failed"
fi
[[ -x $RESPONDER_BIN ]] || die "$RESPONDER_BIN missing"
[[ $SKIP_RINGCACHE == 1 || -x $RINGCACHE_BIN ]] || die "$RINGCACHE_BIN missing"

declare -A ABORTED=()
log "servers: ${SERVERS[*]}; sizes: $SIZES; $RUNS runs of $DURATION, $CONNS connections;" \
    "server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"

for size in $SIZES; do
    oport=$(free_port)
    ostats=$WORK/origin-$size.count
    taskset -c "$CLIENT_CPU" "$RESPONDER_BIN" --listen "127.0.0.1:$oport" --body-size "$size" \
        --max-age 3600 --stats-file "$ostats" >"$WORK/origin-$size.log" 2>&1 &
    opid=$!
    PIDS+=("$opid")
    wait_port "$oport" "$opid" || die "origin ($size B) did not start: $(cat "$WORK/origin-$size.log")"
    log "origin for $size B on 127.0.0.1:$oport ($(grep -o 'driver.*' "$WORK/origin-$size.log" | head -1))"
    for ((run = 1; run <= RUNS; run++)); do
        for name in "${SERVERS[@]}"; do
            [[ -z ${ABORTED[$name.$size]:-} ]] || continue
            for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
                measure "$name" "$size" "$oport" "$ostats" "$run" "$attempt"
                ((LAST_NOISY)) || break
            done
        done
    done
    stop_tree "$opid"
done

# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/results-$(date +%Y%m%d-%H%M%S).md
ABORTS=$WORK/aborted.tsv
: >"$ABORTS"
for k in "${!ABORTED[@]}"; do printf '%s\t%s\t%s\n' "${k%%.*}" "${k#*.}" "${ABORTED[$k]}" >>"$ABORTS"; done
{
    echo "# ringcache load test, $(date -Is)"
    echo
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
    echo "- source at start: $COMMIT"
    echo "- wrk -t1 -c$CONNS -d$DURATION --latency on CPU $CLIENT_CPU; server on CPU $SERVER_CPU; $RUNS runs, alternating"
    [[ " ${SERVERS[*]} " == *" varnish "* ]] && echo "- $(varnishd -V 2>&1 | head -1), -s malloc,256m, default parameters"
    echo
    python3 - "$RESULTS" "$ABORTS" <<'EOF'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
aborted = {(a, b): why for a, b, why in (l.rstrip("\n").split("\t", 2) for l in open(sys.argv[2]) if l.strip())}
print("## Runs\n")
print("| server | body | run | req/s | p50 ms | p99 ms | µs/req | wrk µs/req | other CPU % | steal % | TCP RTOs | status |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        r[0], r[1], r[2], float(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]))
def kib(s):
    s = int(s)
    return "%d KiB" % (s // 1024) if s % 1024 == 0 else "%d B" % s
summary = {}
order = []
for r in rows:
    key = (r[0], r[1])
    if key not in order:
        order.append(key)
    if r[11].startswith("ok"):
        summary.setdefault(key, []).append(r)
print("\n## Summary (medians)\n")
print("| server | body | req/s (median) | req/s min–max | p50 ms | p99 ms | µs/req | runs |")
print("|---|---|---|---|---|---|---|---|")
med = {}
order += [k for k in aborted if k not in order]
for key in order:
    if key in aborted or key not in summary:
        print("| %s | %s | ABORTED: %s | | | | | |" % (key[0], kib(key[1]), aborted.get(key, "no valid run")))
        continue
    rs = summary[key]
    col = lambda i: [float(r[i]) for r in rs]
    m = {n: st.median(col(i)) for n, i in (("rps", 3), ("p50", 4), ("p99", 5), ("us", 6))}
    med[key] = m
    print("| %s | %s | %.1fk | %.1fk–%.1fk | %.2f | %.2f | %.1f | %d |" % (
        key[0], kib(key[1]), m["rps"] / 1e3, min(col(3)) / 1e3, max(col(3)) / 1e3,
        m["p50"], m["p99"], m["us"], len(rs)))
print("\n## Ratios (of medians)\n")
print("| body | ringcache/varnish req/s | ringcache/varnish p99 | ringcache/varnish µs/req | ringcache/responder req/s | varnish/responder req/s |")
print("|---|---|---|---|---|---|")
def ratio(a, b, size, f):
    ka, kb = (a, size), (b, size)
    if ka in med and kb in med and med[kb][f]:
        return "%.2f" % (med[ka][f] / med[kb][f])
    return "n/a"
for size in dict.fromkeys(r[1] for r in rows):
    print("| %s | %s | %s | %s | %s | %s |" % (kib(size),
        ratio("ringcache", "varnish", size, "rps"), ratio("ringcache", "varnish", size, "p99"),
        ratio("ringcache", "varnish", size, "us"), ratio("ringcache", "responder", size, "rps"),
        ratio("varnish", "responder", size, "rps")))
# The box drifts between states within minutes: a ratio taken inside one round (A B C measured
# back to back) is more robust than a ratio of medians taken over the whole phase.
ok = {(r[0], r[1], r[2]): r for r in rows if r[11].startswith("ok")}
def paired(a, b, size, i):
    v = [float(ok[(a, size, n)][i]) / float(ok[(b, size, n)][i])
         for n in sorted({r[2] for r in rows}, key=int)
         if (a, size, n) in ok and (b, size, n) in ok and float(ok[(b, size, n)][i])]
    if (a, size) in aborted or (b, size) in aborted or not v:
        return "n/a"
    return "%.2f (%.2f–%.2f, %d)" % (st.median(v), min(v), max(v), len(v))
print("\n## Routing VCL against -b, within each round (median, min–max, rounds)\n")
print("| body | ringcache-vcl/ringcache req/s | ringcache-vcl/ringcache µs/req | ringcache-vcl/varnish req/s |")
print("|---|---|---|---|")
for size in dict.fromkeys(r[1] for r in rows):
    print("| %s | %s | %s | %s |" % (kib(size),
        paired("ringcache-vcl", "ringcache", size, 3), paired("ringcache-vcl", "ringcache", size, 6),
        paired("ringcache-vcl", "varnish", size, 3)))
print("\n## Ratios within each round (median, min–max, rounds)\n")
print("| body | ringcache/varnish req/s | ringcache/varnish µs/req | ringcache/responder req/s | ringcache/responder µs/req | varnish/responder req/s |")
print("|---|---|---|---|---|---|")
for size in dict.fromkeys(r[1] for r in rows):
    print("| %s | %s | %s | %s | %s | %s |" % (kib(size),
        paired("ringcache", "varnish", size, 3), paired("ringcache", "varnish", size, 6),
        paired("ringcache", "responder", size, 3), paired("ringcache", "responder", size, 6),
        paired("varnish", "responder", size, 3)))
EOF
} >"$OUT"
echo
cat "$OUT"
echo
log "written to $OUT"
