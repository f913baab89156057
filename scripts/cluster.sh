#!/usr/bin/env bash
# `make cluster`: a three-node seckill cluster on loopback, in the foreground.
#
# It builds seckill, makes the cluster's certificates with it (a CA once,
# then etcd's and each node's, under CLUSTER_DIR/certs), then starts etcd
# (TLS only, clients and peer: a client needs a certificate from that CA),
# redis-server (no persistence, protected mode on, the default user off and
# one ACL user "seckill" whose random password is made once and kept in
# CLUSTER_DIR/redis.pass, mode 0600), three `seckill nats` servers nats1..nats3 clustered into one JetStream
# cluster (clients on 127.0.0.1:NATS_PORT..NATS_PORT+2, routes on
# 127.0.0.1:NATS_ROUTE_PORT..+2, one client key for all three, fsync before
# every ack), and three `seckill serve --cluster` nodes, n1..n3 on
# 127.0.0.11..13 (HTTP :8080, peer :7946), with one admin token, which keep
# their streams on all three NATS servers (--nats-replicas 3). It prints the
# curl lines to try, then waits.
#
# Each process's pid is in CLUSTER_DIR/pids/NAME.pid (its own process
# group), so that one can be killed to watch the rest fail over: when a
# process dies on its own, the script says which, shows the end of its log
# and keeps the others running. Ctrl-C (or SIGTERM) stops the nodes first
# (each drains and leaves etcd), then NATS, Redis and etcd, and removes the
# data unless KEEP=1.
#
# Everything lives under CLUSTER_DIR (default ./cluster-data): bin/, certs/,
# etcd/, redis/ (and redis.pass), nats/ (nats1..nats3 and the shared
# client.nk), n1..n3/, logs/ and pids/. A directory kept with KEEP=1 is started again as it was (same
# items, same node names).
#
# Settings (environment): CLUSTER_DIR, KEEP=1, GO (default go),
# SECKILL_ADMIN_TOKEN (default: a random one), CLUSTER_IPS (default
# "127.0.0.11 127.0.0.12 127.0.0.13"), HTTP_PORT (8080), PEER_PORT (7946),
# ETCD_PORT (2379; etcd's peer port is the next one), REDIS_PORT (6379),
# NATS_PORT (4222, and the next two), NATS_ROUTE_PORT (6222, and the next
# two), PEER_TLS (1; 0 runs the peer wire with --insecure-cluster, to
# measure what TLS costs; etcd and Redis keep their credentials). Every
# address is on loopback.
set -euo pipefail

