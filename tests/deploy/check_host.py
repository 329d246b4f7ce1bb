#!/usr/bin/env python3
"""Checks a host after `ansible-playbook site.yml`: live sysctls, the files the
roles installed, the rendered unit and config. One line per check, `ok` or
`FAIL`; exits 1 if any failed. Usage: check_host.py REPO VARS_JSON"""

import json
import os
import pwd
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(sys.argv[1])
VARS = json.loads(Path(sys.argv[2]).read_text())
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))


def sysctl_pairs(text):
    """`key = value` lines of a sysctl.d file, values whitespace-normalised."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip().lstrip("-").strip()] = " ".join(value.split())
    return out


def unit_directives(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


# --- Kernel settings: live and for boot ---------------------------------------
wanted = sysctl_pairs((REPO / "sysctl/99-ringcast.conf").read_text())
check("sysctl/99-ringcast.conf has settings", len(wanted) >= 15, f"{len(wanted)} keys")
for key, value in wanted.items():
    live = " ".join(Path("/proc/sys", key.replace(".", "/")).read_text().split())
    check(f"live {key} = {value}", live == value, f"live value is {live!r}")

installed = Path("/etc/sysctl.d/99-ringcast.conf").read_text()
check("/etc/sysctl.d/99-ringcast.conf holds the same settings", sysctl_pairs(installed) == wanted,
      f"{sysctl_pairs(installed)}")
check("/etc/sysctl.d/99-ringcast.conf says it is managed", "Ansible managed" in installed)
# `sysctl -p` is what boot does with the file: every line must be accepted.
p = subprocess.run(["sysctl", "-q", "-p", "/etc/sysctl.d/99-ringcast.conf"], capture_output=True, text=True)
check("sysctl -p accepts the installed file", p.returncode == 0, p.stderr.strip())

# --- Resource limits --------------------------------------------------------------
def limit_lines(text):
    return sorted(" ".join(l.split()) for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#"))

shipped = limit_lines((REPO / "sysctl/limits.conf").read_text())
got = limit_lines(Path("/etc/security/limits.d/ringcast.conf").read_text())
check("limits.d/ringcast.conf matches sysctl/limits.conf", got == shipped, f"{got} != {shipped}")
dropin = Path("/etc/systemd/system.conf.d/60-ringcast-limits.conf").read_text()
check("systemd DefaultLimitNOFILE raised", "\nDefaultLimitNOFILE=1024:1048576\n" in dropin, dropin)

# --- User, binary -----------------------------------------------------------------
try:
    user = pwd.getpwnam("ringcast")
    check("system user ringcast", 0 < user.pw_uid < 1000 and user.pw_shell.endswith("nologin"),
          f"uid {user.pw_uid}, shell {user.pw_shell}")
except KeyError:
    check("system user ringcast", False, "missing")
binary = Path("/usr/local/bin/ringcast")
src = Path(VARS["ringcast_binary_src"])
check("binary installed from the release build",
      binary.exists() and binary.read_bytes() == src.read_bytes() and os.access(binary, os.X_OK))

# --- Config file ------------------------------------------------------------------
config_text = Path("/etc/ringcast/ringcast.toml").read_text()
config = tomllib.loads(config_text)
expected = {
    "shards": 0, "ws": VARS["ringcast_ws"], "resp": VARS["ringcast_resp"], "admin": VARS["ringcast_admin"],
    "history": 256, "max_payload": VARS["ringcast_max_payload"], "max_rooms_per_conn": 1024,
    "max_members_per_room": 0, "outbound_limit": 1048576, "shutdown_timeout_ms": 5000, "log": "info",
    "admin_token": VARS["ringcast_admin_token"], "limits": VARS["ringcast_limits"],
}
check("ringcast.toml has exactly the server's keys and the inventory's values", config == expected,
      f"{config}")
check("ringcast.toml (it may hold secrets) is readable by the service's group only",
      (os.stat("/etc/ringcast/ringcast.toml").st_mode & 0o777) == 0o640)
check("ringcast.toml is not writable by the service user", (os.stat("/etc/ringcast/ringcast.toml").st_mode & 0o022) == 0
      and os.stat("/etc/ringcast/ringcast.toml").st_uid == 0)

# --- systemd unit -----------------------------------------------------------------
unit_path = Path("/etc/systemd/system/ringcast.service")
unit = unit_directives(unit_path.read_text())
want_unit = {
    "User": ["ringcast"], "Group": ["ringcast"],
    "ExecStart": ["/usr/local/bin/ringcast serve --config /etc/ringcast/ringcast.toml"],
    "Restart": ["always"], "LimitNOFILE": ["1048576"], "LimitMEMLOCK": ["64M"], "KillSignal": ["SIGTERM"],
    "NoNewPrivileges": ["yes"], "ProtectSystem": ["strict"], "ProtectHome": ["yes"], "PrivateTmp": ["yes"],
    "CapabilityBoundingSet": [""], "TimeoutStopSec": ["10"], "WantedBy": ["multi-user.target"],
}
for key, value in want_unit.items():
    check(f"unit {key}={value[0]}", unit.get(key) == value, f"got {unit.get(key)}")
check("unit sets no CPUAffinity (ringcast pins shards)", "CPUAffinity" not in unit)
wants = Path("/etc/systemd/system/multi-user.target.wants/ringcast.service")
check("unit enabled for boot", wants.is_symlink() and wants.resolve() == unit_path)

print(f"host: {sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
