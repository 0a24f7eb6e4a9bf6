#!/usr/bin/env bash
# Load test: pooled backend connections under a round-robin director of 4 origins.
#
#   bash loadtest/director_pool.sh
#   CORES="1 2" MODES="pass miss" DURATION=10s CONNS=32 bash loadtest/director_pool.sh
#
# ringcache serves a VCL with four backends (four responders, loadtest/responder.rs) behind
# `directors.round_robin()`; every request is a fetch: `/pass/...` returns (pass), `/miss/...`
# sets `req.hash_always_miss` (a cache miss each time: fetched, stored, replaced). wrk drives one
# URL per mode for a warm-up of 2 s, then for $DURATION; the admin port's counters are read
# before and after the measured window:
#
#   reuse = Δ backend_reuse / (Δ backend_reuse + Δ backend_conn)
#
# i.e. the share of fetches that went out on a pooled connection instead of a new one. Each
# origin's request count (--stats-file) shows the round-robin spread. Checks: no non-2xx
# responses, no socket errors, no backend_fail/fetch_failed during the window.
#
# Method: ringcache gets -p cores=$cores, pinned with taskset to CPU $SERVER_CPU (cores=1) or
# unpinned (cores=2); wrk and the origins share CPU $CLIENT_CPU. Env knobs: CORES ("1 2"),
# MODES ("pass miss"), DURATION (10s), CONNS (32), SERVER_CPU (1), CLIENT_CPU (0), SKIP_BUILD,
# CARGO_TARGET_DIR, OUT_DIR (loadtest/out).
set -euo pipefail

CORES=${CORES:-"1 2"}
MODES=${MODES:-"pass miss"}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$ROOT/loadtest/out}
RINGCACHE_BIN=$TARGET/release/ringcache
RESPONDER_BIN=$TARGET/release/examples/responder
# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
WORK=$(mktemp -d /tmp/ringcache-dpool.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_tree "$p"; done
    rm -rf "$WORK"
}
trap cleanup EXIT

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --bin ringcache --example responder) >&2 || die "cargo build failed"
fi

# Four origins (1 KiB bodies, no-store so misses are not cacheable for long either).
OPORTS=()
for i in 1 2 3 4; do
    p=$(free_port)
    taskset -c "$CLIENT_CPU" "$RESPONDER_BIN" --listen "127.0.0.1:$p" --body-size 1024 \
        --max-age 0 --stats-file "$WORK/origin$i.count" >"$WORK/origin$i.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$p" "$!" || die "origin $i did not start"
    OPORTS+=("$p")
done

VCL=$WORK/rr4.vcl
{
    echo 'vcl 4.1;'
    echo 'import directors;'
    for i in 1 2 3 4; do
        echo "backend o$i { .host = \"127.0.0.1\"; .port = \"${OPORTS[$((i - 1))]}\"; }"
    done
    echo 'sub vcl_init { new rr = directors.round_robin();'
    echo '  rr.add_backend(o1); rr.add_backend(o2); rr.add_backend(o3); rr.add_backend(o4); }'
    echo 'sub vcl_recv {'
    echo '  set req.backend_hint = rr.backend();'
    echo '  if (req.url ~ "^/pass/") { return (pass); }'
    echo '  set req.hash_always_miss = true;'
    echo '  return (hash);'
    echo '}'
    echo 'sub vcl_backend_response { set beresp.ttl = 1s; }'
} >"$VCL"

origin_counts() {
    local i out=""
    for i in 1 2 3 4; do out+="$(cat "$WORK/origin$i.count" 2>/dev/null || echo 0) "; done
    echo "$out"
}

# Counter $2 from a `stat -1` dump in file $1.
counter() { awk -v n="MAIN.$2" '$1 == n { print $2; exit }' "$1"; }

mkdir -p "$OUT_DIR"
REPORT=$OUT_DIR/director-pool-$(date +%Y%m%d-%H%M%S).md
{
    echo "# Pooled connections under a round-robin of 4 origins"
    echo
    echo "commit $COMMIT, $(date -u +%FT%TZ), wrk -t1 -c$CONNS -d$DURATION, 1 KiB bodies"
    echo
    echo "| shards | mode | req/s | fetches | new conns | reused | reuse % | origin shares | checks |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$REPORT"

for cores in $CORES; do
    port=$(free_port)
    aport=$(free_port)
    pin=()
    ((cores == 1)) && pin=(taskset -c "$SERVER_CPU")
    "${pin[@]}" "$RINGCACHE_BIN" -a "127.0.0.1:$port" -T "127.0.0.1:$aport" -f "$VCL" \
        -p cores="$cores" -s 64m >"$WORK/ringcache-$cores.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    wait_port "$port" "$spid" || die "ringcache did not start: $(cat "$WORK/ringcache-$cores.log")"
    adm() { timeout 30 "$RINGCACHE_BIN" adm -T "127.0.0.1:$aport" -t 20 "$@"; }
    for mode in $MODES; do
        url="http://127.0.0.1:$port/$mode/obj"
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null 2>&1 || true
        adm stat -1 >"$WORK/before" || die "stat failed"
        before_o=$(origin_counts)
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "$url" >"$WORK/wrk.out" 2>&1 || true
        sleep 0.5 # the origins' stats files are written at most every 200 ms
        adm stat -1 >"$WORK/after" || die "stat failed"
        after_o=$(origin_counts)
        rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$WORK/wrk.out")
        checks=ok
        grep -q "Non-2xx" "$WORK/wrk.out" && checks="non-2xx: $(grep Non-2xx "$WORK/wrk.out" | awk '{print $NF}')"
        grep -q "Socket errors" "$WORK/wrk.out" && checks="socket errors"
        d() { echo $(($(counter "$WORK/after" "$1") - $(counter "$WORK/before" "$1"))); }
        conn=$(d backend_conn)
        reuse=$(d backend_reuse)
        req=$(d backend_req)
        fails=$(($(d backend_fail) + $(d fetch_failed)))
        ((fails == 0)) || checks="$fails failed fetches"
        pct=$(python3 -c "import sys; c,r=int(sys.argv[1]),int(sys.argv[2]); print('%.3f' % (100.0*r/(c+r) if c+r else 0))" "$conn" "$reuse")
        shares=$(python3 -c "
import sys
b=[int(x) for x in sys.argv[1].split()]; a=[int(x) for x in sys.argv[2].split()]
d=[y-x for x,y in zip(b,a)]; t=sum(d) or 1
print(' / '.join('%.1f%%' % (100.0*x/t) for x in d))" "$before_o" "$after_o")
        log "cores=$cores $mode: $rps req/s, $req fetches, $conn new, $reuse reused ($pct %), origins $shares, $checks"
        echo "| $cores | $mode | $rps | $req | $conn | $reuse | $pct | $shares | $checks |" >>"$REPORT"
    done
    stop_tree "$spid"
done
log "written to $REPORT"
cat "$REPORT"
