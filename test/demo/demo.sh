#!/usr/bin/env bash
# make demo: a self-contained tour of nex on an embedded NATS server. Everything it starts
# it stops, and its data lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${DEMO_BIN:-$PWD/bin}"
PORT="${DEMO_PORT:-4333}"
DATA="$(mktemp -d "${TMPDIR:-/tmp}/nex-demo.XXXXXX")"
export NATS_URL="nats://127.0.0.1:$PORT" NEX_NAMESPACE=demo
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -INT "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }
id_of() { sed -nE 's/.*\[([^]]+)\] successfully started.*/\1/p'; }

say "A node with an embedded NATS server (JetStream on) and the native nexlet"
"$BIN/nex" node up --embedded --embedded.listen "127.0.0.1:$PORT" --data-dir "$DATA" --node-name demo --tags region=lab --log-level warn &
NODE_PID=$!
for _ in $(seq 100); do "$BIN/nex" node list 2>/dev/null | grep -q 'native(native,healthy)' && break; sleep 0.1; done
run "$BIN/nex" node list

say "A service: a ticker, restarted if it ever exits"
OUT=$(run "$BIN/nex" workload start --type native --lifecycle service --name ticker --tags region=lab \
  --start-request '{"uri":"file:///bin/sh","argv":["-c","i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]}')
echo "$OUT"; SVC=$(echo "$OUT" | id_of)

say "A job: runs once, keeps its exit code"
run "$BIN/nex" workload start --follow --type native --lifecycle job --name count \
  --start-request '{"uri":"file:///usr/bin/seq","argv":["1","3"]}'

say "A function: runs on each request to its trigger"
run "$BIN/nex" workload start --type native --lifecycle function --name greeter \
  --start-request '{"uri":"file:///bin/sh","argv":["-c","echo hello $(cat) from $NEX_TRIGGER_SUBJECT"],"triggers":["greet.*"]}'
run "$BIN/nex" workload trigger greet.world ada

say "What runs"
run "$BIN/nex" workload list --show-metadata

say "The service's output so far, and the events"
sleep 1
run "$BIN/nex" workload logs "$SVC" --tail 3
run "$BIN/nex" events --tail 8

say "Clone the service, stopping the original once the clone runs"
OUT=$(run "$BIN/nex" workload clone "$SVC" --stop)
echo "$OUT"; CLONE=$(echo "$OUT" | id_of)

say "No node can take this one, and each says why"
run "$BIN/nex" workload start --type native --lifecycle job --name nowhere --tags region=mars \
  --start-request '{"uri":"file:///bin/true"}' || true

say "Stop the clone: the reply comes when its processes are gone"
run "$BIN/nex" workload stop "$CLONE"

say "Drain the node: no new work, workloads stopped after 2s, then it exits"
NODE_ID=$("$BIN/nex" node list --json | sed -n 's/.*"node_id": "\(N[A-Z0-9]*\)".*/\1/p' | head -1)
run "$BIN/nex" node lameduck --node-id "$NODE_ID" --delay 2s
wait "$NODE_PID" 2>/dev/null || true
NODE_PID=""
say "Done: everything stopped and cleaned up"
