#!/usr/bin/env python3
"""stats.py [LABEL] < numbers: one line with n, min, median, p99 (nearest rank) and max."""
import math
import statistics
import sys


def summary(vals):
    vals = sorted(vals)
    p99 = vals[max(0, math.ceil(0.99 * len(vals)) - 1)]
    return {"n": len(vals), "min": vals[0], "median": statistics.median(vals), "p99": p99,
            "max": vals[-1], "mean": statistics.fmean(vals)}


def median_ci(vals, conf=0.95):
    """A distribution-free interval for the median (the sign test's order statistics): the k-th
    smallest and k-th largest value, k the largest with P(Binomial(n, 1/2) < k) <= (1 - conf) / 2.
    Its coverage is at least conf; None below n = 6 (no such k)."""
    vals = sorted(vals)
    n = len(vals)
    tail, k = 0.0, 0
    while True:
        nxt = tail + math.comb(n, k) / 2**n
        if nxt > (1 - conf) / 2:
            break
        tail, k = nxt, k + 1
    if k == 0:
        return None
    return vals[k - 1], vals[n - k]


if __name__ == "__main__":
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    vals = [float(x) for x in sys.stdin.read().split()]
    if not vals:
        print(f"{label} n=0")
    else:
        s = summary(vals)
        print(f"{label} n={s['n']} min={s['min']:.2f} median={s['median']:.2f} p99={s['p99']:.2f} "
              f"max={s['max']:.2f}")
