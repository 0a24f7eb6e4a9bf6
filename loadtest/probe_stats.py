#!/usr/bin/env python3
"""Probe timing seen from the origin (loadtest/probe_origin.rs --log DIR).

    probe_stats.py LOGDIR T0_NS T1_NS INTERVAL_S [START_NS] [HOST_PREFIX]

Reads every DIR/probes-*.log line `HOST ACCEPT_NS CLOSE_NS` and prints `key=value` lines.

What is measured. Both ringcache and Varnish 7.1 schedule a probe's next poke one `.interval`
after the previous poke *completed* (Varnish: `vbp_task` sets `due = VTIM_real() + interval`
after `vbp_poke`; ringcache: `due = done + interval` in `probe_loop`). Seen from the origin,
for two consecutive probes k, k+1 of one backend (same Host header):

    gap = accept[k+1] - close[k] - interval
        = (the prober sees our close: EOF wake-up)          # d1
        + (start of poke k+1 - its due time)               # the poller's lateness
        + (connect of poke k+1 until our accept returns)   # d2

so `gap` is the lateness plus two loopback hand-offs: an upper bound of the lateness the poller
itself records (its `Lateness` histogram measures only the middle term). It can be slightly
negative when the prober's clock reading of "done" and ours differ by less than the hand-off.
Only pairs whose second probe was accepted inside [T0, T1] are counted; probes are counted when
accepted inside [T0, T1].

Also: `first_all_s` = seconds from START_NS until every host had its first probe (the end of the
first round: how long until a freshly loaded VCL has probed all its backends), and hosts that
got no probe in [T0, T1].
"""
import glob
import os
import sys


def load_results(work):
    """Every `WORK/*/result.kv` of a load-test run (one `key=value` per line), in run order;
    the report sections of probes.sh and probe_truth.sh import it."""
    res = []
    for p in sorted(glob.glob(os.path.join(work, "*", "result.kv"))):
        d = {}
        for l in open(p):
            if "=" in l:
                k, v = l.rstrip("\n").split("=", 1)
                d[k] = v
        res.append(d)
    return res


def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(q * len(sorted_vals) + 0.999999) - 1))
    return sorted_vals[i]


def main():
    d, t0, t1, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    start = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] not in ("", "-") else None
    prefix = sys.argv[6] if len(sys.argv) > 6 else ""
    iv = int(interval * 1e9)
    per_host = {}
    for path in sorted(glob.glob(os.path.join(d, "probes-*.log"))):
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 3 or not p[0].startswith(prefix):
                    continue
                per_host.setdefault(p[0], []).append((int(p[1]), int(p[2])))
    gaps, service, periods = [], [], []
    probes = 0
    hosts_in = 0
    first_all = 0
    for h, recs in per_host.items():
        recs.sort()
        first_all = max(first_all, recs[0][0])
        seen = False
        for k, (a, c) in enumerate(recs):
            if t0 <= a <= t1:
                probes += 1
                seen = True
                service.append(c - a)
                if k > 0:
                    pa, pc = recs[k - 1]
                    gaps.append(a - pc - iv)
                    periods.append(a - pa)
        hosts_in += seen
    gaps.sort()
    service.sort()
    periods.sort()
    ms = lambda ns: ns / 1e6
    span = (t1 - t0) / 1e9
    out = {
        "hosts_total": len(per_host),
        "hosts_probed_in_window": hosts_in,
        "probes": probes,
        "probes_per_s": "%.1f" % (probes / span if span > 0 else 0),
        "pairs": len(gaps),
        "gap_min_ms": "%.3f" % ms(gaps[0]) if gaps else "nan",
        "gap_p50_ms": "%.3f" % ms(pct(gaps, 0.50)),
        "gap_p90_ms": "%.3f" % ms(pct(gaps, 0.90)),
        "gap_p99_ms": "%.3f" % ms(pct(gaps, 0.99)),
        "gap_p999_ms": "%.3f" % ms(pct(gaps, 0.999)),
        "gap_max_ms": "%.3f" % ms(gaps[-1]) if gaps else "nan",
        "gap_over_5ms": sum(1 for g in gaps if g > 5_000_000),
        "gap_over_100ms": sum(1 for g in gaps if g > 100_000_000),
        "service_p50_ms": "%.3f" % ms(pct(service, 0.50)),
        "service_p99_ms": "%.3f" % ms(pct(service, 0.99)),
        "period_p50_ms": "%.3f" % ms(pct(periods, 0.50)),
        "period_p99_ms": "%.3f" % ms(pct(periods, 0.99)),
        "first_all_s": "%.3f" % ((first_all - start) / 1e9) if start and per_host else "nan",
    }
    for k, v in out.items():
        print("%s=%s" % (k, v))


if __name__ == "__main__":
    main()
