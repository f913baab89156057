package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/bus"
)

// TestNATSFlags: `seckill nats` refuses a route listener or a route off
// loopback, and an incomplete or malformed cluster, before it starts
// anything; a whole cluster's flags become the server's options.
func TestNATSFlags(t *testing.T) {
	cluster := []string{"--dir", "d", "--name", "nats1", "--cluster-listen", "127.0.0.1:6222",
		"--routes", "nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224"}
	with := func(flag, value string) []string {
		args := slices.Clone(cluster)
		i := slices.Index(args, flag)
		if i < 0 {
			return append(args, flag, value)
		}
		args[i+1] = value
		return args
	}
	for _, tc := range []struct {
		name     string
		args     []string
		loopback bool // refused as off loopback
	}{
		{"cluster listen on every interface", with("--cluster-listen", ":6222"), true},
		{"cluster listen on 0.0.0.0", with("--cluster-listen", "0.0.0.0:6222"), true},
		{"cluster listen on [::]", with("--cluster-listen", "[::]:6222"), true},
		{"cluster listen on a private address", with("--cluster-listen", "10.1.2.3:6222"), true},
		{"cluster listen by host name", with("--cluster-listen", "nats1.example:6222"), true},
		{"route off loopback", with("--routes", "nats-route://127.0.0.1:6223,nats-route://192.168.0.9:6224"), true},
		{"cluster listen without a port", with("--cluster-listen", "127.0.0.1"), false},
		{"no server name", with("--name", ""), false},
		{"no routes", with("--routes", ""), false},
		{"route not a route URL", with("--routes", "127.0.0.1:6223"), false},
		{"routes without cluster listen", []string{"--routes", "nats-route://127.0.0.1:6223"}, false},
		{"sync neither always nor a duration", with("--sync", "sometimes"), false},
		{"sync zero", with("--sync", "0s"), false},
		{"stray argument", append(slices.Clone(cluster), "extra"), false},
	} {
		_, err := natsFlags(tc.args)
		if err == nil {
			t.Errorf("%s: accepted %q", tc.name, tc.args)
			continue
		}
		if errors.Is(err, bus.ErrNotLoopback) != tc.loopback {
			t.Errorf("%s: %v (want off-loopback refusal: %v)", tc.name, err, tc.loopback)
		}
	}

	opts, err := natsFlags(append(slices.Clone(cluster), "--sync", "always", "--creds", "shared.nk", "--cluster-name", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	c := opts.Cluster
	if c == nil || c.Name != "c1" || c.Listen != "127.0.0.1:6222" || len(c.Routes) != 2 ||
		opts.Name != "nats1" || !opts.SyncAlways || opts.CredsFile != "shared.nk" || opts.StoreDir != "d" {
		t.Fatalf("cluster flags gave %+v, cluster %+v", opts, c)
	}
	opts, err = natsFlags([]string{"--dir", "d", "--sync", "250ms"})
	if err != nil || opts.Cluster != nil || opts.SyncAlways || opts.SyncInterval != 250*time.Millisecond {
		t.Fatalf("single server: %+v, %v", opts, err)
	}
	opts, err = natsFlags(nil)
	if err != nil || opts.SyncAlways || opts.SyncInterval != bus.SyncInterval || !strings.HasSuffix(opts.Listen, ":4222") {
		t.Fatalf("defaults: %+v, %v", opts, err)
	}
}

// TestNATSReplicasFlag: --nats-replicas is 1..bus.MaxReplicas, and more
// than 1 only with an external --nats (the embedded server is alone).
func TestNATSReplicasFlag(t *testing.T) {
	for _, tc := range []struct {
		n   int
		url string
		ok  bool
	}{
		{1, "", true},
		{3, "nats://127.0.0.1:4222,nats://127.0.0.1:4223", true},
		{bus.MaxReplicas, "nats://127.0.0.1:4222", true},
		{3, "", false},
		{0, "nats://127.0.0.1:4222", false},
		{bus.MaxReplicas + 1, "nats://127.0.0.1:4222", false},
	} {
		if err := checkNATSReplicas(tc.n, tc.url); (err == nil) != tc.ok {
			t.Errorf("%d replicas, --nats %q: %v", tc.n, tc.url, err)
		}
	}
}
