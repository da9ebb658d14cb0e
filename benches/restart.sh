#!/usr/bin/env bash
# Restart cost after a crash, on a day of fleet traffic (1,300 chargers × 24 h) in a local
# tansu broker: an uninterrupted run, then a run killed (SIGKILL) at 80 % of that time and
# restarted. Prints the restart's snapshot read time, the records it read again, and its
# total time. Needs tansu (scripts/test installs it). Usage: benches/restart.sh [CHARGERS]
set -euo pipefail
cd "$(dirname "$0")/.."
chargers=${1:-1300}
cargo build --release --quiet
evflow=target/release/evflow
work=$(mktemp -d)
trap 'kill $(cat "$work/tansu.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && { tansu broker --listener-url tcp://127.0.0.1:$port \
    --advertised-listener-url tcp://127.0.0.1:$port --storage-engine sqlite://tansu.db \
    >tansu.log 2>&1 & echo $! >tansu.pid; })
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
(cd "$work" && tansu topic create fleet --broker tcp://127.0.0.1:$port --partitions 4 >/dev/null)
$evflow simulate --chargers "$chargers" --hours 24 --out "$work/traffic.jsonl" --registry "$work/registry.json"
$evflow produce "$work/traffic.jsonl" --to "kafka://127.0.0.1:$port/fleet"
cat >"$work/dataflow.toml" <<TOML
name = "restart-bench"
[source]
kind = "kafka"
brokers = "127.0.0.1:$port"
topic = "fleet"
group = "unused"
[pipeline]
workers = 2
[output]
dir = "unused"
[metrics]
addr = ""
[registry]
path = "$work/registry.json"
TOML
url() { echo "kafka://127.0.0.1:$port/fleet?group=$1&stop=end"; }
start=$(date +%s.%N)
$evflow run "$work/dataflow.toml" --input "$(url ref)" --out "$work/ref" >/dev/null 2>"$work/ref.log"
full=$(echo "$(date +%s.%N) - $start" | bc)
echo "uninterrupted: ${full} s"
start=$(date +%s.%N)
$evflow run "$work/dataflow.toml" --input "$(url crash)" --out "$work/crash" >/dev/null 2>"$work/crash.log" &
pid=$!
sleep "$(echo "$full * 0.8" | bc)"
kill -9 $pid; wait $pid 2>/dev/null || true
echo "killed after $(echo "$(date +%s.%N) - $start" | bc) s"
start=$(date +%s.%N)
$evflow run "$work/dataflow.toml" --input "$(url crash)" --out "$work/crash" >"$work/restart.out" 2>"$work/restart.log"
echo "restart to the end: $(echo "$(date +%s.%N) - $start" | bc) s"
grep -o 'resuming from commit.*' "$work/restart.log" || echo "(no commit had been made)"
echo "snapshot size: $(du -sh "$work/crash/_state" | cut -f1)"
grep 'input lines' "$work/restart.out" | sed 's/^ */records read by the restart: /'
cmp <(cd "$work/ref" && cat anomalies.jsonl notifications.jsonl) \
    <(cd "$work/crash" && cat anomalies.jsonl notifications.jsonl) && echo "JSONL outputs identical"
