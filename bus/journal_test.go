package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seckill/seckill/engine"
)

func journalOn(t *testing.T) *Journal {
	t.Helper()
	e := startServer(t, t.TempDir(), "")
	nc, err := e.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	j, err := EnsureJournal(context.Background(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJournalFencesTheOldOwner: an owner appends after its marker; a new
// owner's takeover folds every round of the old one, and from then on the
// old owner's appends are refused (ErrFenced), while the new one's go in.
func TestJournalFencesTheOldOwner(t *testing.T) {
	ctx := context.Background()
	j := journalOn(t)
	cfg := engine.ItemConfig{Item: "sku.1", Stock: 100, Shards: 2, PerUserLimit: 1}
	tk, err := j.Takeover(ctx, cfg, 1, 1, "n1")
	snap, at := tk.Snap, tk.At
	if err != nil || len(tk.Refused) != 0 || tk.Prev != "n1" || snap.Counters != engine.ClusterStart(cfg, 1) {
		t.Fatalf("first takeover: %+v err %v", tk, err)
	}
	c := snap.Counters
	c.Received, c.Allocated = 10, 10
	var last = at
	for seq := uint64(1); seq <= 3; seq++ {
		c.Sold, c.NextSeq = int64(seq), seq+1
		rs := []engine.Record{{Kind: engine.RecGrab, Item: cfg.Item, Shard: 1, Grab: engine.Grab{Item: cfg.Item, Shard: 1, Seq: seq, User: "u" + string(rune('0'+seq)), Qty: 1}, Counters: c}}
		if seq == 1 {
			rc := c
			rc.Sold, rc.NextSeq = 0, 1
			rs = append([]engine.Record{{Kind: engine.RecCounters, Item: cfg.Item, Shard: 1, Counters: rc}}, rs...)
		}
		a := []Append{{Item: cfg.Item, Shard: 1, Expect: last, Data: engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryRound, Prev: last, Epoch: 1, Node: "n1", Records: rs})}}
		j.AppendAll(ctx, a)
		if a[0].Err != nil {
			t.Fatalf("append %d: %v", seq, a[0].Err)
		}
		last = a[0].Seq
	}
	// A message that is no entry, on the shard's subject: refused by the
	// fold, never applied.
	a := []Append{{Item: cfg.Item, Shard: 1, Expect: last, Data: []byte("garbage")}}
	j.AppendAll(ctx, a)
	if a[0].Err != nil {
		t.Fatal(a[0].Err)
	}
	tk2, err := j.Takeover(ctx, cfg, 1, 2, "n2")
	snap2, at2 := tk2.Snap, tk2.At
	if err != nil || len(tk2.Refused) != 1 || tk2.Prev != "n1" || snap2.Counters.NextSeq != 4 || len(snap2.Grabs) != 3 || snap2.Epoch != 2 {
		t.Fatalf("second takeover: %+v err %v", tk2, err)
	}
	// The old owner, unaware, appends after what it last saw.
	c.Sold, c.NextSeq = 4, 5
	old := []Append{{Item: cfg.Item, Shard: 1, Expect: last, Data: engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryRound, Prev: last, Epoch: 1, Node: "n1",
		Records: []engine.Record{{Kind: engine.RecGrab, Grab: engine.Grab{Seq: 4, User: "u4", Qty: 1}, Counters: c}}})}}
	j.AppendAll(ctx, old)
	if !errors.Is(old[0].Err, ErrFenced) {
		t.Fatalf("old owner's append after the takeover: %v, want ErrFenced", old[0].Err)
	}
	// n2 tries again at the same epoch (its first activation failed after
	// its marker): the incarnation before is still n1's.
	if tk3, err := j.Takeover(ctx, cfg, 1, 2, "n2"); err != nil || tk3.Prev != "n1" {
		t.Fatalf("second try of the takeover: %+v %v", tk3, err)
	} else {
		at2 = tk3.At
	}
	// A takeover of an older epoch than the journal's last marker is
	// refused without appending anything: the owner's next append goes in.
	if _, err := j.Takeover(ctx, cfg, 1, 1, "n1"); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("stale takeover: %v, want ErrSuperseded", err)
	}
	c2 := snap2.Counters
	c2.Sold, c2.NextSeq = c2.Sold+1, c2.NextSeq+1
	next := []Append{{Item: cfg.Item, Shard: 1, Expect: at2, Data: engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryRound, Prev: at2, Epoch: 2, Node: "n2",
		Records: []engine.Record{{Kind: engine.RecGrab, Grab: engine.Grab{Seq: 4, User: "u9", Qty: 1}, Counters: c2}}})}}
	j.AppendAll(ctx, next)
	if next[0].Err != nil {
		t.Fatalf("new owner's append: %v", next[0].Err)
	}
	// An entry that says it follows another than the one before it (what
	// a store that took two appends after the same entry would show): the
	// fold has a gap, reading again does not close it, and nothing is
	// taken over.
	c2.Sold, c2.NextSeq = c2.Sold+1, c2.NextSeq+1
	forked := []Append{{Item: cfg.Item, Shard: 1, Expect: next[0].Seq, Data: engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryRound, Prev: at2, Epoch: 2, Node: "n2",
		Records: []engine.Record{{Kind: engine.RecGrab, Grab: engine.Grab{Seq: 5, User: "u8", Qty: 1}, Counters: c2}}})}}
	j.AppendAll(ctx, forked)
	if forked[0].Err != nil {
		t.Fatal(forked[0].Err)
	}
	if _, err := j.Takeover(ctx, cfg, 1, 3, "n3"); !errors.Is(err, engine.ErrJournalGap) {
		t.Fatalf("takeover of a journal with a gap: %v, want ErrJournalGap", err)
	}
	// The other shard's journal is its own.
	if l, err := j.Last(ctx, cfg.Item, 0); err != nil || l != 0 {
		t.Fatalf("shard 0's journal: last %d err %v", l, err)
	}
}
