#!/usr/bin/env bash
# Memory-boundedness test: a flood of unique URLs, FACTOR times the storage size, through ringcache.
#
#   bash loadtest/flood.sh
#   STORAGE=64m BODY=1024 FACTOR=10 CORES=2 bash loadtest/flood.sh
#   STORAGE=256m BODY=65536 SKIP_BUILD=1 CARGO_TARGET_DIR=/work/target-flood bash loadtest/flood.sh
#
# Starts an origin (the `responder` example, or a small Python origin if it cannot be built) that
# answers any URL with BODY bytes and `Cache-Control: max-age=3600`, and ringcache with `-s STORAGE`
# in front of it. wrk + loadtest/flood.lua then request /u<thread>-<n>, every URL new, so every
# request is a miss whose object is stored and evicts older ones (SIEVE, by bytes), until
# ceil(FACTOR * STORAGE / BODY) responses were received (or MAX_SECONDS passed).
#
# Samples VmRSS/VmHWM of ringcache from /proc/PID/status right after start (baseline), after a
# warm-up (WARMUP_SECONDS of hits on one URL over the same connection count), every second during
# the flood and at the end. Then checks that a fresh URL is served (200, BODY bytes, a miss, then a
# hit) and that the first URL of the flood (/u1-1) was evicted (its X-Varnish has one number: a
# miss). Prints the bound, bytes flooded, RSS figures and overhead = peak RSS (VmHWM) - bound.
# Exit status 1 if a check failed, wrk saw errors or the flood did not complete in time.
#
# Env knobs: STORAGE (64m), BODY (16384), FACTOR (10), CORES (2, ringcache -p cores=), THREADS (2,
# wrk -t), CONNS (32, wrk -c), MAX_SECONDS (180, flood time bound), WARMUP_SECONDS (2),
# SAMPLE_INTERVAL (1, seconds between RSS samples during the flood, may be fractional),
# SKIP_BUILD=1, PY_ORIGIN=1 (force the Python origin), RINGCACHE_ARGS (extra arguments),
# CARGO_TARGET_DIR (default <repo>/target), KEEP=1 (keep the work dir with the samples CSV).
set -euo pipefail

STORAGE=${STORAGE:-64m}
BODY=${BODY:-16384}
FACTOR=${FACTOR:-10}
CORES=${CORES:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
MAX_SECONDS=${MAX_SECONDS:-180}
WARMUP_SECONDS=${WARMUP_SECONDS:-2}
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
PY_ORIGIN=${PY_ORIGIN:-0}
RINGCACHE_ARGS=${RINGCACHE_ARGS:-}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RINGCACHE_BIN=$TARGET/release/ringcache
RESPONDER_BIN=$TARGET/release/examples/responder
LUA=$ROOT/loadtest/flood.lua

# shellcheck source=loadtest/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk curl python3)"
done
for v in BODY FACTOR CORES THREADS CONNS MAX_SECONDS WARMUP_SECONDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((CONNS >= THREADS)) || die "CONNS must be >= THREADS"
[[ $SAMPLE_INTERVAL =~ ^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$ ]] || die "SAMPLE_INTERVAL must be seconds > 0 (e.g. 1, 0.2)"

# Bytes of a size like ringcache's -s: 64m, 1g, 512k, 65536 (k/m/g/t = powers of 1024).
to_bytes() {
    local s=${1,,} mult=1
    s=${s%b}
    case $s in
    *k) mult=$((1 << 10)) s=${s%k} ;;
    *m) mult=$((1 << 20)) s=${s%m} ;;
    *g) mult=$((1 << 30)) s=${s%g} ;;
    *t) mult=$((1 << 40)) s=${s%t} ;;
    esac
    [[ $s =~ ^[0-9]+$ ]] || return 1
    echo $((s * mult))
}
BOUND=$(to_bytes "$STORAGE") || die "STORAGE must be like 64m, 1g or a byte count (got '$STORAGE')"
NEEDED=$(((FACTOR * BOUND + BODY - 1) / BODY))  # unique URLs to request
PER_THREAD=$(((NEEDED + THREADS - 1) / THREADS))
NEEDED=$((PER_THREAD * THREADS))

