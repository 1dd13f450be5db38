#!/usr/bin/env python3
"""The table and verdicts of bench/http_throughput.sh from its http.csv; given several runs' CSVs,
the same over all their repetitions pooled (a repetition's ratio still pairs the servers within
that run): python3 bench/http_table.py RUN1/http.csv RUN2/http.csv ..."""
import csv, math, statistics, sys
rows = []
for i, path in enumerate(sys.argv[1:]):
    for r in csv.DictReader(open(path)):
        r["rep"] = f"{i}:{r['rep']}"  # repetitions of different runs never pair
        rows.append(r)
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
reps = sorted({r["rep"] for r in rows}, key=lambda rep: tuple(int(x) for x in rep.split(":")))
def per_rep_ratios(c, other):  # vitals' req/s over the other server's, repetition by repetition
    rps = lambda srv, rep: [float(r["rps"]) for r in rows
                            if r["server"] == srv and int(r["conns"]) == c and r["rep"] == rep]
    return [rps("vitals", rep)[0] / rps(other, rep)[0] for rep in reps
            if rps("vitals", rep) and rps(other, rep)]
print("| server | conns | req/s median (min–max) | p50 µs | p90 µs | p99 µs | max µs | socket errors | non-2xx | server CPU µs/req | fresh GET during load, worst ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
ratios, poco_ratios = {}, {}
for c in sorted({int(r["conns"]) for r in rows}):
    for srv in ("nginx", "vitals", "poco"):
        rs = [r for r in rows if r["server"] == srv and int(r["conns"]) == c]
        if not rs:
            continue
        rps = sorted(float(r["rps"]) for r in rs)
        fresh = [r["fresh_worst_ms"] for r in rs]
        worst = "FAIL" if "FAIL" in fresh else f"{max(float(x) for x in fresh):.1f}"
        print(f"| {srv} | {c} | **{med(rs,'rps'):.0f}** ({rps[0]:.0f}–{rps[-1]:.0f}) | {med(rs,'p50_us'):.0f} | "
              f"{med(rs,'p90_us'):.0f} | {med(rs,'p99_us'):.0f} | {med(rs,'max_us'):.0f} | "
              f"{sum(int(r['socket_errors']) for r in rs)} | {sum(int(r['non2xx']) for r in rs)} | "
              f"{med(rs,'cpu_us_per_req'):.1f} | {worst} |")
    ratios[c] = (statistics.median(per_rep_ratios(c, "nginx")), per_rep_ratios(c, "nginx"))
    pv = per_rep_ratios(c, "poco")
    if pv:
        poco_ratios[c] = statistics.median(pv)
print()
def median_interval(xs):
    # The k-th smallest and k-th largest of n values bound their median with confidence
    # 1 - 2 P(Binomial(n, 1/2) < k) (sign test): k the largest rank keeping that ≥ 95 %, else 1
    # (94 % for n = 5; k = 2, 97.9 %, for n = 10).
    xs, n = sorted(xs), len(xs)
    conf = lambda k: 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
    k = max([k for k in range(1, n // 2 + 1) if conf(k) >= 0.95] or [1])
    return xs[k - 1], xs[n - k], 100 * conf(k)
for c, (m, per) in ratios.items():
    lo, hi, conf = median_interval(per)
    print(f"- c{c}: vitals/nginx = **{m:.3f}×** (median of per-repetition ratios {', '.join(f'{x:.2f}' for x in per)}; "
          f"{conf:.1f} % interval {lo:.2f}–{hi:.2f}); target ≥ 1.0× {'met' if m >= 1.0 else 'MISSED'}")
for c, r in poco_ratios.items():
    print(f"- c{c}: vitals / bare Poco HTTPServer (tuned, 300-byte body from memory) = {r:.2f}×")
v32 = [r for r in rows if r["server"] == "vitals" and r["conns"] == "32"]
n32 = [r for r in rows if r["server"] == "nginx" and r["conns"] == "32"]
if v32 and n32:
    p99, np99 = med(v32, "p99_us") / 1000, med(n32, "p99_us") / 1000
    print(f"- p99 at c32 (medians over {len(v32)} runs): vitals **{p99:.2f} ms**, nginx {np99:.2f} ms; "
          f"target no worse than nginx's {'met' if p99 <= np99 else 'MISSED'}")
errs = sum(int(r["socket_errors"]) for r in rows if r["server"] == "vitals")
print(f"- vitals socket errors over all runs: **{errs}**; fresh requests during load all answered: "
      f"{'yes' if all(r['fresh_worst_ms'] != 'FAIL' for r in rows if r['server'] == 'vitals') else 'NO'}")
