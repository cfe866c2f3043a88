#!/bin/bash
# `make stress`: the long forms of the reliability suite (BERTH_STRESS=1):
# 100k cases per fuzzer, a 2 GiB gzip bomb, a layer of 1 million entries,
# 30 daemon SIGKILLs under load per shim, 500 container cycles at
# concurrency 20, 100 MB of output from each of 20 containers, 1,000
# events/s to 10 subscribers, 100 containers at 256 fds.
# Each case prints one summary line of what it did and what it found; the
# full output goes to a log whose path is printed. Extra arguments go to
# `deno test` (e.g. --filter). BERTH_FUZZ_SEED replays a fuzzer's run.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/berth-stress.XXXXXX)
echo "make stress: full output in $log"
BERTH_STRESS=1 tini -s -- .tools/node_modules/deno/deno test -A --no-prompt \
  tests/fuzz_input_test.ts tests/fuzz_rpc_test.ts tests/hostile_layers_test.ts \
  tests/load_test.ts tests/faults_test.ts tests/crash_test.ts "$@" >"$log" 2>&1
rc=$?
sed 's/\x1b\[[0-9;]*m//g' "$log" |
  grep -E '^(fuzz [a-z-]+: [0-9]+ cases|fuzz rpc:|hostile layers: |load [a-z]+: |crash restarts |fault [a-z0-9-]+( \([^)]*\))?: |(ok|FAILED) \| )'
exit $rc
