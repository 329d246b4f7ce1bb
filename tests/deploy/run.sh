#!/usr/bin/env bash
# Real apply of ansible/site.yml to this machine (connection: local), then
# checks of what it did. It changes the machine: kernel settings, files under
# /etc, a system user. Run it as root on a disposable host or CI machine,
# after `cargo build --release`.
#
#   bash tests/deploy/run.sh
#
# Steps: install ansible and ansible-lint (pinned, into a virtualenv) when
# missing; ansible-lint --profile production; --syntax-check; a --check run;
# an apply with /proc/sys read-only (as in a container); the real apply; checks of live sysctls and installed files (check_host.py);
# `systemd-analyze verify` of the unit; a second apply that must change
# nothing; then the binary started the way the unit starts it, /healthz and
# /stats, and SIGTERM with exit 0.
#
# Environment: RINGCAST_BIN (default target/release/ringcast),
# RINGCAST_ANSIBLE_VENV (default ~/.cache/ringcast-ansible).
set -euo pipefail

ANSIBLE_VERSION=11.13.0        # ansible-core 2.18, runs on Python 3.11-3.13
ANSIBLE_LINT_VERSION=25.12.2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${RINGCAST_BIN:-$repo/target/release/ringcast}
venv=${RINGCAST_ANSIBLE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ringcast-ansible}
work=$(mktemp -d)
server_pid=
passed=0
failed=0
started=$(date +%s)

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
die() { echo "deploy test: $*" >&2; echo "deploy: $passed passed, $((failed + 1)) failed"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root: it applies the playbook to this machine"
[[ -x $bin ]] || die "no binary at $bin: run cargo build --release first"

step "ansible $ANSIBLE_VERSION and ansible-lint $ANSIBLE_LINT_VERSION"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('ansible') != '$ANSIBLE_VERSION' or m.version('ansible-lint') != '$ANSIBLE_LINT_VERSION')" 2>/dev/null; then
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "ansible==$ANSIBLE_VERSION" "ansible-lint==$ANSIBLE_LINT_VERSION" || die "pip install failed"
fi
export PATH="$venv/bin:$PATH"
ansible-playbook --version > "$work/version.txt" && head -1 "$work/version.txt"

cd "$repo/ansible"
export ANSIBLE_CONFIG="$repo/ansible/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 ANSIBLE_HOME="$work/ansible-home"

step "ansible-lint --profile production"
lint_cache_existed=; [[ -e .ansible ]] && lint_cache_existed=1
if ansible-lint --offline --profile production --nocolor site.yml roles/ group_vars/ > "$work/lint.log" 2>&1; then
    ok "ansible-lint production profile"
else
    cat "$work/lint.log"; fail "ansible-lint production profile"
fi
[[ -n $lint_cache_existed ]] || rm -rf .ansible   # ansible-lint's cache, made just now

# Ports that nothing else on this machine is using; the admin listener stays
# on loopback as in production.
read -r ws_port resp_port admin_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cat > "$work/inventory.ini" <<INI
[ringcast]
localhost ansible_connection=local ansible_python_interpreter=$venv/bin/python ansible_become=false
INI
cat > "$work/vars.json" <<JSON
{
  "ringcast_binary_src": "$bin",
  "ringcast_ws": "127.0.0.1:$ws_port",
  "ringcast_resp": "127.0.0.1:$resp_port",
  "ringcast_admin": "127.0.0.1:$admin_port",
  "ringcast_max_payload": 65536,
  "ringcast_admin_token": "deploy-t0ken",
  "ringcast_limits": {"publish_rate": 50, "max_message_chars": 1000}
}
JSON
playbook() { ansible-playbook -i "$work/inventory.ini" -e "@$work/vars.json" site.yml "$@"; }
# "localhost : ok=41 changed=0 unreachable=0 failed=0 ..." → the named count.
recap() { grep -E '^localhost +: ' "$1" | tail -1 | grep -oE "$2=[0-9]+" | cut -d= -f2; }

step "ansible-playbook --syntax-check"
if playbook --syntax-check > "$work/syntax.log" 2>&1; then ok "syntax check"; else cat "$work/syntax.log"; fail "syntax check"; fi

step "check mode"
if playbook --check > "$work/check.log" 2>&1 && [[ $(recap "$work/check.log" failed) == 0 ]]; then
    ok "--check run"
else
    cat "$work/check.log"; fail "--check run"
fi

step "apply where /proc/sys is read-only, as in a container"
# A private mount namespace with /proc/sys read-only: the role must skip the
# kernel settings, say so, leave them alone, install everything else, and let
# the doctor report what is left. somaxconn is set low first so there is
# something to leave alone (the real apply below fixes it).
ro_proc_sys='mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"'
if unshare --mount --propagation private -- bash -c "$ro_proc_sys" _ true 2> /dev/null; then
    echo 4096 > /proc/sys/net/core/somaxconn
    if unshare --mount --propagation private -- bash -c "$ro_proc_sys" _ \
        ansible-playbook -i "$work/inventory.ini" -e "@$work/vars.json" site.yml > "$work/container.log" 2>&1 \
        && [[ $(recap "$work/container.log" failed) == 0 ]]; then
        ok "apply with read-only /proc/sys succeeds"
    else
        cat "$work/container.log"; fail "apply with read-only /proc/sys succeeds"
    fi
    flat=$(tr -s ' \n' '  ' < "$work/container.log")
    if [[ $flat == *"Skipping net.core.somaxconn, "*"read-only or missing under /proc/sys"* ]]; then
        ok "says which kernel settings it skipped"
    else
        fail "says which kernel settings it skipped"
    fi
    if [[ $(cat /proc/sys/net/core/somaxconn) == 4096 ]]; then ok "left read-only settings alone"; else fail "left read-only settings alone"; fi
    if [[ $flat == *"Low here: "*"net.core.somaxconn 4096 (wants 65535)"* ]]; then
        ok "doctor reports the setting the role could not apply, without failing the play"
    else
        fail "doctor reports the setting the role could not apply, without failing the play"
    fi