GO=${GO:-go}
CLUSTER_DIR=${CLUSTER_DIR:-./cluster-data}
KEEP=${KEEP:-0}
PEER_TLS=${PEER_TLS:-1}
read -r -a IPS <<<"${CLUSTER_IPS:-127.0.0.11 127.0.0.12 127.0.0.13}"
HTTP_PORT=${HTTP_PORT:-8080}
PEER_PORT=${PEER_PORT:-7946}
ETCD_PORT=${ETCD_PORT:-2379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
REDIS_PORT=${REDIS_PORT:-6379}
NATS_PORT=${NATS_PORT:-4222}
NATS_ROUTE_PORT=${NATS_ROUTE_PORT:-6222}
NATS_SERVERS=3 # JetStream's R3: a majority (2) keeps the streams writable
# READY_TIMEOUT bounds the wait for each process to be ready, in seconds;
# STOP_TIMEOUT the wait for each to exit after SIGTERM before SIGKILL.
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
MARK=.seckill-cluster # marks a directory this script made

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

for ip in "${IPS[@]}" 127.0.0.1; do
	[[ $ip == 127.* ]] || die "$ip is not a loopback address (127.0.0.0/8): this script only serves on loopback"
done
((${#IPS[@]} >= 1)) || die "CLUSTER_IPS is empty"
command -v "$GO" >/dev/null || die "$GO not found: Go 1.26 is required"
command -v etcd >/dev/null || die "etcd not found: run \`make deps\` (apt-get install etcd-server)"
command -v redis-server >/dev/null || die "redis-server not found: run \`make deps\` (apt-get install redis-server)"

# A directory that exists must be one this script made: it is removed at
# the end, and nothing else should be.
if [[ -e $CLUSTER_DIR ]]; then
	[[ -d $CLUSTER_DIR ]] || die "$CLUSTER_DIR exists and is not a directory"
	if [[ ! -e $CLUSTER_DIR/$MARK && -n $(ls -A "$CLUSTER_DIR") ]]; then
		die "$CLUSTER_DIR is not empty and was not made by this script: choose another CLUSTER_DIR"
	fi
	[[ -e $CLUSTER_DIR/$MARK && -d $CLUSTER_DIR/etcd ]] && say "starting again on the data kept in $CLUSTER_DIR"
fi
mkdir -p "$CLUSTER_DIR"/{bin,logs,pids}
touch "$CLUSTER_DIR/$MARK"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
LOGS=$CLUSTER_DIR/logs
PIDS_DIR=$CLUSTER_DIR/pids
rm -f "$PIDS_DIR"/*.pid # a kept directory's are of processes long gone
BIN=$CLUSTER_DIR/bin/seckill

if [[ -z ${SECKILL_ADMIN_TOKEN:-} ]]; then
	if [[ -s $CLUSTER_DIR/admin.token ]]; then
		SECKILL_ADMIN_TOKEN=$(<"$CLUSTER_DIR/admin.token")
	else
		SECKILL_ADMIN_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
	fi
fi
export SECKILL_ADMIN_TOKEN
(umask 077 && printf '%s\n' "$SECKILL_ADMIN_TOKEN" >"$CLUSTER_DIR/admin.token")

# Every child runs in a process group of its own (job control), so that
# stopping one stops all it may have started, and the terminal's Ctrl-C
# reaches this script alone, which then stops them in order.
set -m
NAMES=() PIDS=() GONE=() # GONE[i]=1 once NAMES[i] has exited and was reported
STOPPING=0

alive() {
	kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# pid_of NAME: the pid of the process started as NAME.
pid_of() {
	local i
	for i in "${!NAMES[@]}"; do
		[[ ${NAMES[i]} == "$1" ]] && { echo "${PIDS[i]}"; return 0; }
	done
	return 1
}

# stop_one NAME PID: SIGTERM its group, SIGKILL after STOP_TIMEOUT.
stop_one() {
	local name=$1 pid=$2 i
	alive "$pid" || return 0
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	say "$name did not stop within ${STOP_TIMEOUT}s: SIGKILL"
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# show_log NAME: the end of NAME's log, indented.
show_log() {
	tail -n 20 "$LOGS/$1.log" | sed 's/^/    /'
}

cleanup() {
	local code=${1:-0} i
	((STOPPING)) && return
	STOPPING=1
	trap '' INT TERM HUP
	set +m # no job notices while stopping
	if ((${#PIDS[@]} > 0)); then
		say "stopping: nodes first (each drains and leaves etcd), then NATS, Redis, etcd"
		# started in the order etcd, redis, nats1..3, nodes: stopped
		# backwards; one already gone is skipped (its pid may be reused)
		for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
			((${GONE[i]:-0})) || stop_one "${NAMES[i]}" "${PIDS[i]}"
			rm -f "$PIDS_DIR/${NAMES[i]}.pid"
		done
	fi
	if [[ $KEEP == 1 ]]; then
		say "kept $CLUSTER_DIR (data and logs); \`KEEP=1 make cluster\` starts it again, \`rm -r $CLUSTER_DIR\` forgets it"
	else
		rm -rf "$CLUSTER_DIR"/{bin,logs,pids,certs,etcd,redis,nats} "$CLUSTER_DIR"/n[0-9]* "$CLUSTER_DIR"/{admin.token,redis.pass}
		rm -f "$CLUSTER_DIR/$MARK"
		rmdir "$CLUSTER_DIR" 2>/dev/null || true
		say "stopped; removed $CLUSTER_DIR (KEEP=1 keeps it)"
	fi
	exit "$code"
}
trap 'cleanup 130' INT
trap 'cleanup 143' TERM
trap 'cleanup 129' HUP
trap 'cleanup $?' EXIT

# start NAME CMD...: run CMD in the background, output to logs/NAME.log,
# its pid in pids/NAME.pid.
start() {
	local name=$1
	shift
	"$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	NAMES+=("$name") PIDS+=("$!")
	echo "$!" >"$PIDS_DIR/$name.pid"
}

# ready NAME CHECK...: wait until CHECK succeeds, or fail if NAME died.
ready() {
	local name=$1 pid i
	pid=$(pid_of "$name")
	shift
	for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if ! alive "$pid"; then
			say "$name exited before it was ready; the end of $LOGS/$name.log:"
			show_log "$name"
			exit 1
		fi
		sleep 0.1
	done
	say "$name not ready within ${READY_TIMEOUT}s; the end of $LOGS/$name.log:"
	show_log "$name"
	exit 1
}

say "building seckill into $BIN"
"$GO" build -o "$BIN" ./cmd/seckill

# The cluster's certificates: the CA is made once (a kept directory keeps
# it); etcd's and the nodes' are made again on every start, so that they
# name the addresses of this run. A node proves itself to etcd with its own
# (serve --certs-dir), and etcd's serves as the operator's client
# certificate below.
CERTS=$CLUSTER_DIR/certs
[[ -s $CERTS/ca.crt ]] || "$BIN" cert create-ca --certs-dir "$CERTS"
"$BIN" cert create-node --certs-dir "$CERTS" --overwrite etcd 127.0.0.1 localhost >/dev/null
for i in "${!IPS[@]}"; do
	"$BIN" cert create-node --certs-dir "$CERTS" --overwrite "n$((i + 1))" "${IPS[i]}" localhost >/dev/null
done
say "certificates in $CERTS (CA, etcd, n1..n${#IPS[@]})"

# etcd speaks only TLS, to clients and to peers, and takes only clients
# with a certificate from the cluster's CA.
ETCD_URL=https://127.0.0.1:$ETCD_PORT
ETCD_PEER_URL=https://127.0.0.1:$ETCD_PEER_PORT
ETCD_TLS=(--cacert "$CERTS/ca.crt" --cert "$CERTS/node.etcd.crt" --key "$CERTS/node.etcd.key")
start etcd etcd --name seckill-cluster --data-dir "$CLUSTER_DIR/etcd" \
	--listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
	--listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
	--initial-cluster "seckill-cluster=$ETCD_PEER_URL" \
	--client-cert-auth --trusted-ca-file "$CERTS/ca.crt" \
	--cert-file "$CERTS/node.etcd.crt" --key-file "$CERTS/node.etcd.key" \
	--peer-client-cert-auth --peer-trusted-ca-file "$CERTS/ca.crt" \
	--peer-cert-file "$CERTS/node.etcd.crt" --peer-key-file "$CERTS/node.etcd.key"
ready etcd curl -fsS --max-time 1 "${ETCD_TLS[@]}" "$ETCD_URL/health"
say "etcd ready"

# Redis admits one ACL user. Its password is made once and kept (0600);
# it reaches redis-server in a config file and the nodes in their
# environment, never on a command line that ps shows. The default user is
# off and has no password at all, so that protected mode (on) turns no
# one away for it: the nodes dial from their own 127.0.0.1x addresses,
# which protected mode counts as remote.
REDIS_USER=seckill
REDIS_PASS_FILE=$CLUSTER_DIR/redis.pass
if [[ ! -s $REDIS_PASS_FILE ]]; then
	(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$REDIS_PASS_FILE")
fi
REDIS_PASS=$(<"$REDIS_PASS_FILE")
mkdir -p "$CLUSTER_DIR/redis"
(umask 077 && printf 'user default off resetpass nocommands\nuser %s on >%s ~* &* +@all\n' \
	"$REDIS_USER" "$REDIS_PASS" >"$CLUSTER_DIR/redis/redis.conf")
start redis redis-server "$CLUSTER_DIR/redis/redis.conf" --port "$REDIS_PORT" --bind 127.0.0.1 \
	--protected-mode yes --save '' --appendonly no --dir "$CLUSTER_DIR/redis"
ready redis grep -q 'Ready to accept connections' "$LOGS/redis.log"
say "redis ready"

# Three NATS servers, each routing to the other two. They share one client
# key (made by the first), so a node may connect to any of them.
#
# --sync always: a server fsyncs a write (its stream and its Raft log)
# before it acknowledges it, so an ack means a majority has it on disk.
# A SIGKILL of a server loses nothing either way (its writes are in the
# page cache, which outlives the process); what `always` adds is that an
# ack survives the power loss or OS crash of the machine(s) holding it,
# here all three at once. The price, one fsync per message on each server,
# is paid per batch: a relay puts many grabs in one message.
NATS_URLS=() ROUTES=()
for ((i = 0; i < NATS_SERVERS; i++)); do
	NATS_URLS+=("nats://127.0.0.1:$((NATS_PORT + i))")
	ROUTES+=("nats-route://127.0.0.1:$((NATS_ROUTE_PORT + i))")
done
NATS_CREDS=$CLUSTER_DIR/nats/client.nk
for ((i = 0; i < NATS_SERVERS; i++)); do
	name=nats$((i + 1)) others=()
	for ((j = 0; j < NATS_SERVERS; j++)); do
		((j == i)) || others+=("${ROUTES[j]}")
	done
	start "$name" "$BIN" nats --name "$name" --listen "127.0.0.1:$((NATS_PORT + i))" \
		--dir "$CLUSTER_DIR/nats/$name" --creds "$NATS_CREDS" --sync always \
		--cluster-listen "127.0.0.1:$((NATS_ROUTE_PORT + i))" --routes "$(IFS=,; echo "${others[*]}")"
	ready "$name" grep -q '^seckill nats: listening' "$LOGS/$name.log"
done
# JetStream answers once the servers have elected a meta leader: the first
# election of a new cluster needs all three up, later ones a majority.
for ((i = 1; i <= NATS_SERVERS; i++)); do
	ready "nats$i" grep -q '^seckill nats: JetStream meta leader' "$LOGS/nats$i.log"
done
say "nats1..nats$NATS_SERVERS ready: JetStream meta leader $(grep -h '^seckill nats: JetStream meta leader' "$LOGS/nats1.log" | tail -n 1 | awk '{print $NF}')"
NATS_URL=$(IFS=,; echo "${NATS_URLS[*]}")

FRONTS=()
for i in "${!IPS[@]}"; do
	node=n$((i + 1)) ip=${IPS[i]}
	PEER_ARGS=(--certs-dir "$CERTS")
	if [[ $PEER_TLS == 0 ]]; then
		PEER_ARGS=(--insecure-cluster --etcd-cert "$CERTS/node.$node.crt" --etcd-key "$CERTS/node.$node.key" --etcd-ca "$CERTS/ca.crt")
	fi
	SECKILL_REDIS="redis://$REDIS_USER:$REDIS_PASS@127.0.0.1:$REDIS_PORT" \
		start "$node" "$BIN" serve --data "$CLUSTER_DIR/$node" --http "$ip:$HTTP_PORT" \
		--cluster --node "$node" --etcd "$ETCD_URL" --peer "$ip:$PEER_PORT" "${PEER_ARGS[@]}" \
		--nats "$NATS_URL" --nats-creds "$NATS_CREDS" --nats-replicas "$NATS_SERVERS"
	FRONTS+=("http://$ip:$HTTP_PORT")
done
for i in "${!IPS[@]}"; do
	node=n$((i + 1))
	ready "$node" grep -q '^seckill: serving' "$LOGS/$node.log"
	say "$node ready on ${FRONTS[i]}"
done

A=${FRONTS[0]} B=${FRONTS[1 % ${#FRONTS[@]}]} C=${FRONTS[2 % ${#FRONTS[@]}]}
LAST=n${#IPS[@]}
cat <<EOF

seckill cluster: ${#IPS[@]} nodes, fronts ${FRONTS[*]}
  etcd $ETCD_URL (TLS; clients need a certificate from $CERTS/ca.crt)
  redis redis://$REDIS_USER:…@127.0.0.1:$REDIS_PORT (ACL user $REDIS_USER, password in $REDIS_PASS_FILE; protected mode on)
  nats $NATS_URL (nats1..nats$NATS_SERVERS, one JetStream cluster; streams R$NATS_SERVERS, fsync before ack)
  data and logs in $CLUSTER_DIR (logs/*.log), pids in $PIDS_DIR; admin token in $CLUSTER_DIR/admin.token
  certificates in $CERTS (seckill cert)

Try (in another terminal):

  TOKEN=$SECKILL_ADMIN_TOKEN
  curl -XPUT -H "Authorization: Bearer \$TOKEN" $A/admin/v1/items/sku1 -d '{"stock":1000,"shards":8,"per_user_limit":1}'
  curl -XPOST -H 'Idempotency-Key: k1' $B/v1/items/sku1/grab -d '{"user_id":"u1","qty":1}'
  curl -XPOST -H 'Idempotency-Key: k2' $C/v1/items/sku1/grab -d '{"user_id":"u2","qty":1}'
  curl $C/v1/items/sku1
  curl -H "Authorization: Bearer \$TOKEN" $B/admin/v1/items/sku1
  curl -H "Authorization: Bearer \$TOKEN" '$C/admin/v1/cluster/placement?item=sku1'
  curl -XPOST -H "Authorization: Bearer \$TOKEN" $A/admin/v1/cluster/shards/sku1/1/move -d '{"to":"$LAST"}'
  curl -XPOST -H "Authorization: Bearer \$TOKEN" $A/admin/v1/cluster/nodes/n2/drain
  curl -XPOST -H "Authorization: Bearer \$TOKEN" $A/admin/v1/cluster/nodes/n2/undrain
  curl -H "Authorization: Bearer \$TOKEN" $A/admin/v1/cluster/members
  curl -H "Authorization: Bearer \$TOKEN" $A/admin/v1/cluster/health
  etcdctl --endpoints $ETCD_URL ${ETCD_TLS[*]} get --prefix --keys-only /seckill/
  REDISCLI_AUTH=\$(cat $REDIS_PASS_FILE) redis-cli -p $REDIS_PORT --user $REDIS_USER --scan --pattern 'seckill:snap:*'
  kill -9 \$(cat $PIDS_DIR/$LAST.pid)      # a node dies: this script says so, the rest go on
  kill -9 \$(cat $PIDS_DIR/nats2.pid)   # a NATS server dies: the streams live on the other two
  SECKILL_ADMIN_TOKEN=\$TOKEN go run ./cmd/seckill bench --url $(IFS=,; echo "${FRONTS[*]}") --workload flash --users 20000 --stock 2000 --arrival 2s

Ctrl-C stops the cluster$([[ $KEEP == 1 ]] && echo " and keeps $CLUSTER_DIR" || echo " and removes $CLUSTER_DIR (KEEP=1 keeps it)").
EOF

# Wait until a signal. A process that exits on its own is reported and the
# others keep running, so that an operator can watch the cluster without
# it; once none is left there is nothing to watch.
set +m # every child is started: no job notices from here on
while :; do
	wait -n 2>/dev/null || true # our own report, not bash's "Killed" line
	((STOPPING)) && break
	left=0
	for i in "${!PIDS[@]}"; do
		((${GONE[i]:-0})) && continue
		if alive "${PIDS[i]}"; then
			left=$((left + 1))
			continue
		fi
		GONE[i]=1
		rm -f "$PIDS_DIR/${NAMES[i]}.pid"
		say "${NAMES[i]} (pid ${PIDS[i]}) exited on its own; the others keep running. The end of $LOGS/${NAMES[i]}.log:"
		show_log "${NAMES[i]}"
	done
	((left > 0)) || { say "every process has exited"; exit 1; }
done
