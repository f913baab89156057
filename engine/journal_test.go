package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

var journalCfg = ItemConfig{Item: "sku", Stock: 100, Shards: 2, PerUserLimit: 2}

// grabRec is a grab record of shard 0 of journalCfg with the counters after it.
func grabRec(seq uint64, user string, qty int64, key string, c Counters) Record {
	return Record{Kind: RecGrab, Item: "sku", Grab: Grab{Item: "sku", Seq: seq, User: user, Qty: qty, Key: key, AtMs: 7}, Counters: c}
}

func marker(epoch uint64, node string) JournalEntry {
	return JournalEntry{Kind: EntryTakeover, Epoch: epoch, Node: node}
}

func round(epoch uint64, node string, rs ...Record) JournalEntry {
	return JournalEntry{Kind: EntryRound, Epoch: epoch, Node: node, Records: rs}
}

func TestEntryRoundTrip(t *testing.T) {
	start := ClusterStart(journalCfg, 0)
	got := start
	got.Received, got.Allocated = 10, 10
	g1 := got
	g1.Sold, g1.NextSeq = 2, 2
	rel := g1
	rel.Sold, rel.Allocated, rel.Returned = 0, 8, rel.Returned+2
	for _, e := range []JournalEntry{
		marker(3, "n1"),
		round(3, "n1", Record{Kind: RecCounters, Item: "sku", Counters: got}, grabRec(1, "u1", 2, "k-1", g1),
			Record{Kind: RecRelease, Item: "sku", Grab: Grab{Item: "sku", Seq: 1}, Counters: rel}),
	} {
		b := AppendEntry(nil, e)
		d, err := DecodeEntry("sku", 0, b)
		if err != nil {
			t.Fatalf("decode %+v: %v", e, err)
		}
		if !reflect.DeepEqual(d, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", d, e)
		}
	}
}

