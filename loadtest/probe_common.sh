# Helpers shared by the health load tests, loadtest/probes.sh and loadtest/probe_truth.sh
# (sourced after common.sh, not run).

# utime+stime (clock ticks) of the threads named $2 in the process tree of $1 (threads alive
# now; a thread that ended takes its ticks with it); only stime if $3 is "stime".
thread_ticks() {
    local sum=0 p t s f
    for p in "$1" $(descendants "$1"); do
        for t in /proc/"$p"/task/*; do
            [[ $(cat "$t/comm" 2>/dev/null) == "$2" ]] || continue
            s=$(cat "$t/stat" 2>/dev/null) || continue
            s=${s##*) }
            read -r -a f <<<"$s"
            if [[ ${3:-} == stime ]]; then
                sum=$((sum + f[12]))
            else
                sum=$((sum + f[11] + f[12]))
            fi
        done
    done
    echo "$sum"
}

# "comm ticks" per thread name over the process tree of $1, one line each (threads alive now).
comm_ticks() {
    local p t s f
    for p in "$1" $(descendants "$1"); do
        for t in /proc/"$p"/task/*; do
            s=$(cat "$t/stat" 2>/dev/null) || continue
            printf '%s\t' "$(cat "$t/comm" 2>/dev/null)"
            s=${s##*) }
            read -r -a f <<<"$s"
            echo $((f[11] + f[12]))
        done
    done | awk -F'\t' '{ n[$1] += $2; c[$1]++ } END { for (k in n) printf "%s\t%d\t%d\n", k, n[k], c[k] }'
}

# Sum of VmRSS and of VmHWM (KiB) over the process tree of $1: "rss hwm".
tree_rss() {
    local p rss=0 hwm=0 a b
    for p in "$1" $(descendants "$1"); do
        a=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        b=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        rss=$((rss + ${a:-0}))
        hwm=$((hwm + ${b:-0}))
    done
    echo "$rss $hwm"
}

# Wait until the CPUs are idle: all busy time below 10 % of a core in each of 3 consecutive
# seconds, for at most $1 s (the load average is no use: varnishd's threads inflate it). Prints
# nothing; logs how long it waited, or that it gave up, and sets QUIET_NOTE.
wait_quiet() {
    local max=$1 a b busy waited=0 calm=0 tck
    tck=$(getconf CLK_TCK)
    QUIET_NOTE="quiet"
    while :; do
        read -r -a a </proc/stat
        sleep 1
        read -r -a b </proc/stat
        busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
        if ((busy * 100 < 10 * tck)); then
            calm=$((calm + 1))
            if ((calm >= 3)); then
                ((waited == 0)) || { log "machine quiet after ${waited}s"; QUIET_NOTE="quiet after waiting ${waited}s"; }
                return 0
            fi
            continue
        fi
        calm=0
        ((waited == 0)) && log "machine busy ($((busy * 100 / tck))% of a core used by others; load $(cut -d' ' -f1-3 /proc/loadavg)), waiting up to ${max}s"
        waited=$((waited + 1))
        if ((waited >= max)); then
            log "still busy after ${max}s ($((busy * 100 / tck))% of a core), measuring anyway"
            QUIET_NOTE="NOT quiet: others used $((busy * 100 / tck))% of a core after ${max}s of waiting"
            return 0
        fi
    done
}

now_ns() { date +%s%N; }

# Build the probe origin (std only, no Cargo.toml entry) into $1 unless it is newer than its source.
build_probe_origin() {
    local src=$ROOT/loadtest/probe_origin.rs out=$1
    if [[ ! -x $out || $src -nt $out ]]; then
        log "building $out"
        mkdir -p "$(dirname "$out")"
        rustc -O --edition 2021 "$src" -o "$out" >&2 || die "rustc $src failed"
    fi
}

# Start the probe origin on a fresh port pinned to CPU $1 with log dir $2 (created) and stats
# file $3. Sets ORIGIN_PID and ORIGIN_PORT.
start_probe_origin() {
    local cpu=$1 dir=$2 stats=$3 pin=()
    [[ $cpu == none ]] || pin=(taskset -c "$cpu")
    mkdir -p "$dir"
    ORIGIN_PORT=$(free_port)
    "${pin[@]}" "$PROBE_ORIGIN_BIN" --listen "127.0.0.1:$ORIGIN_PORT" --threads "${ORIGIN_THREADS:-4}" \
        --log "$dir" --stats-file "$stats" >"$dir/origin.stderr" 2>&1 &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    wait_port "$ORIGIN_PORT" "$ORIGIN_PID" || die "probe origin did not start: $(cat "$dir/origin.stderr")"
}

# A TcpExt counter of /proc/net/netstat (system-wide), e.g. ListenOverflows, ListenDrops,
# TCPTimeouts.
tcpext() {
    awk -v name="$1" '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1 }
                      else for (i = 2; i <= NF; i++) if (h[i] == name) print $i }' /proc/net/netstat
}

# The work directory (kept with KEEP=1), PIDS (everything we start) and the exit trap that
# stops them; $1 names the directory.
init_work() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK" # varnishd drops privileges (users varnish/vcache) and must reach its -n dir
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_tree "$p"; done
    if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    log "total runtime $((SECONDS / 60))m$((SECONDS % 60))s"
    exit "$rc"
}

# Forget a pid we stopped ourselves (so cleanup does not look for it again).
forget() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
