package fence

import (
	"slices"
	"testing"

	"github.com/seckill/seckill/engine"
)

// TestPoolLedgerVerify: the ledger's rules, without etcd. Each case
// changes a fresh ledger of a 1000-unit, 4-shard item (500 in the pool,
// 125 initially on each shard).
func TestPoolLedgerVerify(t *testing.T) {
	cfg := item("it", 1000, 4)
	for _, c := range []struct {
		name   string
		change func(l *PoolLedger)
		ok     bool
	}{
		{name: "fresh", change: func(*PoolLedger) {}, ok: true},
		{name: "a grant", change: func(l *PoolLedger) { l.Pool -= 30; l.Sent[1] += 30 }, ok: true},
		{name: "a give-back beyond the grants (the initial allocation)", change: func(l *PoolLedger) { l.Pool += 100; l.Got[2] += 100 }, ok: true},
		{name: "frozen units are part of the stock", change: func(l *PoolLedger) { l.Stock += 40; l.Frozen += 40 }, ok: true},
		{name: "frozen units taken from the pool's account", change: func(l *PoolLedger) { l.Pool -= 40; l.Frozen += 40 }, ok: true},
		{name: "a unit out of thin air", change: func(l *PoolLedger) { l.Pool++ }},
		{name: "a grant not taken from the pool", change: func(l *PoolLedger) { l.Sent[0] += 5 }},
		{name: "frozen units not accounted", change: func(l *PoolLedger) { l.Frozen += 5 }},
		{name: "negative frozen, conserved", change: func(l *PoolLedger) { l.Frozen = -5; l.Pool += 5 }},
		{name: "more frozen than stock", change: func(l *PoolLedger) { l.Frozen = l.Stock + 1 }},
		{name: "negative pool, conserved", change: func(l *PoolLedger) { l.Pool -= 501; l.Sent[0] += 501 }},
		{name: "negative got, conserved", change: func(l *PoolLedger) { l.Got[3] = -1; l.Pool-- }},
		{name: "stock above the limit, conserved", change: func(l *PoolLedger) { l.Stock += engine.MaxStock; l.Pool += engine.MaxStock }},
		{name: "a shard missing", change: func(l *PoolLedger) { l.Sent = l.Sent[:3]; l.Got = l.Got[:3] }},
		{name: "another item's ledger", change: func(l *PoolLedger) { l.Item = "other" }},
	} {
		l := newPoolLedger(cfg)
		c.change(&l)
		err := l.Verify(cfg)
		if c.ok && err != nil || !c.ok && err == nil {
			t.Fatalf("%s: %+v: %v", c.name, l, err)
		}
		if !c.ok {
			wantErr(t, c.name, err, ErrRefused)
		}
	}
}

// TestPoolLedgerState: the engine's view leaves the frozen units out and
// shares no slice with the ledger.
func TestPoolLedgerState(t *testing.T) {
	cfg := item("it", 1000, 4)
	l := newPoolLedger(cfg)
	l.Pool -= 40
	l.Frozen += 40
	st := l.State()
	if st.Stock != 960 || st.Pool != 460 || !slices.Equal(st.Sent, l.Sent) || !slices.Equal(st.Got, l.Got) {
		t.Fatalf("state %+v of %+v", st, l)
	}
	st.Sent[0]++
	if l.Sent[0] != 0 {
		t.Fatal("State shares Sent with the ledger")
	}
	if _, err := engine.RestorePool(cfg, st); err == nil {
		t.Fatal("a changed state still verifies")
	}
}
