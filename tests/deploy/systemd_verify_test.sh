#!/bin/bash
# deploy/routerd.service, with its drop-ins (deploy/routerd.service.d/), passes `systemd-analyze
# verify`, its sandbox keeps the exposure score of `systemd-analyze security` at or below 1.5 (of
# 10), and its stop timeout covers the config's shutdown drain and grace.
#
# verify checks that ExecStart's binary exists, and /usr/local/bin/routerd is not installed on a
# build machine, so the unit is verified as a copy whose ExecStart names the routerd just built:
# every other line is the shipped one.
# usage: systemd_verify_test.sh ROUTERD UNIT CONFIG
set -u
routerd="$1"
unit="$2"
config="$3"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (deploy/install-deps.sh installs systemd)"
grep -q '^ExecStart=/usr/local/bin/routerd ' "$unit" || fail "$unit: ExecStart is not /usr/local/bin/routerd"
sed "s#^ExecStart=/usr/local/bin/routerd #ExecStart=$routerd #" "$unit" >"$tmp/routerd.service"
grep -q "^ExecStart=$routerd " "$tmp/routerd.service" || fail "ExecStart was not rewritten"
# The secure setup's drop-in (deploy/routerd.service.d/), verified and scored with the unit.
if [ -d "$unit.d" ]; then
  cp -r "$unit.d" "$tmp/routerd.service.d"
fi

systemd-analyze verify "$tmp/routerd.service" >"$tmp/verify" 2>&1 ||
  fail "systemd-analyze verify: $(cat "$tmp/verify")"
# verify exits 0 on some warnings; any line it prints about the unit is a finding.
if grep -q 'routerd.service' "$tmp/verify"; then fail "systemd-analyze verify: $(cat "$tmp/verify")"; fi

# --threshold is on the 0-100 scale behind the 0-10 score printed (15 = 1.5).
systemd-analyze security --offline=true --threshold=15 "$tmp/routerd.service" >"$tmp/security" 2>&1 ||
  fail "systemd-analyze security: exposure above 1.5: $(tail -1 "$tmp/security")"

shutdown_key() {  # shutdown_key NAME: the value of shutdown.NAME in the config
  awk -v key="$1:" '/^shutdown:/ {in_s=1; next} /^[^ #]/ {in_s=0} in_s && $1 == key {print $2}' "$config"
}
drain="$(shutdown_key drain_s)"
grace="$(shutdown_key grace_s)"
[ -n "$drain" ] && [ -n "$grace" ] || fail "$config: no shutdown.drain_s or shutdown.grace_s"
stop="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")"
[ -n "$stop" ] || fail "$unit: TimeoutStopSec is not a number of seconds"
awk -v d="$drain" -v g="$grace" -v s="$stop" 'BEGIN { exit !(s >= d + g + 5) }' ||
  fail "TimeoutStopSec=$stop does not cover shutdown.drain_s=$drain + grace_s=$grace + 5 s for the last batch and gRPC"
echo "PASS: $(tail -1 "$tmp/security")"