func TestDecodeEntryRefuses(t *testing.T) {
	good := AppendEntry(nil, round(1, "n1", grabRec(1, "u1", 1, "", Counters{NextSeq: 2})))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version", append([]byte{9}, good[1:]...)},
		{"kind", append([]byte{journalVersion, 0}, good[2:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"marker with records", AppendEntry(nil, JournalEntry{Kind: EntryTakeover, Epoch: 1, Node: "n1", Records: []Record{{Kind: RecCounters}}})},
		{"round without records", AppendEntry(nil, round(1, "n1"))},
		{"bad node", AppendEntry(nil, marker(1, "n/1"))},
		{"bad user", AppendEntry(nil, round(1, "n1", grabRec(1, "u 1", 1, "", Counters{NextSeq: 2})))},
		{"bad key", AppendEntry(nil, round(1, "n1", grabRec(1, "u1", 1, "k\n", Counters{NextSeq: 2})))},
		{"record kind", AppendEntry(nil, round(1, "n1", Record{Kind: RecPool}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEntry("sku", 0, tc.b); err == nil {
				t.Fatalf("decoded %x", tc.b)
			}
		})
	}
}

// TestTail walks a journal through takeovers and refusals: what is refused
// changes nothing, what is taken ends in a snapshot RestoreSnapshot accepts.
func TestTail(t *testing.T) {
	s := ClusterStart(journalCfg, 0)
	recv := s
	recv.Received, recv.Allocated = 10, 10
	c1 := recv
	c1.Sold, c1.NextSeq = 1, 2
	c2 := c1
	c2.Sold, c2.NextSeq = 3, 3
	rel := c2
	rel.Sold, rel.Allocated, rel.Returned = 2, 9, c2.Returned+1
	c3 := rel
	c3.Sold, c3.NextSeq = 3, 4
	type step struct {
		e      JournalEntry
		refuse bool
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		next     uint64
		epoch    uint64
		released []bool
	}{
		{"one owner", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}, grabRec(1, "u1", 1, "a", c1))}, {e: round(1, "n1", grabRec(2, "u2", 2, "", c2))}},
			3, 1, []bool{false, false}},
		{"takeover then the old owner's round", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}, grabRec(1, "u1", 1, "a", c1))},
			{e: marker(2, "n2")}, {e: round(1, "n1", grabRec(2, "u2", 2, "", c2)), refuse: true}, {e: round(2, "n2", grabRec(2, "u3", 2, "", c2))}},
			3, 2, []bool{false, false}},
		{"older marker refused", []step{{e: marker(2, "n2")}, {e: marker(1, "n1"), refuse: true}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}), refuse: true}},
			1, 2, nil},
		{"same epoch again (a restart)", []step{{e: marker(1, "n1")}, {e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv})}},
			1, 1, nil},
		{"round without marker", []step{{e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}), refuse: true}}, 1, 0, nil},
		{"gap in sequences", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}, grabRec(2, "u1", 1, "", c2)), refuse: true}}, 1, 1, nil},
		{"release, then again", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}, grabRec(1, "u1", 1, "a", c1), grabRec(2, "u2", 2, "", c2))},
			{e: round(1, "n1", Record{Kind: RecRelease, Grab: Grab{Seq: 1}, Counters: rel})},
			{e: round(1, "n1", Record{Kind: RecRelease, Grab: Grab{Seq: 1}, Counters: rel}), refuse: true},
			{e: round(1, "n1", grabRec(3, "u1", 1, "b", c3))}},
			4, 1, []bool{true, false, false}},
		{"a refused entry undoes its release", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv}, grabRec(1, "u1", 1, "a", c1), grabRec(2, "u2", 2, "", c2))},
			{e: round(1, "n1", Record{Kind: RecRelease, Grab: Grab{Seq: 1}, Counters: rel}, grabRec(9, "u9", 1, "", c3)), refuse: true}},
			3, 1, []bool{false, false}},
		{"counters that fall", []step{{e: marker(1, "n1")}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: recv})}, {e: round(1, "n1", Record{Kind: RecCounters, Counters: s}), refuse: true}},
			1, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := NewTail(journalCfg, 0, nil)
			refused := 0
			for i, st := range tc.steps {
				// Every entry crosses the wire first, as a journal carries it.
				// Each entry appended after the one before it.
				st.e.Prev = uint64(i)
				e, err := DecodeEntry("sku", 0, AppendEntry(nil, st.e))
				if err != nil {
					t.Fatalf("step %d: decode: %v", i, err)
				}
				err = tl.Apply(uint64(i+1), e)
				if (err != nil) != st.refuse {
					t.Fatalf("step %d: Apply = %v, want refused %v", i, err, st.refuse)
				}
				if err != nil {
					refused++
				}
			}
			if tl.Refused() != refused || tl.NextSeq() != tc.next || tl.Epoch() != tc.epoch {
				t.Fatalf("refused %d next %d epoch %d, want %d %d %d", tl.Refused(), tl.NextSeq(), tl.Epoch(), refused, tc.next, tc.epoch)
			}
			snap, err := tl.Snapshot(tc.epoch + 1)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			var rel []bool
			for _, g := range snap.Grabs {
				rel = append(rel, g.Released)
			}
			if !reflect.DeepEqual(rel, tc.released) {
				t.Fatalf("released %v, want %v", rel, tc.released)
			}
		})
	}
}

// TestTailFromSnapshot: a replay from a snapshot goes on where it ends, and
// leaves the snapshot it started from untouched.
func TestTailFromSnapshot(t *testing.T) {
	c := ClusterStart(journalCfg, 0)
	c.Received, c.Allocated, c.Sold, c.NextSeq = 5, 5, 1, 2
	snap := ShardSnapshot{Item: "sku", Epoch: 4, Counters: c, Grabs: []SnapGrab{{Seq: 1, User: "u1", Qty: 1, Key: "k"}}}
	tl := NewTail(journalCfg, 0, &snap)
	rel := c
	rel.Sold, rel.Allocated, rel.Returned = 0, 4, c.Returned+1
	// The snapshot's position is not known: the first entry anchors the
	// chain.
	m := marker(4, "n3")
	m.Prev = 40
	if err := tl.Apply(41, m); err != nil {
		t.Fatal(err)
	}
	r := round(4, "n3", Record{Kind: RecRelease, Grab: Grab{Seq: 1}, Counters: rel})
	r.Prev = 41
	if err := tl.Apply(45, r); err != nil {
		t.Fatal(err)
	}
	old := marker(3, "n1")
	old.Prev = 45
	if err := tl.Apply(46, old); err == nil {
		t.Fatal("an older marker than the snapshot's epoch was taken")
	}
	out, err := tl.Snapshot(5)
	if err != nil || !out.Grabs[0].Released || snap.Grabs[0].Released {
		t.Fatalf("snapshot %+v err %v; start %+v", out, err, snap)
	}
}

