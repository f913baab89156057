package fence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/seckill/seckill/internal/testproc"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startEtcd runs a real etcd on free loopback ports (testproc.Etcd),
// killed when the test ends, and returns its address.
func startEtcd(t *testing.T) string {
	t.Helper()
	url, _ := testproc.Etcd(t)
	return url
}

// dial returns a client of the etcd at url, closed when the test ends
// (before the etcd is killed: cleanups run last-in first-out).
func dial(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("dial etcd: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// ctxFor is a context bounded for one test step.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitKeyDeleted returns once key is deleted at or after rev, as a watch
// reports it; it fails the test after d.
func waitKeyDeleted(t *testing.T, cli *clientv3.Client, key string, rev int64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for wr := range cli.Watch(ctx, key, clientv3.WithRev(rev)) {
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return
			}
		}
	}
	t.Fatalf("%s not deleted within %v", key, d)
}

// join makes a node with the shortest lease the rules allow.
func join(t *testing.T, cli *clientv3.Client, id string) *Lease {
	t.Helper()
	l, err := Join(ctxFor(t, 10*time.Second), cli, NodeInfo{ID: id, Addr: "127.0.0.1:1"}, MinLeaseTTL)
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.Leave(ctx)
	})
	return l
}

// expire stops l's keep-alives (as a crash would) and returns once etcd has
// deleted its node key.
func expire(t *testing.T, cli *clientv3.Client, l *Lease) {
	t.Helper()
	resp, err := cli.Get(ctxFor(t, time.Second), nodeKey(l.Node().ID))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	waitKeyDeleted(t, cli, nodeKey(l.Node().ID), resp.Header.Revision+1, MinLeaseTTL+5*time.Second)
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}
