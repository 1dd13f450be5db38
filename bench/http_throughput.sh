#!/usr/bin/env bash
# Target 3: /health throughput, vitals against nginx serving the same bytes from memory.
# nginx (1 worker, as in the anchor) answers a copy of the agent's own /health body with
# `return 200 '…'`; the agent answers /health from memory (two tcp probes). wrk -t1 -c32 and -c256, DURATION each,
# REPS repetitions, servers interleaved so that each ratio comes from one time window, their order
# reversed every other repetition (so neither always runs first).
# Stalls: while wrk runs, a fresh curl GET /health every second (the "17th connection"); its
# worst time and any failure are reported, as are wrk's socket errors and non-2xx answers.
# Optional third server: POCO_ANCHOR=path of the anchors' poco_health_server (built by
# /work/shared/recipes/poco_http/build.sh): bare Poco HTTPServer, tuned, answering its own 300-byte
# body from memory; it shows how much of the gap to nginx is Poco's and how much is vitals'.
# Knobs: REPS=5 DURATION=10s CONNS="32 256" POCO_ANCHOR= (and lib.sh's VITALS_BUILD, OUT, NO_RESULTS).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-"32 256"}
OUT=${OUT:-/tmp/vitals-bench/http}
need wrk nginx curl python3
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT/www" "$OUT/logs"
chmod 755 "$OUT" "$OUT/www"

NGINX_PORT=$(free_port)
AGENT_PORT=$(free_port)
stop_pids_on_exit

nginx_conf() {   # the location's directive
  cat >"$OUT/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/logs/nginx_error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  open_file_cache max=100 inactive=60s;
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    root $OUT/www;
    location = /health { default_type application/json; $1 }
  }
}
NGINX
}
nginx_conf ""
cat >"$OUT/vitals.yaml" <<YAML
listen: 127.0.0.1:$AGENT_PORT
probes:
  web: {plugin: tcp, interval: 1s, options: {port: $NGINX_PORT}}
  web2: {plugin: tcp, tier: optional, interval: 1s, options: {port: $NGINX_PORT}}
YAML
echo '{}' >"$OUT/www/health"
nginx -p "$OUT" -c "$OUT/nginx.conf" &
PIDS+=($!)
NGINX=$!
"$VITALS" run -c "$OUT/vitals.yaml" >"$OUT/agent.log" 2>&1 &
PIDS+=($!)
AGENT=$!
SERVERS="nginx vitals"
if [ -n "${POCO_ANCHOR:-}" ]; then
  POCO_PORT=$(free_port)
  "$POCO_ANCHOR" --port "$POCO_PORT" --mode tuned --threads 1024 --queued 4096 --nodelay >"$OUT/poco.log" 2>&1 &
  PIDS+=($!)
  POCO=$!
  SERVERS="nginx vitals poco"
  wait_http "http://127.0.0.1:$POCO_PORT/health"
