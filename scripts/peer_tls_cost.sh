#!/usr/bin/env bash
# What TLS on the peer wire costs: `make cluster` with and without it
# (PEER_TLS=1 / 0), the same durable closed loop through all three fronts,
# in alternating rounds, one cluster at a time. Loopback only.
#
#   bash scripts/peer_tls_cost.sh            # ROUNDS=2 DURATION=10s
set -euo pipefail
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
WORK=${WORK:-$(mktemp -d)}
export SECKILL_ADMIN_TOKEN=${SECKILL_ADMIN_TOKEN:-peer-tls-cost}
for ((r = 1; r <= ROUNDS; r++)); do
	order="1 0"
	((r % 2 == 0)) && order="0 1" # alternating, so that neither always goes first
	for tls in $order; do
		dir=$WORK/tls$tls
		rm -rf "$dir"
		CLUSTER_DIR=$dir PEER_TLS=$tls bash scripts/cluster.sh >"$WORK/cluster$tls.log" 2>&1 &
		pid=$!
		for _ in $(seq 600); do
			grep -q '^seckill cluster:' "$WORK/cluster$tls.log" && break
			kill -0 $pid 2>/dev/null || { cat "$WORK/cluster$tls.log"; exit 1; }
			sleep 0.2 # polling the script's output: it has no other signal
		done
		fronts=$(sed -n 's/^seckill cluster: .* fronts //p' "$WORK/cluster$tls.log" | tr ' ' ',')
		echo "== round $r, peer TLS $tls, fronts $fronts"
		"$dir/bin/seckill" bench --url "$fronts" --workload durable --duration "$DURATION" 2>&1 | tee "$WORK/bench-r$r-tls$tls.txt" | grep -E -A1 '^ +target' | tail -n 1 || true
		kill -TERM $pid
		wait $pid || true
	done
done
grep -E -h -A1 '^ +target' "$WORK"/bench-r*-tls1.txt | grep seckill | awk '{n++; s+=$5} END {printf "peer TLS on:  %d rounds, mean %.0f grabs/s\n", n, s/n}'
grep -E -h -A1 '^ +target' "$WORK"/bench-r*-tls0.txt | grep seckill | awk '{n++; s+=$5} END {printf "peer TLS off: %d rounds, mean %.0f grabs/s\n", n, s/n}'
echo "logs and reports in $WORK"
