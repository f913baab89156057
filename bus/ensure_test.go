package bus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureIdempotent(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	if e.ClientURL() != "" {
		t.Fatalf("in-process server has client URL %q", e.ClientURL())
	}
	js := inProcess(t, e, Config{})
	ctx := context.Background()
	for _, cfg := range []Config{
		{}, // the same again
		{MaxDeliver: 7, BackOff: []time.Duration{time.Second, 3 * time.Second}, DuplicateWindow: time.Minute},
		{MaxDeliver: 2, BackOff: []time.Duration{}, AckWait: 20 * time.Second, DuplicateWindow: 5 * time.Minute},
		{},
	} {
		if err := Ensure(ctx, js, cfg); err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		want, _ := cfg.withDefaults()
		ci := consumerInfo(t, js, StreamGrabs, ConsumerOrders).Config
		if ci.MaxDeliver != want.MaxDeliver || !slices.Equal(ci.BackOff, want.BackOff) || ci.AckWait != want.AckWait ||
			ci.AckPolicy != jetstream.AckExplicitPolicy || ci.MaxAckPending != MaxAckPending {
			t.Fatalf("%+v: consumer has %+v", cfg, ci)
		}
		if sc := streamInfo(t, js, StreamGrabs).Config; sc.Duplicates != want.DuplicateWindow || sc.Storage != jetstream.FileStorage {
			t.Fatalf("%+v: GRABS has %+v", cfg, sc)
		}
	}
	for _, name := range []string{StreamGrabs, StreamDLQ, StreamAdvisories} {
		streamInfo(t, js, name)
	}
	consumerInfo(t, js, StreamAdvisories, ConsumerDLQCopier)
}

func TestConfigRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative max deliver":        {MaxDeliver: -1},
		"max deliver over limit":      {MaxDeliver: MaxMaxDeliver + 1},
		"more backoffs than delivers": {MaxDeliver: 2, BackOff: []time.Duration{time.Second, time.Second, time.Second}},
		"ack wait not backoff[0]":     {AckWait: time.Second},
		"zero backoff":                {BackOff: []time.Duration{time.Second, 0}, AckWait: time.Second},
		"negative ack wait":           {BackOff: []time.Duration{}, AckWait: -time.Second},
		"duplicate window past age":   {DuplicateWindow: GrabsMaxAge + 1},
		"negative replicas":           {Replicas: -1},
		"replicas over limit":         {Replicas: MaxReplicas + 1},
	} {
		if c, err := cfg.withDefaults(); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
}
