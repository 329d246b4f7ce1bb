#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzing-client cases (sections 1-7, 9, 10)
# against ringcast's /echo endpoint, using kosoku (a native runner of the
# Autobahn case files, from PyPI), and checks every case's verdict.
#
#   tests/autobahn/run.sh                # all sections in expected.json
#   tests/autobahn/run.sh -i '6.*'       # extra kosoku arguments replace the selection
#
# Environment:
#   AUTOBAHN_OUT      report directory (default: target/autobahn); open
#                     index.html there for the full Autobahn report
#   AUTOBAHN_TIMEOUT  seconds the whole kosoku run may take (default: 1800)
#   AUTOBAHN_SHARDS   server shards (default: 2)
#   AUTOBAHN_PARALLEL cases run in parallel by kosoku (default: 1)
#
# Prints one line per failing case (expected vs. observed), then
# "N passed, M failed", and exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

out="${AUTOBAHN_OUT:-target/autobahn}"
limit="${AUTOBAHN_TIMEOUT:-1800}"
shards="${AUTOBAHN_SHARDS:-2}"
parallel="${AUTOBAHN_PARALLEL:-1}"
expected="$here/expected.json"

if ! command -v kosoku >/dev/null 2>&1; then
    echo "kosoku not found; installing it from PyPI (pip install kosoku)" >&2
    python3 -m pip install --quiet kosoku
    hash -r
fi
command -v kosoku >/dev/null 2>&1 || { echo "kosoku is still not on PATH after pip install" >&2; exit 2; }

echo "building ringcast (release)..." >&2
cargo build --release --quiet --bin ringcast

# Start the server on an ephemeral port and read its listening line.
coproc SERVER { exec target/release/ringcast serve --shards "$shards" --echo \
    --ws 127.0.0.1:0 --resp 127.0.0.1:0 --admin 127.0.0.1:0 --log warn; }
server_pid=$SERVER_PID
cleanup() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

line=""
if ! read -r -t 30 line <&"${SERVER[0]}"; then
    echo "ringcast did not print its listening line within 30 s" >&2
    exit 2
fi
ws="$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^ws=//p')"
[ -n "$ws" ] || { echo "no ws= in: $line" >&2; exit 2; }
echo "$line" >&2

# The case selection: arguments replace expected.json's include/exclude.
selection=()
if [ "$#" -gt 0 ]; then
    selection=("$@")
else
    while IFS= read -r arg; do selection+=("$arg"); done < <(python3 - "$expected" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
for c in spec["include"]:
    print("-i"); print(c)
for c in spec.get("exclude", []):
    print("-x"); print(c)
PY
)
fi

rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)
status=0
timeout --signal=INT --kill-after=30 "$limit" \
    kosoku -m fuzzingclient -p "$parallel" -o "$out" "${selection[@]}" "ws://$ws/echo" \
    > "$out/kosoku.log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))
echo "kosoku finished in ${elapsed}s (exit $status); log: $out/kosoku.log; report: $out/index.html" >&2
if [ "$status" = 124 ]; then
    echo "kosoku did not finish within ${limit}s (AUTOBAHN_TIMEOUT)" >&2
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "ringcast exited during the run" >&2
fi

# Judge every case from the report, whatever kosoku's exit status.
python3 - "$out" "$expected" "$#" <<'PY'
import json, os, sys

out, expected_path, custom = sys.argv[1], sys.argv[2], sys.argv[3] != "0"
spec = json.load(open(expected_path))
ok_b, ok_c = set(spec["pass_behavior"]), set(spec["pass_close"])
allowed = spec.get("allowed_failures", {})
index_path = os.path.join(out, "index.json")
if not os.path.exists(index_path):
    print("no index.json: kosoku wrote no report (see kosoku.log)")
    print("0 passed, 1 failed")
    sys.exit(1)
index = json.load(open(index_path))
key = lambda cid: [int(p) for p in cid.split(".")]

def short(v, n=300):
    s = json.dumps(v)
    return s if len(s) <= n else s[: n - 4] + " ..."

passed = failed = 0
for agent, cases in index.items():
    for cid in sorted(cases, key=key):
        e = cases[cid]
        good = e["behavior"] in ok_b and e["behaviorClose"] in ok_c
        if good or cid in allowed:
            passed += 1
            continue
        failed += 1
        detail = {}
        try:
            detail = json.load(open(os.path.join(out, e["reportfile"])))
        except OSError:
            pass
        print(f"FAIL {cid}: behavior={e['behavior']} close={e['behaviorClose']} "
              f"remoteCloseCode={e.get('remoteCloseCode')}")
        if detail:
            print(f"    {detail.get('description', '').strip()[:200]}")
            print(f"    result: {detail.get('result')}; close: {detail.get('resultClose')}")
            print(f"    expected: {short(detail.get('expected'))}")
            print(f"    received: {short(detail.get('received'))}")
            print(f"    expectedClose: {short(detail.get('expectedClose'))}")
            print(f"    remote close: {detail.get('remoteCloseCode')} {detail.get('remoteCloseReason')!r}; "
                  f"wasClean={detail.get('wasClean')} ({detail.get('wasNotCleanReason')})")
total = passed + failed
if not custom and total < spec["min_cases"]:
    print(f"only {total} cases reported; expected at least {spec['min_cases']} (run cut short?)")
    failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