WORK=$(mktemp -d /tmp/ringcache-flood.XXXXXX)
PIDS=() # everything we started (direct children, each one process), stopped on exit

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [[ $KEEP == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# "VmRSS_kB VmHWM_kB" of pid $1.
mem_kb() {
    awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{if (r == "") exit 1; print r, h}' "/proc/$1/status" 2>/dev/null
}

mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k / 1024}'; }

# ---------------------------------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringcache (CARGO_TARGET_DIR=$TARGET)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --bin ringcache) >"$WORK/build.log" 2>&1 ||
        { tail -20 "$WORK/build.log" >&2; die "cargo build of ringcache failed"; }
    if [[ $PY_ORIGIN != 1 ]]; then
        (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --example responder) \
            >"$WORK/build-responder.log" 2>&1 || { log "responder example did not build: Python origin"; PY_ORIGIN=1; }
    fi
fi
[[ -x $RINGCACHE_BIN ]] || die "$RINGCACHE_BIN missing (build it or unset SKIP_BUILD)"
[[ -x $RESPONDER_BIN ]] || PY_ORIGIN=1

# --------------------------------------------------------------------------------------- origin
ORIGIN_PORT=$(free_port)
ORIGIN_STATS=$WORK/origin-count
if [[ $PY_ORIGIN == 1 ]]; then
    cat >"$WORK/origin.py" <<'EOF'
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, size, stats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = b"x" * size
count = [0]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(body)
        with lock:
            count[0] += 1
    def log_message(self, *a):
        pass
def writer():
    last = -1
    while True:
        time.sleep(0.2)
        if count[0] != last:
            last = count[0]
            with open(stats + ".tmp", "w") as f:
                f.write(str(last))
            os.replace(stats + ".tmp", stats)
threading.Thread(target=writer, daemon=True).start()
ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
sys.stderr.write("origin.py: listening on 127.0.0.1:%d\n" % port)
srv.serve_forever()
EOF
    python3 "$WORK/origin.py" "$ORIGIN_PORT" "$BODY" "$ORIGIN_STATS" 2>"$WORK/origin.log" &
    ORIGIN_PID=$!
    ORIGIN_KIND=python
else
    "$RESPONDER_BIN" --listen "127.0.0.1:$ORIGIN_PORT" --body-size "$BODY" --max-age 3600 \
        --stats-file "$ORIGIN_STATS" 2>"$WORK/origin.log" &
    ORIGIN_PID=$!
    ORIGIN_KIND=responder
fi
PIDS+=("$ORIGIN_PID")
wait_port "$ORIGIN_PORT" "$ORIGIN_PID" || { cat "$WORK/origin.log" >&2; die "origin did not start"; }
origin_count() { cat "$ORIGIN_STATS" 2>/dev/null || echo 0; }

# ------------------------------------------------------------------------------------ ringcache
PORT=$(free_port)
# shellcheck disable=SC2086 # RINGCACHE_ARGS is a word list on purpose
"$RINGCACHE_BIN" -a "127.0.0.1:$PORT" -b "127.0.0.1:$ORIGIN_PORT" -p "cores=$CORES" -s "$STORAGE" \
    $RINGCACHE_ARGS 2>"$WORK/ringcache.log" &
RC_PID=$!
PIDS+=("$RC_PID")
for ((i = 0; i < 200; i++)); do
    grep -q 'ringcache: ready' "$WORK/ringcache.log" 2>/dev/null && break
    kill -0 "$RC_PID" 2>/dev/null || { cat "$WORK/ringcache.log" >&2; die "ringcache exited"; }
    sleep 0.1
done
grep -q 'ringcache: ready' "$WORK/ringcache.log" || { cat "$WORK/ringcache.log" >&2; die "ringcache not ready in 20 s"; }
wait_port "$PORT" "$RC_PID" || die "ringcache does not accept connections"
read -r BASE_RSS BASE_HWM < <(mem_kb "$RC_PID") || die "cannot read /proc/$RC_PID/status"
log "ringcache pid $RC_PID on :$PORT ($(grep -m1 "ringcache: ready" "$WORK/ringcache.log")), origin $ORIGIN_KIND on :$ORIGIN_PORT"
log "bound $BOUND B, body $BODY B, flood of $NEEDED unique URLs ($THREADS threads x $PER_THREAD), baseline RSS $(mib "$BASE_RSS")"

# Fetch $1 from ringcache; prints "code size xvarnish" (xvarnish with '_' for the space).
fetch() {
    local out xv
    out=$(curl -s -m 10 -o /dev/null -D "$WORK/hdr" -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$PORT$1") || { echo "000 0 -"; return 0; }
    xv=$(tr -d '\r' <"$WORK/hdr" | awk -F': *' 'tolower($1)=="x-varnish"{print $2}')
    xv=${xv:--}
    echo "$out ${xv// /_}"
}

# ------------------------------------------------------------------------------------- warm-up
wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP_SECONDS}s" "http://127.0.0.1:$PORT/warmup" >"$WORK/warmup.txt" 2>&1 ||
    { cat "$WORK/warmup.txt" >&2; die "warm-up wrk failed"; }
read -r WARM_RSS WARM_HWM < <(mem_kb "$RC_PID") || die "ringcache died during warm-up"
log "after warm-up: RSS $(mib "$WARM_RSS") ($(awk '/Requests\/sec/{print $2}' "$WORK/warmup.txt") req/s of hits)"

# --------------------------------------------------------------------------------------- flood
ORIGIN_BEFORE=$(origin_count)
mkdir -p "$WORK/done"
SAMPLES=$WORK/samples.csv
echo "t_s,origin_fetches,rss_kb,hwm_kb" >"$SAMPLES"
T0_NS=$(date +%s%N)
LAST_LOG=0
FLOOD_PER_THREAD=$PER_THREAD FLOOD_BODY=$BODY FLOOD_DONE_DIR=$WORK/done \
    wrk -t"$THREADS" -c"$CONNS" -d"${MAX_SECONDS}s" --timeout 10s -s "$LUA" \
    "http://127.0.0.1:$PORT/" >"$WORK/flood.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
T0=$SECONDS
COMPLETE=0
while :; do
    sleep "$SAMPLE_INTERVAL"
    t=$((SECONDS - T0))
    if mem=$(mem_kb "$RC_PID"); then
        read -r rss hwm <<<"$mem"
        n=$(($(origin_count) - ORIGIN_BEFORE))
        ms=$((($(date +%s%N) - T0_NS) / 1000000))
        echo "$((ms / 1000)).$(printf %03d $((ms % 1000))),$n,$rss,$hwm" >>"$SAMPLES"
        if ((t >= LAST_LOG + 5)); then
            LAST_LOG=$t
            log "t=${t}s origin fetches $n/$NEEDED ($((n * BODY * 100 / BOUND))% of bound) RSS $(mib "$rss") HWM $(mib "$hwm")"
        fi
    else
        die "ringcache (pid $RC_PID) died during the flood"
    fi
    # Each wrk thread drops a marker file once it received its quota of responses.
    if (($(find "$WORK/done" -type f | wc -l) >= THREADS)); then
        COMPLETE=1
        if kill -0 "$WRK_PID" 2>/dev/null; then
            kill -INT "$WRK_PID" 2>/dev/null || true # wrk stops sleeping, reports and exits
        fi
        break
    fi
    kill -0 "$WRK_PID" 2>/dev/null || break
    ((t < MAX_SECONDS + 20)) || { log "wrk still running after $((MAX_SECONDS + 20)) s"; break; }
done
for ((i = 0; i < 100; i++)); do kill -0 "$WRK_PID" 2>/dev/null || break; sleep 0.1; done
stop_pid "$WRK_PID"
FLOOD_S=$((SECONDS - T0))
sleep 1 # let in-flight fetches land and the origin counter file catch up
read -r END_RSS END_HWM < <(mem_kb "$RC_PID") || die "ringcache died at the end of the flood"
ORIGIN_FETCHES=$(($(origin_count) - ORIGIN_BEFORE))
ms=$((($(date +%s%N) - T0_NS) / 1000000))
echo "$((ms / 1000)).$(printf %03d $((ms % 1000))),$ORIGIN_FETCHES,$END_RSS,$END_HWM" >>"$SAMPLES"

FL=$(grep '^FLOOD ' "$WORK/flood.txt" || true)
[[ -n $FL ]] || { cat "$WORK/flood.txt" >&2; die "wrk printed no FLOOD summary"; }
fl() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$FL"; }
RESPONSES=$(fl responses)
ERRORS=$(($(fl bad_status) + $(fl bad_size) + $(fl connect) + $(fl read) + $(fl write) + $(fl timeout)))
RPS=$(awk '/Requests\/sec/{print $2}' "$WORK/flood.txt")

# -------------------------------------------------------------------------------------- checks
FAIL=()
read -r code size xv < <(fetch "/fresh-$$-$RANDOM")
if [[ $code == 200 && $size == "$BODY" && $xv =~ ^[0-9]+$ ]]; then
    FRESH="ok (200, $size B, miss X-Varnish ${xv})"
else
    FRESH="FAILED (status $code, $size B, X-Varnish ${xv//_/ })"
    FAIL+=("fresh URL")
fi
read -r code size xv < <(fetch "/u1-1")
if [[ $code == 200 && $size == "$BODY" && $xv =~ ^[0-9]+$ ]]; then
    EARLY="evicted (refetched: 200, $size B, X-Varnish ${xv})"
else
    EARLY="FAILED (status $code, $size B, X-Varnish ${xv//_/ }; want a miss)"
    FAIL+=("early URL not evicted")
fi
read -r code size xv < <(fetch "/u1-1")
if [[ $code == 200 && $xv =~ ^[0-9]+_[0-9]+$ ]]; then
    EARLY+=", then a hit"
else
    EARLY+=", then NOT a hit (status $code, X-Varnish ${xv//_/ })"
    FAIL+=("refetched early URL not a hit")
fi
((ERRORS == 0)) || FAIL+=("$ERRORS wrk errors")
((COMPLETE == 1 && RESPONSES >= NEEDED)) || FAIL+=("flood incomplete ($RESPONSES/$NEEDED responses in ${FLOOD_S}s)")
read -r FIN_RSS FIN_HWM < <(mem_kb "$RC_PID") || die "ringcache died during the checks"

# ------------------------------------------------------------------------------------- summary
PEAK_KB=$FIN_HWM
# RSS at the first sample where k x bound of bodies had been fetched from the origin (k = 0.5, 1,
# then about ten steps up to FACTOR).
PROGRESS=$(awk -F, -v body="$BODY" -v bound="$BOUND" -v factor="$FACTOR" '
    NR == 1 { step = factor > 10 ? int((factor + 9) / 10) : 1; next }
    { while (k <= factor && $2 * body >= (k ? k : 0.5) * bound) {
          printf "%s%sx:%.0f", (out ? " " : ""), (k ? k : "0.5"), $3 / 1024; out = 1
          k = k ? k + step : 1; if (k > factor && k - step < factor) k = factor } }
    END { print "" }' "$SAMPLES")
AFTER_FULL=$(awk -F, -v body="$BODY" -v bound="$BOUND" '
    NR == 1 { next }
    $2 * body >= 2 * bound { if (first == "") first = $3; last = $3; if ($3 > max) max = $3 }
    END { if (first == "") print "n/a"; else printf "%+.1f MiB (%.1f -> %.1f, max %.1f)", (last - first) / 1024, first / 1024, last / 1024, max / 1024 }' "$SAMPLES")
awk -v peak="$PEAK_KB" -v bound="$BOUND" -v base="$BASE_RSS" -v warm="$WARM_RSS" -v end="$END_RSS" \
    -v fin="$FIN_RSS" -v flooded="$((RESPONSES * BODY))" -v need="$NEEDED" -v resp="$RESPONSES" \
    -v fetches="$ORIGIN_FETCHES" -v body="$BODY" -v secs="$FLOOD_S" -v rps="$RPS" -v errs="$ERRORS" \
    -v storage="$STORAGE" -v cores="$CORES" -v origin="$ORIGIN_KIND" -v factor="$FACTOR" '
    function m(b) { return sprintf("%.1f MiB", b / 1048576) }
    BEGIN {
        ov = peak * 1024 - bound
        printf "\n== ringcache flood: -s %s, body %d B, %dx, cores=%d, origin %s ==\n", storage, body, factor, cores, origin
        printf "storage bound          %s (%d B)\n", m(bound), bound
        printf "bytes flooded          %s = %.2fx bound (%d responses x %d B; %d needed)\n", m(flooded), flooded / bound, resp, body, need
        printf "origin fetches         %d (misses during the flood)\n", fetches
        printf "flood time             %d s, %s req/s, errors %d\n", secs, rps, errs
        printf "baseline RSS           %s\n", m(base * 1024)
        printf "RSS after warm-up      %s\n", m(warm * 1024)
        printf "peak RSS (VmHWM)       %s\n", m(peak * 1024)
        printf "RSS at end of flood    %s\n", m(end * 1024)
        printf "final RSS (after chk)  %s\n", m(fin * 1024)
        printf "overhead peak-bound    %s = %+.1f%% of bound\n", m(ov), ov * 100 / bound
        printf "overhead peak-base-bnd %s = %+.1f%% of bound\n", m(ov - base * 1024), (ov - base * 1024) * 100 / bound
    }'
echo "RSS MiB when k x bound fetched: $PROGRESS"
echo "RSS change after 2x bound:     $AFTER_FULL"
echo "fresh URL:                     $FRESH"
echo "early URL /u1-1:               $EARLY"
if ((${#FAIL[@]})); then
    echo "RESULT: FAIL (${FAIL[*]})"
    exit 1
fi
echo "RESULT: ok"