else
    echo "skip read-only /proc/sys run: no mount namespaces here"
fi

step "apply"
if playbook > "$work/apply1.log" 2>&1 && [[ $(recap "$work/apply1.log" failed) == 0 ]]; then
    ok "first apply ($(recap "$work/apply1.log" changed) changed)"
else
    cat "$work/apply1.log"; die "first apply failed"
fi
# What the roles said about this host: skipped settings, the doctor's verdict.
awk '/^TASK \[[a-z]+ : (Say|Show|Fail on)/ {show = 1} /^$/ {show = 0} show' "$work/apply1.log"

step "what the apply left on this host"
if python3 "$repo/tests/deploy/check_host.py" "$repo" "$work/vars.json"; then
    ok "host state"
else
    fail "host state"
fi

if ! command -v systemd-analyze > /dev/null && command -v apt-get > /dev/null; then
    # Only the tools: without systemd as PID 1 nothing starts from it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd > /dev/null 2>&1 || true
fi
if command -v systemd-analyze > /dev/null; then
    if systemd-analyze verify /etc/systemd/system/ringcast.service > "$work/verify.log" 2>&1; then
        ok "systemd-analyze verify ringcast.service"
    else
        cat "$work/verify.log"; fail "systemd-analyze verify ringcast.service"
    fi
else
    echo "skip systemd-analyze verify: systemd-analyze not installable here"
fi

step "second apply changes nothing"
if playbook > "$work/apply2.log" 2>&1 && [[ $(recap "$work/apply2.log" failed) == 0 ]]; then
    changed=$(recap "$work/apply2.log" changed)
    if [[ $changed == 0 ]]; then
        ok "second apply: changed=0"
    else
        grep -B2 -E '^changed:' "$work/apply2.log" | head -40; fail "second apply: changed=$changed"
    fi
else
    cat "$work/apply2.log"; fail "second apply failed"
fi

step "start ringcast the way the unit does"
unit=/etc/systemd/system/ringcast.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
group=$(sed -n 's/^Group=//p' "$unit")
# NoNewPrivileges=yes and User=/Group= as systemd applies them; the unit's
# LimitNOFILE= is tried, and kept as is where this machine caps it.
launch=(setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs --)
read -r -a argv <<< "$exec_start"
limit=$(sed -n 's/^LimitNOFILE=//p' "$unit")
if prlimit --nofile="$limit:$limit" true 2> /dev/null; then
    launch=(prlimit --nofile="$limit:$limit" -- "${launch[@]}")
else
    echo "note: this machine caps open files below LimitNOFILE=$limit; starting with $(ulimit -Hn)"
fi
( cd / && exec "${launch[@]}" "${argv[@]}" ) > "$work/server.log" 2>&1 &
server_pid=$!
admin="http://127.0.0.1:$admin_port"
healthy=
for _ in $(seq 1 100); do   # 100 × 0.1 s
    kill -0 "$server_pid" 2>/dev/null || break
    if [[ $(python3 -c "import urllib.request as u; print(u.urlopen('$admin/healthz', timeout=1).read().decode().strip())" 2>/dev/null) == ok ]]; then
        healthy=1; break
    fi
    sleep 0.1
done
if [[ -n $healthy ]]; then ok "/healthz answers ok"; else cat "$work/server.log"; fail "/healthz answers ok"; fi

if [[ -n $healthy ]]; then
    # The inventory sets an admin token: without it /stats is refused.
    code=$(python3 -c "
import urllib.request as u, urllib.error as e
try: print(u.urlopen('$admin/stats', timeout=2).status)
except e.HTTPError as x: print(x.code)" 2>/dev/null)
    if [[ $code == 401 ]]; then ok "/stats without the admin token is 401"; else fail "/stats without the admin token is 401 (got $code)"; fi
    bearer="{'Authorization': 'Bearer deploy-t0ken'}"
    if python3 -c "import json, urllib.request as u; json.load(u.urlopen(u.Request('$admin/stats', headers=$bearer), timeout=2))" 2>/dev/null; then
        ok "/stats is JSON"
    else
        fail "/stats is JSON"
    fi
    if python3 -c "
import re, sys, urllib.request as u
body = u.urlopen(u.Request('$admin/metrics', headers=$bearer), timeout=2).read().decode()
samples = [l for l in body.splitlines() if l and not l.startswith('#')]
sys.exit(not samples or not all(re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[^}]*\\})? \\S+', l) for l in samples))
" 2>/dev/null; then
        ok "/metrics is Prometheus text"
    else
        fail "/metrics is Prometheus text"
    fi
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")
    if [[ $uid == $(id -u "$user") ]]; then ok "runs as $user"; else fail "runs as $user (uid $uid)"; fi
    read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' "/proc/$server_pid/limits")
    if [[ $soft == "$hard" ]]; then ok "raised its soft fd limit to the hard limit ($hard)"; else fail "fd limit soft $soft, hard $hard"; fi
fi

step "SIGTERM shuts down cleanly"
if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
        fail "still running 10 s after SIGTERM"
    else
        set +e; wait "$server_pid"; rc=$?; set -e
        if [[ $rc == 0 ]]; then ok "exit 0 after SIGTERM"; else tail -20 "$work/server.log"; fail "exit $rc after SIGTERM"; fi
    fi
    server_pid=
else
    fail "server not running at SIGTERM time"
fi

echo
echo "took $(($(date +%s) - started)) s"
echo "deploy: $passed passed, $failed failed"
[[ $failed == 0 ]]
