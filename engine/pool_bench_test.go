package engine

import "testing"

// BenchmarkRefill is the engine's cost of one refill: the pool grants a
// chunk and the shard takes it.
func BenchmarkRefill(b *testing.B) {
	cfg := ItemConfig{Item: "r", Stock: MaxStock, Shards: 64, PerUserLimit: 1}
	p, s := NewPool(cfg), NewShard(cfg, 7)
	b.ReportAllocs()
	for b.Loop() {
		_, total := p.Grant(7, 1)
		if n, _, err := s.ApplyRefill(total); n != 1 || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkSteal is the engine's cost of one steal: a shard gives units
// back and the pool takes them in.
func BenchmarkSteal(b *testing.B) {
	cfg := ItemConfig{Item: "r", Stock: MaxStock, Shards: 64, PerUserLimit: 1}
	p, s := NewPool(cfg), NewShard(cfg, 7)
	b.ReportAllocs()
	for b.Loop() {
		_, c := s.GiveBack(1)
		if p.Receive(7, c.Returned) != 1 {
			b.Fatal("nothing received")
		}
		_, total := p.Grant(7, 1) // keep the shard stocked
		s.ApplyRefill(total)
	}
}
