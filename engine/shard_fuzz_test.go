package engine

import "testing"

// FuzzShard interprets the input as a program of grabs and restarts and
// checks every invariant after each step.
func FuzzShard(f *testing.F) {
	f.Add([]byte{3, 2, 1, 0, 0, 1, 1, 5, 0, 255, 0, 2})
	f.Add([]byte("grab grab grab restart grab"))
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) < 2 {
			return
		}
		cfg := ItemConfig{Item: "f", Stock: int64(prog[0] % 40), Shards: 1, PerUserLimit: int64(1 + prog[1]%4), StartsAtMs: 10, EndsAtMs: 250}
		s := NewShard(cfg, 0)
		var log []Grab
		var releases []uint64
		for i := 2; i+2 < len(prog); i += 3 {
			op, a, b := prog[i], prog[i+1], prog[i+2]
			switch op % 23 {
			case 1:
				s.ApplyRefill(s.Counters().Received + int64(b%4))
			case 2:
				s.GiveBack(int64(a % 4))
			case 3:
				if d := s.Release(uint64(b % 8)); d.Outcome == Released {
					releases = append(releases, d.Grab.Seq)
				}
			}
			if op%17 == 0 {
				n := RestoreShard(cfg, 0, s.Counters())
				for _, g := range log {
					if err := n.Restore(g); err != nil {
						t.Fatal(err)
					}
				}
				for _, seq := range releases {
					if err := n.RestoreRelease(seq); err != nil {
						t.Fatal(err)
					}
				}
				if err := n.Verify(); err != nil {
					t.Fatal(err)
				}
				s = n
			}
			in := GrabInput{User: string(rune('a' + a%8)), Qty: int64(b%6) - 1, NowMs: int64(op)}
			if a&0x80 != 0 {
				in.Key = string(rune('k' + b%3))
			}
			before := s.Counters()
			d := s.Grab(in)
			if d.MustPersist() {
				log = append(log, d.Grab)
			} else if s.Counters() != before {
				t.Fatalf("%v changed counters", d.Outcome)
			}
			if err := s.Verify(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzParseGrabID(f *testing.F) {
	f.Add("item.1.2")
	f.Add("a.b.c.1023.99")
	f.Fuzz(func(t *testing.T, id string) {
		item, sh, seq, ok := ParseGrabID(id)
		if !ok {
			return
		}
		if got := (Grab{Item: item, Shard: sh, Seq: seq}).ID(); got != id {
			// Leading zeros or '+' would parse but not round-trip; they must not be accepted.
			t.Fatalf("%q parsed to %q %d %d which formats as %q", id, item, sh, seq, got)
		}
	})
}
