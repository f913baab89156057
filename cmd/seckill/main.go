// Command seckill runs the flash-sale engine.
//
//	seckill serve [--data DIR] [--http ADDR] [--cluster --node NAME --etcd URL[,URL] --peer HOST:PORT --redis URL --nats URL --certs-dir DIR]
//	seckill cert create-ca --certs-dir DIR; seckill cert create-node --certs-dir DIR NAME HOST...
//
// One binary, embedded defaults: Pebble under --data, HTTP on --http.
// With --cluster the sale spreads over nodes: items live in etcd, each
// shard runs on the node etcd places it on (fenced by leases and the pool
// ledger in etcd), any front takes any grab, and shards move through
// Redis snapshots. Nodes speak to each other only over TLS 1.3 with
// certificates of the cluster's CA (--certs-dir, from `seckill cert`), and
// to etcd and Redis with credentials. `make cluster` runs three nodes on
// loopback.
package main

import (
	"context"
	"fmt"
	"os"
)

const usage = `usage: seckill <command> [flags]

commands:
  serve      run the engine, its HTTP API and the order pipeline
             (--cluster: shards spread over the nodes etcd lists, fenced
             by leases and the pool ledger in etcd, moved through Redis)
  orders     run order writers in their own process
  nats       run the embedded NATS server on its own (a cluster's shared stream;
             --cluster-listen --routes: one server of a JetStream cluster)
  reconcile  compare grabs, stream, orders and counters of a stopped node
  cert       make a cluster's CA and node certificates (create-ca, create-node)
  token      mint a buyer token (HS256) for --buyer-auth jwt: --user U --secret S [--ttl D]
  bench      measure seckill over HTTP beside a bare fasthttp handler
             (--url URL[,URL...]: a running server, or a cluster's fronts)
  chaos      seeded faults against a three-node cluster it starts, during
             flashes, each audited: kill -9 or SIGSTOP a node, cut it from
             etcd and NATS, wipe its disk, kill -9 a NATS server
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		serverGC()
		err = serve(context.Background(), os.Args[2:])
	case "orders":
		err = runOrders(context.Background(), os.Args[2:])
	case "nats":
		err = runNATS(context.Background(), os.Args[2:])
	case "reconcile":
		err = runReconcile(context.Background(), os.Args[2:])
	case "bench":
		err = runBench(context.Background(), os.Args[2:])
	case "chaos":
		err = runChaos(context.Background(), os.Args[2:])
	case "cert":
		err = runCert(os.Args[2:])
	case "token":
		err = runToken(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "seckill: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "seckill:", err)
		os.Exit(1)
	}
}
