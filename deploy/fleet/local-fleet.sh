#!/usr/bin/env bash
# Starts a fleet on this machine for trying it out: one redis-server and three routerd replicas
# sharing its ledger, all on loopback, in a temporary directory; Ctrl-C stops them all.
#   bash deploy/fleet/local-fleet.sh [ROUTERD]      (default ./build/bin/routerd)
# Replicas: gRPC 127.0.0.1:50061-50063, /metrics 127.0.0.1:9471-9473; Redis 127.0.0.1:6390 with a
# random password (in the temp dir). The config is deploy/fleet/fleet.yaml with these addresses.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUTERD="${1:-./build/bin/routerd}"
DIR="$(mktemp -d /tmp/routerd-fleet-XXXXXX)"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DIR/redis.pass"
printf 'requirepass %s\n' "$(cat "$DIR/redis.pass")" > "$DIR/routerd-ledger-auth.conf"
sed -e "s|^port 6379|port 6390|" -e "s|^dir /var/lib/redis|dir $DIR|" \
    -e "s|^include /etc/redis/routerd-ledger-auth.conf|include $DIR/routerd-ledger-auth.conf|" \
    deploy/redis.conf > "$DIR/redis.conf"
redis-server "$DIR/redis.conf" > "$DIR/redis.log" 2>&1 &
PIDS+=($!)
sed -e 's|address: "127.0.0.1:6379"|address: "127.0.0.1:6390"|' \
    -e "s|password_file: redis.pass .*|password_file: $DIR/redis.pass|" \
    deploy/fleet/fleet.yaml > "$DIR/fleet.yaml"
for n in 1 2 3; do
  "$ROUTERD" --config "$DIR/fleet.yaml" --port "5006$n" --metrics_port "947$n" > "$DIR/routerd$n.log" 2>&1 &
  PIDS+=($!)
done
echo "fleet: redis 127.0.0.1:6390, routerd 127.0.0.1:50061 50062 50063 (logs in $DIR); Ctrl-C stops"
wait
