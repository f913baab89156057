package persistence

import (
	"fmt"
	"sort"
	"sync"

	"github.com/seckill/seckill/engine"
)

// Mem is an in-memory Store for tests of the layers above. It keeps records
// encoded, as Pebble does, so the codecs run in those tests too.
type Mem struct {
	mu     sync.Mutex
	kv     map[string][]byte
	closed bool
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem { return &Mem{kv: make(map[string][]byte)} }

// Apply stores every record of b at once.
func (m *Mem) Apply(b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	type kv struct{ k, v string }
	var staged []kv // all or none
	if _, err := b.encode(nil, func(k, v []byte) error {
		staged = append(staged, kv{string(k), string(v)})
		return nil
	}); err != nil {
		return err
	}
	for _, e := range staged {
		m.kv[e.k] = []byte(e.v)
	}
	return nil
}

// Submit applies b at once; its wait reports nothing more.
func (m *Mem) Submit(b *Batch) (func() error, error) {
	if err := m.Apply(b); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

func (m *Mem) sortedKeys(prefix string) []string {
	var ks []string
	for k := range m.kv {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// Items lists every item in id order.
func (m *Mem) Items() ([]engine.ItemConfig, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []engine.ItemConfig
	for _, k := range m.sortedKeys(string(prefixItem)) {
		c, err := DecodeItem(k[1:], m.kv[k])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Pool reads an item's pool ledger.
func (m *Mem) Pool(item string) (engine.PoolState, error) {
	m.mu.Lock()
	v, ok := m.kv[string(poolKey(nil, item))]
	m.mu.Unlock()
	if !ok {
		return engine.PoolState{}, fmt.Errorf("load pool %s: not found", item)
	}
	return DecodePool(v)
}

// ShardReleases reads which grabs of a shard were released.
func (m *Mem) ShardReleases(item string, shard int, fn func(uint64) error) error {
	m.mu.Lock()
	var seqs []uint64
	for _, k := range m.sortedKeys(string(shardPrefix(nil, prefixRelease, item, shard))) {
		_, _, seq, err := ParseGrabKey([]byte(k))
		if err != nil {
			m.mu.Unlock()
			return err
		}
		seqs = append(seqs, seq)
	}
	m.mu.Unlock()
	for _, seq := range seqs {
		if err := fn(seq); err != nil {
			return err
		}
	}
	return nil
}

// ShardCounters reads a shard's counters.
func (m *Mem) ShardCounters(item string, shard int) (engine.Counters, error) {
	m.mu.Lock()
	v, ok := m.kv[string(countersKey(nil, item, shard))]
	m.mu.Unlock()
	if !ok {
		return engine.Counters{}, fmt.Errorf("load counters %s.%d: %w", item, shard, ErrNoShard)
	}
	return DecodeCounters(v)
}

// ShardGrabs reads a shard's grabs in sequence order.
func (m *Mem) ShardGrabs(item string, shard int, fn func(engine.Grab) error) error {
	m.mu.Lock()
	var grabs []engine.Grab
	var err error
	for _, k := range m.sortedKeys(string(grabShardPrefix(nil, item, shard))) {
		var g engine.Grab
		_, _, seq, e := ParseGrabKey([]byte(k))
		if e == nil {
			g, e = DecodeGrab(item, shard, seq, m.kv[k])
		}
		if e != nil {
			err = e
			break
		}
		grabs = append(grabs, g)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	for _, g := range grabs {
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// ReadView returns a copy of the store as it is now.
func (m *Mem) ReadView() (Reader, func()) { return m.Reopen(), func() {} }

// Close marks the store closed.
func (m *Mem) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

// Reopen returns a new open store over the same data, as a process restart
// over the same directory would.
func (m *Mem) Reopen() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv := make(map[string][]byte, len(m.kv))
	for k, v := range m.kv {
		kv[k] = v
	}
	return &Mem{kv: kv}
}

// GrabsAfter reads up to max grabs of a shard after seq.
func (m *Mem) GrabsAfter(item string, shard int, after uint64, max int, fn func(engine.Grab) error) error {
	var gs []engine.Grab
	if err := m.ShardGrabs(item, shard, func(g engine.Grab) error {
		if g.Seq > after && len(gs) < max {
			gs = append(gs, g)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, g := range gs {
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// RelayCursor reads how far the relay has published a shard.
func (m *Mem) RelayCursor(item string, shard int) (uint64, error) {
	m.mu.Lock()
	v, ok := m.kv[string(shardPrefix(nil, prefixCursor, item, shard))]
	m.mu.Unlock()
	if !ok {
		return 0, nil
	}
	return DecodeCursor(v)
}
