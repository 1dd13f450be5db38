#!/usr/bin/env python3
"""wrkparse.py WRK_OUTPUT [SERVER_TICKS CLK_TCK]: one CSV line
rps,p50_us,p90_us,p99_us,max_us,requests,socket_errors,non2xx,server_cpu_us_per_req"""
import re
import sys


def us(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]


txt = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1))
mx = us(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", txt).group(1))
pct = {p: us(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", txt, re.M)}
reqs = int(re.search(r"(\d+) requests in", txt).group(1))
se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
serr = sum(int(x) for x in se.groups()) if se else 0
n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
cpu = ""
if len(sys.argv) > 3:
    cpu = f"{int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / max(reqs, 1):.2f}"
print(f"{rps:.0f},{pct['50']:.0f},{pct['90']:.0f},{pct['99']:.0f},{mx:.0f},{reqs},{serr},"
      f"{int(n2.group(1)) if n2 else 0},{cpu}")
