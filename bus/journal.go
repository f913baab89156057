package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// The shards' replicated journal: stream JOURNAL, one subject per (item,
// shard), seckill.journal.<item>.<shard> (dots in the item as '~'). Each
// commit round of a clustered shard is one message on its subject,
// published with Nats-Expected-Last-Subject-Sequence: the server takes it
// only if the subject's last message is the one its writer last saw, so
// once a new owner's takeover marker is in, the old owner's appends are
// refused. The stream keeps every message (no age or count limit): a
// shard's journal is its history, folded at every takeover (engine.Tail).
const (
	JournalStream        = "JOURNAL"
	JournalSubjectPrefix = "seckill.journal."
	// JournalTimeout bounds one append or read of the journal: an R3
	// append on loopback acks in milliseconds; past this the round's
	// outcome is unknown and its buyers hear 503.
	JournalTimeout = 2 * time.Second
	// JournalReadBatch is how many entries one fetch of a replay asks for.
	JournalReadBatch = 512
	// maxJournalMsg bounds a journal message: the largest entry the
	// engine encodes, and headers.
	maxJournalMsg = engine.MaxEntryLen + 1024
)

// ErrFenced is persistence.ErrJournalFenced.
var ErrFenced = persistence.ErrJournalFenced

// JournalSubject is the subject of shard's journal of item.
func JournalSubject(item string, shard int) string {
	return JournalSubjectPrefix + itemToken(item) + "." + strconv.Itoa(shard)
}

// Journal appends to and reads the shards' journal.
type Journal struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// EnsureJournal creates (or updates) the JOURNAL stream with replicas
// copies (0: 1) and returns the journal over it.
func EnsureJournal(ctx context.Context, js jetstream.JetStream, replicas int) (*Journal, error) {
	if replicas <= 0 {
		replicas = 1
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        JournalStream,
		Description: "seckill: every clustered shard's commit rounds and takeover markers",
		Subjects:    []string{JournalSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgSize:  maxJournalMsg,
		// A takeover reads the subject's last message from the stream's
		// leader, never from a replica that may be behind it.
		AllowDirect: false,
	})
	if err != nil {
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	return &Journal{js: js, stream: st}, nil
}

// Append is one entry for one shard's journal, with its outcome.
type Append = persistence.JournalAppend

var _ persistence.ReplicatedJournal = (*Journal)(nil)

// AppendAll publishes every append at once and waits for each answer, so a
// round costs one round trip however many shards it holds.
func (j *Journal) AppendAll(ctx context.Context, apps []Append) {
	futs := make([]jetstream.PubAckFuture, len(apps))
	for i := range apps {
		a := &apps[i]
		futs[i], a.Err = j.js.PublishAsync(JournalSubject(a.Item, a.Shard), a.Data, jetstream.WithExpectLastSequencePerSubject(a.Expect))
	}
	for i, f := range futs {
		a := &apps[i]
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			a.Seq = ack.Sequence
		case err := <-f.Err():
			a.Err = classify(err)
		case <-ctx.Done():
			a.Err = fmt.Errorf("journal append %s.%d: %w", a.Item, a.Shard, ctx.Err())
		}
	}
}

func classify(err error) error {
	if IsWrongLastSequence(err) {
		return fmt.Errorf("%w: %v", ErrFenced, err)
	}
	return err
}

// Last is the stream sequence of the last message of shard's journal (0:
// none yet).
func (j *Journal) Last(ctx context.Context, item string, shard int) (uint64, error) {
	seq, _, err := j.last(ctx, item, shard)
	return seq, err
}

func (j *Journal) last(ctx context.Context, item string, shard int) (uint64, []byte, error) {
	m, err := j.stream.GetLastMsgForSubject(ctx, JournalSubject(item, shard))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("journal last of %s.%d: %w", item, shard, err)
	}
	return m.Sequence, m.Data, nil
}

