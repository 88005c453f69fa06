#!/bin/bash
# What one request costs each process on the 2-core bench setup: the proxy's user and
# system CPU, the sink's CPU and how often it slept, wrk's CPU (bench/README.md,
# "Both cores are saturated").
#
# usage: bench/cost.sh URL PROXY_PID [PEERS_DIR]
#   URL        e.g. http://127.0.0.1:9100/hooks/expel (hookgate), :9200 nginx, :9300 haproxy
#   PROXY_PID  the process under test (nginx: its worker)
#   PEERS_DIR  holds post.lua and payload.json (default ../shared/bench)
# Needs a running `hookgate sink --listen 127.0.0.1:9000` (pinned to core 0 like wrk) and
# the proxy pinned to core 1, as bench/run.py runs them. One 5 s wrk run; interleave
# targets yourself (A B C A B C) and compare figures from the same rounds.
set -euo pipefail
URL=$1; P=$2; PEERS=${3:-$(dirname "$0")/../../shared/bench}
S=$(pgrep -f " sink --listen" | head -1)
[ -n "$S" ] || { echo "no sink running" >&2; exit 2; }
HZ=$(getconf CLK_TCK)
st() { awk '{print $14, $15}' "/proc/$1/stat"; }
sleeps() { awk '/^voluntary_ctxt_switches/{print $2}' "/proc/$1/status"; }
read -r pu0 ps0 < <(st "$P"); read -r su0 ss0 < <(st "$S"); c0=$(sleeps "$S")
out=$(cd "$PEERS" && /usr/bin/time -f "WRKCPU %U %S" taskset -c 0 wrk -t1 -c32 -d5s -s post.lua "$URL" 2>&1)
read -r pu1 ps1 < <(st "$P"); read -r su1 ss1 < <(st "$S"); c1=$(sleeps "$S")
n=$(echo "$out" | awk '/requests in/{print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
w=$(echo "$out" | awk '/WRKCPU/{print $2+$3}')
python3 - <<PY
n, hz = $n, $HZ
us = lambda ticks: ticks / hz / n * 1e6
print(f"req/s {$rps:.0f}  proxy user {us($pu1-$pu0):.2f} us  system {us($ps1-$ps0):.2f} us"
      f"  | sink {us($su1+$ss1-$su0-$ss0):.2f} us, sleeps/request {($c1-$c0)/n:.3f}"
      f"  | wrk {$w/n*1e6:.2f} us")
PY
