package persistence

import (
	"context"
	"errors"

	"github.com/seckill/seckill/engine"
)

// ReplicatedJournal is where a clustered node's shards append every commit
// round before the round reaches the local store: a log that outlives the
// machine (bus.Journal, on a JetStream stream replicated over three
// servers). The local store stays the node's write-ahead log and state; the
// replicated journal is what a new owner folds when it takes a shard over.
type ReplicatedJournal interface {
	// AppendAll appends each entry to its shard's journal, all at once, and
	// fills in each one's outcome.
	AppendAll(ctx context.Context, apps []JournalAppend)
}

// JournalAppend is one entry for one shard's journal.
type JournalAppend struct {
	Item  string
	Shard int
	// Expect is the journal position of the shard's last entry as its
	// writer saw it (0: none): the journal refuses the append
	// (ErrJournalFenced) if another entry came in since.
	Expect uint64
	Data   []byte
	// Seq is the appended entry's position; Err why it is not known to be
	// in.
	Seq uint64
	Err error
}

// ErrJournalFenced: the journal refused an append because the shard's
// journal moved on since its writer last saw it (another incarnation took
// the shard over, or an earlier append of this one landed although its
// answer was lost). The writer stops the shard and never appends again
// with a fresh position.
var ErrJournalFenced = errors.New("journal: another writer appended to the shard's journal")

// ToEngine is the protocol's form of a stored shard record (FromEngine's
// inverse for grabs, releases and counters), as a journal entry carries it.
func ToEngine(r Record) engine.Record {
	switch r.Kind {
	case KindGrab:
		return engine.Record{Kind: engine.RecGrab, Item: r.Grab.Item, Shard: r.Grab.Shard, Grab: r.Grab, Counters: r.Counters}
	case KindRelease:
		return engine.Record{Kind: engine.RecRelease, Item: r.Grab.Item, Shard: r.Grab.Shard, Grab: r.Grab, Counters: r.Counters}
	case KindCounters:
		return engine.Record{Kind: engine.RecCounters, Item: r.Item.Item, Shard: r.Shard, Counters: r.Counters}
	}
	return engine.Record{}
}
