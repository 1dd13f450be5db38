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
# The table comes from bench/http_table.py, which also pools the CSVs of several runs.
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

python3 "$BENCH_DIR/http_table.py" "$OUT/http.csv" >"$OUT/table.md"
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