// Read hands fn every message of shard's journal with a stream sequence in
// [from, to], in order. It reads through a pull consumer of its own
// (memory, one replica, no acks), made and removed under ctx: an ordered
// consumer would recreate itself after a NATS server's loss with retries
// that ignore ctx, and hold the caller (the grid's refresh) for as long as
// the recreation fails. Whether the read missed anything is the fold's to
// see (engine.Tail's chain of positions).
func (j *Journal) Read(ctx context.Context, item string, shard int, from, to uint64, fn func(seq uint64, data []byte) error) error {
	if from == 0 {
		from = 1
	}
	if to < from {
		return nil
	}
	c, err := j.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     JournalSubject(item, shard),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: JournalReaderIdle,
	})
	if err != nil {
		return fmt.Errorf("journal read %s.%d: %w", item, shard, err)
	}
	defer func() {
		// Removed without waiting (a takeover waits for enough round
		// trips); one not removed goes once idle.
		go func(name string) {
			dctx, cancel := context.WithTimeout(context.Background(), JournalTimeout)
			_ = j.stream.DeleteConsumer(dctx, name)
			cancel()
		}(c.CachedInfo().Name)
	}()
	for {
		wait := JournalTimeout
		if dl, ok := ctx.Deadline(); ok {
			wait = max(time.Until(dl), time.Millisecond)
		}
		b, err := c.Fetch(JournalReadBatch, jetstream.FetchMaxWait(wait))
		if err != nil {
			return fmt.Errorf("journal read %s.%d: %w", item, shard, err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("journal read %s.%d: %w", item, shard, err)
			}
			seq := md.Sequence.Stream
			if seq > to {
				return nil
			}
			if err := fn(seq, m.Data()); err != nil {
				return err
			}
			if seq == to {
				return nil
			}
		}
		if err := b.Error(); err != nil {
			return fmt.Errorf("journal read %s.%d: %w", item, shard, err)
		}
		if n == 0 {
			return fmt.Errorf("journal read %s.%d: nothing after %d, want up to %d", item, shard, from, to)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// JournalReaderIdle: a reader's consumer left behind (its node died
// mid-read) goes after this long idle.
const JournalReaderIdle = 30 * time.Second

// MaxTakeoverTries bounds how often a takeover reads the subject's last
// sequence again because an append slipped in before its marker (the old
// owner's last rounds): each try is a round trip, and the old owner stops
// appending once it sees it lost its lease or its next append is refused.
const MaxTakeoverTries = 16

// ErrSuperseded: the journal holds a takeover of a later incarnation than
// the one asking.
var ErrSuperseded = errors.New("journal: a later incarnation took the shard over")

// Taken is what a takeover found.
type Taken struct {
	// Snap is the shard's state, as the incarnation taking over.
	Snap engine.ShardSnapshot
	// At is the takeover marker's position: the incarnation's first append
	// expects it.
	At uint64
	// Prev is the node of the last incarnation of an earlier epoch: whose
	// grabs the local store may lack. The node taking over itself when no
	// earlier epoch ran the shard (its first start, or a restart at the
	// same epoch: its own markers before this one do not count).
	Prev string
	// Refused says why each entry the fold refused was refused (a bug or a
	// forgery: the caller logs them; they are never applied).
	Refused []error
}

// Takeover starts incarnation (epoch, node) of shard of cfg in its journal:
// it appends a takeover marker after the subject's last message (from then
// on nobody else can append), never behind a later incarnation
// (ErrSuperseded), and folds the journal up to the marker into the shard's
// state.
func (j *Journal) Takeover(ctx context.Context, cfg engine.ItemConfig, shard int, epoch uint64, node string) (Taken, error) {
	var out Taken
	for try := 0; ; try++ {
		last, data, err := j.last(ctx, cfg.Item, shard)
		if err != nil {
			return out, err
		}
		if e, err := engine.DecodeEntry(cfg.Item, shard, data); err == nil && e.Epoch > epoch {
			// Never append behind a later incarnation: the marker would
			// fence the rightful owner.
			return out, fmt.Errorf("takeover of %s.%d at epoch %d: journal at epoch %d: %w", cfg.Item, shard, epoch, e.Epoch, ErrSuperseded)
		}
		marker := engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryTakeover, Prev: last, Epoch: epoch, Node: node})
		a := []Append{{Item: cfg.Item, Shard: shard, Expect: last, Data: marker}}
		j.AppendAll(ctx, a)
		if a[0].Err == nil {
			out.At = a[0].Seq
			break
		}
		if !errors.Is(a[0].Err, ErrFenced) || try+1 >= MaxTakeoverTries {
			return out, fmt.Errorf("takeover of %s.%d: %w", cfg.Item, shard, a[0].Err)
		}
	}
	// The marker is in: fold everything before it. A read that misses an
	// entry (a consumer on a replica behind the leader) shows as a gap in
	// the chain of positions, and is read again.
	var tl *engine.Tail
	for read := 0; ; read++ {
		var err error
		if tl, err = j.fold(ctx, cfg, shard, epoch, node, &out); err != nil {
			return out, fmt.Errorf("takeover of %s.%d: %w", cfg.Item, shard, err)
		}
		if tl.Gaps() == 0 || read+1 >= MaxTakeoverReads {
			break
		}
	}
	snap, err := tl.Snapshot(epoch)
	if err != nil {
		// A gap that reading again does not close: the journal holds two
		// entries appended after the same one. Nothing is taken over from
		// it; the refusals say where.
		return out, fmt.Errorf("takeover of %s.%d: %w", cfg.Item, shard, err)
	}
	if tl.Epoch() != epoch || tl.Node() != node {
		return out, fmt.Errorf("takeover of %s.%d at epoch %d by %s: journal ends with %s at %d: %w",
			cfg.Item, shard, epoch, node, tl.Node(), tl.Epoch(), ErrSuperseded)
	}
	out.Snap = snap
	return out, nil
}

// MaxTakeoverReads bounds how often a takeover reads the journal up to its
// marker again when the read missed an entry.
const MaxTakeoverReads = 3

// fold reads shard's journal up to out.At into a Tail, setting out.Prev and
// out.Refused.
func (j *Journal) fold(ctx context.Context, cfg engine.ItemConfig, shard int, epoch uint64, node string, out *Taken) (*engine.Tail, error) {
	tl := engine.NewTail(cfg, shard, nil)
	out.Prev, out.Refused = node, nil
	err := j.Read(ctx, cfg.Item, shard, 1, out.At, func(seq uint64, data []byte) error {
		e, err := engine.DecodeEntry(cfg.Item, shard, data)
		if err != nil {
			tl.Skip(seq)
		} else {
			err = tl.Apply(seq, e)
		}
		if err == nil && e.Kind == engine.EntryTakeover && e.Epoch < epoch {
			out.Prev = e.Node
		}
		if err != nil {
			out.Refused = append(out.Refused, fmt.Errorf("journal %s.%d message %d refused: %w", cfg.Item, shard, seq, err))
		}
		return nil
	})
	return tl, err
}
