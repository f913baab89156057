package engine

import (
	"bytes"
	"testing"
)

// FuzzJournal feeds arbitrary bytes to the journal's decoder and whatever
// decodes to a replay: nothing panics, a decoded entry has exactly the
// encoding it was read from, and a replay's end state is either refused by
// RestoreSnapshot or a valid shard.
func FuzzJournal(f *testing.F) {
	c := ClusterStart(journalCfg, 0)
	c.Received, c.Allocated = 4, 4
	g := c
	g.Sold, g.NextSeq = 1, 2
	r := round(1, "n1", Record{Kind: RecCounters, Counters: c}, grabRec(1, "u1", 1, "k", g))
	r.Prev = 1
	f.Add(AppendEntry(nil, marker(1, "n1")), AppendEntry(nil, r))
	f.Add(AppendEntry(nil, marker(2, "n2")), AppendEntry(nil, round(1, "n1", Record{Kind: RecRelease, Grab: Grab{Seq: 1}, Counters: c})))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		tl := NewTail(journalCfg, 0, nil)
		for i, raw := range [][]byte{a, b, a} {
			e, err := DecodeEntry("sku", 0, raw)
			if err != nil {
				tl.Skip(uint64(i + 1))
				continue
			}
			if !bytes.Equal(AppendEntry(nil, e), raw) {
				t.Fatalf("entry %+v re-encodes differently", e)
			}
			_ = tl.Apply(uint64(i+1), e)
		}
		if s, err := tl.Snapshot(9); err == nil {
			if _, err := RestoreSnapshot(journalCfg, s); err != nil {
				t.Fatalf("Snapshot returned a state RestoreSnapshot refuses: %v", err)
			}
		}
	})
}
