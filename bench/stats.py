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


if __name__ == "__main__":
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    vals = [float(x) for x in sys.stdin.read().split()]
    if not vals:
        print(f"{label} n=0")
    else:
        s = summary(vals)
        print(f"{label} n={s['n']} min={s['min']:.2f} median={s['median']:.2f} p99={s['p99']:.2f} "
              f"max={s['max']:.2f}")