// TestTailGaps: a fold follows the chain of positions, and one that missed
// an entry (or found two appended after the same one) gives no snapshot.
func TestTailGaps(t *testing.T) {
	recv := ClusterStart(journalCfg, 0)
	recv.Received, recv.Allocated = 4, 4
	type at struct {
		seq, prev uint64
		e         JournalEntry
		skip      bool // a message that did not decode
	}
	for _, tc := range []struct {
		name    string
		entries []at
		gaps    int
	}{
		{"whole, positions far apart (other subjects between)", []at{{seq: 3, prev: 0, e: marker(1, "n1")}, {seq: 9, prev: 3, e: round(1, "n1", Record{Kind: RecCounters, Counters: recv})}, {seq: 12, prev: 9, e: marker(1, "n1")}}, 0},
		{"an entry missed (a read that lagged)", []at{{seq: 3, prev: 0, e: marker(1, "n1")}, {seq: 12, prev: 9, e: marker(1, "n1")}}, 1},
		{"the first entry missed", []at{{seq: 9, prev: 3, e: marker(1, "n1")}}, 1},
		{"two appended after the same entry (a store that broke its promise)", []at{{seq: 3, prev: 0, e: marker(1, "n1")}, {seq: 9, prev: 3, e: round(1, "n1", Record{Kind: RecCounters, Counters: recv})}, {seq: 12, prev: 3, e: marker(1, "n1")}}, 1},
		{"a position twice", []at{{seq: 3, prev: 0, e: marker(1, "n1")}, {seq: 3, prev: 3, e: marker(1, "n1")}}, 1},
		{"entries an older seckill wrote (no Prev), then new ones", []at{{seq: 3, prev: PrevUnknown, e: marker(1, "n1")}, {seq: 9, prev: PrevUnknown, e: round(1, "n1", Record{Kind: RecCounters, Counters: recv})}, {seq: 12, prev: 9, e: marker(2, "n2")}}, 0},
		{"an undecodable message is a link all the same", []at{{seq: 3, prev: 0, e: marker(1, "n1")}, {seq: 5, skip: true}, {seq: 8, prev: 5, e: marker(1, "n1")}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := NewTail(journalCfg, 0, nil)
			for _, a := range tc.entries {
				if a.skip {
					tl.Skip(a.seq)
					continue
				}
				a.e.Prev = a.prev
				e, err := DecodeEntry("sku", 0, AppendEntry(nil, a.e))
				if err != nil {
					t.Fatal(err)
				}
				_ = tl.Apply(a.seq, e)
			}
			_, err := tl.Snapshot(1)
			if tl.Gaps() != tc.gaps || (err != nil) != (tc.gaps > 0) || err != nil && !errors.Is(err, ErrJournalGap) {
				t.Fatalf("gaps %d, snapshot error %v; want %d gaps", tl.Gaps(), err, tc.gaps)
			}
		})
	}
}

// TestJournalVersion1: an entry as seckill wrote it before entries named
// their Prev still decodes (Prev unknown) and encodes back to its bytes.
func TestJournalVersion1(t *testing.T) {
	v1 := []byte{1, byte(EntryTakeover), 1, 2, 'n', '1', 0} // version 1, marker, epoch 1, node "n1", no records
	e, err := DecodeEntry("sku", 0, v1)
	if err != nil || e.Kind != EntryTakeover || e.Epoch != 1 || e.Node != "n1" || e.Prev != PrevUnknown {
		t.Fatalf("version 1 marker: %+v %v", e, err)
	}
	if got := AppendEntry(nil, e); !bytes.Equal(got, v1) {
		t.Fatalf("re-encoded as %x, want %x", got, v1)
	}
	// A version 2 entry cannot claim the unknown Prev.
	v2 := binary.AppendUvarint([]byte{2, byte(EntryTakeover)}, PrevUnknown)
	v2 = append(v2, 1, 2, 'n', '1', 0)
	if _, err := DecodeEntry("sku", 0, v2); err == nil {
		t.Fatal("a version 2 entry with Prev = PrevUnknown decoded")
	}
}
