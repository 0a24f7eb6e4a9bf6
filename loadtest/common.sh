# Helpers shared by the load-test scripts (sourced, not run).

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# A free TCP port on 127.0.0.1 (the kernel picks it; nothing else of ours holds it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait (at most 20 s) until 127.0.0.1:$1 accepts connections; $2 = pid that must stay alive.
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Every descendant of $1 (children, grandchildren...), one per line.
descendants() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$c"
        descendants "$c"
    done
}

# Stop $1 and its process tree: TERM, up to 5 s of grace, then KILL.
stop_tree() {
    local pid=$1 all p i
    kill -0 "$pid" 2>/dev/null || return 0
    all="$pid $(descendants "$pid" | tr '\n' ' ')"
    kill -TERM $all 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    kill -KILL $all 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# utime+stime (clock ticks) of $1 and all its descendants; each /proc/<pid>/stat already sums
# the process's threads.
tree_ticks() {
    local sum=0 p s f
    for p in "$1" $(descendants "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) } # drop "pid (comm) ", comm may hold spaces
        read -r -a f <<<"$s"
        sum=$((sum + f[11] + f[12])) # fields 14 and 15: utime, stime
    done
    echo "$sum"
}

# "busy steal" ticks over all CPUs: busy = user+nice+system+irq+softirq. Without
# IRQ_TIME_ACCOUNTING the softirq work (loopback TCP!) done in a task's context is also charged to
# that task's utime+stime, so busy must include it for "busy - server - wrk" to mean "others".
sys_ticks() {
    local _ u n s idle iow irq sirq st
    read -r _ u n s idle iow irq sirq st _ </proc/stat
    echo "$((u + n + s + irq + sirq)) $st"
}
