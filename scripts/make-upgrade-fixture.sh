#!/usr/bin/env bash
# Makes the upgrade fixture (crates/sotto-cli/tests/fixtures/upgrade-*):
# a server's data and two profiles with a one-to-one conversation and a
# group, made by the binaries in BIN_DIR (build them from the release the
# fixture stands for, e.g. `git worktree add /tmp/old v0.x && cd /tmp/old
# && cargo build -p sotto-cli -p sotto-server`).
#
#   scripts/make-upgrade-fixture.sh BIN_DIR OUT_DIR
#
# The server listens on a fixed port (written to OUT_DIR/port): the
# profiles keep the server's address, port included.
set -euo pipefail
bin=$(cd "$1" && pwd)
out=$2
port=${FIXTURE_PORT:-39421}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
export SOTTO_PASSPHRASE="test passphrase"

log=$(mktemp)
"$bin/sotto-server" --data "$out/server" --listen "127.0.0.1:$port" > "$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q '^address: ' "$log" && break; sleep 0.1; done
address=$(sed -n 's/^address: //p' "$log")
first=$(sed -n 's/^invite: //p' "$log")

sotto() { local who=$1; shift; "$bin/sotto" --profile "$out/profile-$who" "$@" < /dev/null; }
sotto alice init --server "$address" --name alice --invite "$first" --auto-accept
second=$("$bin/sotto-server" invite --data "$out/server" | sed -n 's/^invite: //p')
sotto bob init --server "$address" --name bob --invite "$second" --auto-accept

sotto alice send @bob "written before the upgrade"
sotto bob receive > /dev/null
sotto bob send @alice "answered before the upgrade"
sotto alice receive > /dev/null
sotto alice group create old @bob
sotto alice send '#old' "a group from before"
sotto bob receive > /dev/null
sotto bob send '#old' "bob in the old group"
sotto alice receive > /dev/null

kill -TERM $server
wait $server 2>/dev/null || true
echo "$port" > "$out/port"
"$bin/sotto" --version > "$out/made-by" 2>/dev/null || echo "unknown" > "$out/made-by"
echo "fixture in $out (made by $(cat "$out/made-by"))"