fi
wait_http "http://127.0.0.1:$NGINX_PORT/health"
wait_http "http://127.0.0.1:$AGENT_PORT/health"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$AGENT_PORT/health" && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$AGENT_PORT/health" >"$OUT/www/health"
chmod 644 "$OUT/www/health"
# From memory: the body as an nginx string ('…' with \ and ' escaped; it has no $ to expand).
! grep -q '\$' "$OUT/www/health" || { echo "the body has a \$: nginx would expand it" >&2; exit 1; }
nginx_conf "return 200 '$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" "$OUT/www/health" | tr -d '\n')\\n';"
kill -HUP "$NGINX"
for _ in $(seq 100); do
  [ "$(curl -s "http://127.0.0.1:$NGINX_PORT/health")" = "$(tr -d '\n' <"$OUT/www/health")" ] && break
  sleep 0.1
done
[ "$(curl -s "http://127.0.0.1:$NGINX_PORT/health")" = "$(tr -d '\n' <"$OUT/www/health")" ] ||
  { echo "nginx does not answer the body from memory" >&2; exit 1; }
echo "body: $(wc -c <"$OUT/www/health") bytes; headers: nginx $(curl -sI "http://127.0.0.1:$NGINX_PORT/health" | wc -c) B, vitals $(curl -sI "http://127.0.0.1:$AGENT_PORT/health" | wc -c) B"

side_probe() {   # url seconds: a fresh connection each second; prints the worst time (ms) or FAIL
  local times=""
  for _ in $(seq "$2"); do
    times+="$(curl -s -o /dev/null -m 5 -w '%{time_total}' "$1") " || { echo FAIL; return; }
    sleep 1
  done
  echo "$times" | awk '{for (i = 1; i <= NF; i++) if ($i > w) w = $i; printf "%.1f\n", w * 1000}'
}

echo "server,conns,rep,rps,p50_us,p90_us,p99_us,max_us,requests,socket_errors,non2xx,cpu_us_per_req,fresh_worst_ms" >"$OUT/http.csv"
secs=${DURATION%s}
for rep in $(seq "$REPS"); do
  for c in $CONNS; do
    order=$SERVERS
    [ $((rep % 2)) = 0 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for srv in $order; do
      case $srv in
        nginx) port=$NGINX_PORT pids="$NGINX $(pgrep -P "$NGINX" | tr '\n' ' ')" ;;
        vitals) port=$AGENT_PORT pids=$AGENT ;;
        poco) port=$POCO_PORT pids=$POCO ;;
      esac
      url="http://127.0.0.1:$port/health"
      log="$OUT/logs/wrk_${srv}_c${c}_r$rep.txt"
      # shellcheck disable=SC2086
      t0=$(proc_ticks $pids)
      side_probe "$url" $((secs - 2)) >"$log.fresh" &
      sp=$!
      wrk -t1 -c"$c" -d"$DURATION" --latency "$url" >"$log" 2>&1
      wait "$sp"
      # shellcheck disable=SC2086
      t1=$(proc_ticks $pids)
      echo "$srv,$c,$rep,$(python3 "$BENCH_DIR/wrkparse.py" "$log" $((t1 - t0)) "$TCK"),$(cat "$log.fresh")" >>"$OUT/http.csv"
      tail -n1 "$OUT/http.csv"
      sleep 1
    done
  done
done

python3 - "$OUT/http.csv" >"$OUT/table.md" <<'PY'
import csv, math, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
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
    per_rep = []
    for rep in sorted({r["rep"] for r in rows}):
        v = [float(r["rps"]) for r in rows if r["server"] == "vitals" and int(r["conns"]) == c and r["rep"] == rep]
        n = [float(r["rps"]) for r in rows if r["server"] == "nginx" and int(r["conns"]) == c and r["rep"] == rep]
        if v and n:
            per_rep.append(v[0] / n[0])
    ratios[c] = (statistics.median(per_rep), per_rep)
    pv = []
    for rep in sorted({r["rep"] for r in rows}):
        v = [float(r["rps"]) for r in rows if r["server"] == "vitals" and int(r["conns"]) == c and r["rep"] == rep]
        p = [float(r["rps"]) for r in rows if r["server"] == "poco" and int(r["conns"]) == c and r["rep"] == rep]
        if v and p:
            pv.append(v[0] / p[0])
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
    print(f"- c{c}: vitals/nginx = **{m:.2f}×** (median of per-repetition ratios {', '.join(f'{x:.2f}' for x in per)}; "
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
PY
cat "$OUT/table.md"
{
  echo "## 3. \`/health\` throughput: vitals against nginx serving the same bytes"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/http_throughput.sh\` (REPS=$REPS DURATION=$DURATION CONNS=\"$CONNS\"): \`wrk -t1 -cN -d$DURATION --latency\`,"
  echo "nginx 1 worker answering a $(wc -c <"$OUT/www/health")-byte copy of the agent's /health body from memory (\`return 200 '…'\`); medians over repetitions, the servers' order reversed every other one."
  echo "wrk shares the 2 vCPUs with the server. \"Fresh GET\": a new curl connection each second during each run."
  [ -n "${POCO_ANCHOR:-}" ] && echo "poco: the anchors' poco_health_server --mode tuned --threads 1024 --queued 4096 --nodelay (300-byte body)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section http "$OUT/section.md"
