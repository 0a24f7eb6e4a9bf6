-- wrk script for loadtest/flood.sh: every request asks for a URL never asked before.
--
-- URL of the n-th request (n = 1, 2, ...) of wrk thread t (t = 1 .. -t): /u<t>-<n>, so URLs are
-- unique across threads and the very first one of thread 1 is /u1-1 (flood.sh checks it was
-- evicted). Each thread stops by itself after FLOOD_PER_THREAD responses (0 = run for -d only).
-- Once done, the thread creates the file $FLOOD_DONE_DIR/t<t> (if FLOOD_DONE_DIR is set).
-- Responses that are not 200 or whose body is not FLOOD_BODY bytes are counted as bad.
--
--   FLOOD_PER_THREAD=2560 FLOOD_BODY=16384 wrk -t2 -c32 -d180s -s loadtest/flood.lua http://...

local per_thread = tonumber(os.getenv("FLOOD_PER_THREAD") or "0") or 0
local want_body = tonumber(os.getenv("FLOOD_BODY") or "-1") or -1
local done_dir = os.getenv("FLOOD_DONE_DIR")

local threads = {}
local next_id = 1

function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state; `tid` was set by setup()). Globals,
-- not locals: done() reads them through thread:get().
sent = 0
got = 0
bad_status = 0
bad_size = 0

function request()
    sent = sent + 1
    return wrk.format(nil, "/u" .. tid .. "-" .. sent)
end

function response(status, headers, body)
    got = got + 1
    if status ~= 200 then
        bad_status = bad_status + 1
    elseif want_body >= 0 and #body ~= want_body then
        bad_size = bad_size + 1
    end
    if per_thread > 0 and got == per_thread then
        -- wrk's main thread sleeps for all of -d regardless: the marker file tells flood.sh this
        -- thread is done, and flood.sh then sends wrk SIGINT (it then reports and exits).
        if done_dir then
            local f = io.open(done_dir .. "/t" .. tid, "w")
            if f then f:close() end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local sent_all, got_all, bs, bz = 0, 0, 0, 0
    for _, t in ipairs(threads) do
        sent_all = sent_all + (t:get("sent") or 0)
        got_all = got_all + (t:get("got") or 0)
        bs = bs + (t:get("bad_status") or 0)
        bz = bz + (t:get("bad_size") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "FLOOD sent=%d responses=%d bad_status=%d bad_size=%d wrk_requests=%d bytes=%d " ..
        "duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p99_us=%d\n",
        sent_all, got_all, bs, bz, summary.requests, summary.bytes, summary.duration,
        e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(99)))
end
