#!/bin/bash
# Runs the whole suite (unit and integration tests) and ends with the line
# CI reads: "N passed, N failed". Deno's own summary line is turned into it.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/berth-test.XXXXXX)
# tini -s makes the test run a subreaper that reaps every orphan: shims detach
# and containers' processes are reparented, and this machine's pid 1 does not
# reap, so without it every detached process a test ends would stay a zombie.
tini -s -- .tools/node_modules/deno/deno test -A --no-prompt "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# Deno colours its summary; strip the escapes before reading it.
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
rm -f "$log"
if [ -z "$summary" ]; then
  echo "test run ended without a summary (exit $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
passed=$(echo "$summary" | sed -E 's/.*\| ([0-9]+) passed.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*\| ([0-9]+) failed.*/\1/')
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$rc" = 0 ]
