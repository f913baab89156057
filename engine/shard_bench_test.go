package engine

import (
	"strconv"
	"testing"
)

// BenchmarkGrabConfirmed measures engine decisions that sell a unit.
func BenchmarkGrabConfirmed(b *testing.B) {
	users := make([]string, 1<<16)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	s := NewShard(ItemConfig{Item: "bench", Stock: MaxStock, Shards: 1, PerUserLimit: MaxPerUserLimit}, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if d := s.Grab(GrabInput{User: users[i&(len(users)-1)], Qty: 1, NowMs: 1}); d.Outcome != Confirmed {
			b.Fatal(d.Outcome)
		}
	}
}

// BenchmarkGrabEmptyShard measures the refusal path of a shard with
// nothing left (the pool decides whether the item is sold out).
func BenchmarkGrabEmptyShard(b *testing.B) {
	s := NewShard(ItemConfig{Item: "bench", Stock: 0, Shards: 1, PerUserLimit: 1}, 0)
	b.ReportAllocs()
	for b.Loop() {
		if d := s.Grab(GrabInput{User: "u", Qty: 1, NowMs: 1}); d.Outcome != NeedStock {
			b.Fatal(d.Outcome)
		}
	}
}
