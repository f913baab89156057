package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// A clustered shard's replicated journal: one entry per commit round of the
// shard (its records, in order), and a takeover marker each time an
// incarnation starts (a node takes the shard over, or restarts owning it).
// The journal's store lets an entry in only after the entry its writer last
// saw (an expected last sequence), so once a marker is in, the incarnation
// before it can append nothing: the journal is the fence, and folding it
// (Tail) gives the shard's state at any owner, with every confirmed grab,
// buyer, key, release and unit.
//
// The host carries the entries; this file decides what an entry is, how it
// is encoded, and which entries a replay takes.

// EntryKind names a journal entry.
type EntryKind uint8

const (
	// EntryRound: one commit round's records of the shard.
	EntryRound EntryKind = iota + 1
	// EntryTakeover: an incarnation (Epoch, on Node) starts here; entries
	// of older incarnations after it are refused.
	EntryTakeover
	entryKinds
)

const (
	// journalVersion 2: entries carry Prev. Version 1 entries (written
	// before) did not: they decode with Prev = PrevUnknown.
	journalVersion   = 2
	journalVersionV1 = 1
	// MaxEntryRecords bounds the records in one entry: a round holds at
	// most a committer's batch, and its records go to the journal per
	// shard, so a shard's part is never larger.
	MaxEntryRecords = 4096
	// MaxEntryLen bounds an encoded entry: every record at its largest (two
	// ids, a key and a dozen varints), plus the header.
	MaxEntryLen = MaxEntryRecords*(MaxIDLen+MaxKeyLen+96) + MaxIDLen + 32
)

// JournalEntry is one message of a shard's journal.
type JournalEntry struct {
	Kind EntryKind
	// Prev is the journal position of the entry this one was appended
	// after: its writer's expected last sequence (0: the shard's first
	// entry). The journal took the entry only if that was its last one, so
	// a fold that finds each entry's Prev at the entry before it has seen
	// the whole journal, and one that does not has missed an entry (a read
	// that lagged) or found a store that broke its promise.
	// PrevUnknown: an entry of version 1, which did not say.
	Prev  uint64
	Epoch uint64
	// Node is the node that wrote the entry.
	Node string
	// Records of a round: RecGrab, RecRelease and RecCounters of the
	// journal's shard, in the order they were decided.
	Records []Record
}

// ErrBadEntry: bytes that are not exactly one encoded journal entry of the
// shard they were read for.
var ErrBadEntry = errors.New("malformed journal entry")

// AppendEntry appends e's binary encoding to dst. A record's item and shard
// are the journal's, so they are not written.
func AppendEntry(dst []byte, e JournalEntry) []byte {
	if e.Prev == PrevUnknown {
		dst = append(dst, journalVersionV1, byte(e.Kind))
	} else {
		dst = append(dst, journalVersion, byte(e.Kind))
		dst = binary.AppendUvarint(dst, e.Prev)
	}
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = appendStr(dst, e.Node)
	dst = binary.AppendUvarint(dst, uint64(len(e.Records)))
	for _, r := range e.Records {
		dst = append(dst, byte(r.Kind))
		c := r.Counters
		dst = binary.AppendVarint(dst, c.Allocated)
		dst = binary.AppendVarint(dst, c.Sold)
		dst = binary.AppendUvarint(dst, c.NextSeq)
		dst = binary.AppendVarint(dst, c.Received)
		dst = binary.AppendVarint(dst, c.Returned)
		if r.Kind == RecCounters {
			continue
		}
		g := r.Grab
		dst = binary.AppendUvarint(dst, g.Seq)
		if r.Kind == RecRelease {
			continue // the grab is the shard's already
		}
		dst = appendStr(dst, g.User)
		dst = binary.AppendVarint(dst, g.Qty)
		dst = appendStr(dst, g.Key)
		dst = binary.AppendVarint(dst, g.AtMs)
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// DecodeEntry decodes one entry of the journal of shard of item, refusing
// anything AppendEntry would not have written for a well-formed entry:
// unknown versions or kinds, a round without records or a marker with
// some, ids or keys outside their alphabets, trailing bytes, non-shortest
// varints. Whether the entry may be applied is Tail's to say.
func DecodeEntry(item string, shard int, b []byte) (JournalEntry, error) {
	if len(b) > MaxEntryLen || len(b) < 2 || b[0] != journalVersion && b[0] != journalVersionV1 {
		return JournalEntry{}, ErrBadEntry
	}
	e := JournalEntry{Kind: EntryKind(b[1])}
	d := msgDecoder{b: b[2:]}
	e.Prev = PrevUnknown
	if b[0] == journalVersion {
		e.Prev = d.uvarint()
		if e.Prev == PrevUnknown {
			d.bad = true
		}
	}
	e.Epoch = d.uvarint()
	e.Node = d.str(MaxIDLen)
	n := d.uvarint()
	if d.bad || e.Kind == 0 || e.Kind >= entryKinds || !ValidID(e.Node) || n > MaxEntryRecords ||
		(e.Kind == EntryRound) != (n > 0) {
		return JournalEntry{}, ErrBadEntry
	}
	if n > 0 {
		e.Records = make([]Record, 0, n)
	}
	for range n {
		r := Record{Kind: RecordKind(d.byte()), Item: item, Shard: shard}
		r.Counters = Counters{Allocated: d.varint(), Sold: d.varint(), NextSeq: d.uvarint(), Received: d.varint(), Returned: d.varint()}
		switch r.Kind {
		case RecCounters:
		case RecRelease:
			r.Grab = Grab{Item: item, Shard: shard, Seq: d.uvarint()}
		case RecGrab:
			r.Grab = Grab{Item: item, Shard: shard, Seq: d.uvarint(), User: d.str(MaxIDLen), Qty: d.varint(), Key: d.str(MaxKeyLen), AtMs: d.varint()}
			if !ValidHolder(r.Grab.User) || r.Grab.Key != "" && !ValidKey(r.Grab.Key) {
				d.bad = true
			}
		default:
			d.bad = true
		}
		if d.bad {
			return JournalEntry{}, ErrBadEntry
		}
		e.Records = append(e.Records, r)
	}
	if len(d.b) != 0 || !bytes.Equal(AppendEntry(make([]byte, 0, len(b)), e), b) {
		return JournalEntry{}, ErrBadEntry
	}
	return e, nil
}

// str reads a length-prefixed string of at most max bytes.
func (d *msgDecoder) str(max int) string {
	n := d.uvarint()
	if d.bad || n > uint64(max) || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// ClusterStart is a clustered shard's first counters: its initial
// allocation counted as given back (the pool ledger starts with every
// unit), so it holds nothing the ledger did not grant it. A journal with
// no snapshot is folded from here.
func ClusterStart(cfg ItemConfig, i int) Counters {
	return Counters{Returned: cfg.InitialAllocation(i), NextSeq: 1}
}

// Tail folds a shard's journal, from a snapshot or from the shard's start,
// into the state it ends in. Entries are applied whole or not at all: one
// that does not follow from the state so far (a grab whose sequence is not
// the next, a release of an unknown or released grab, counters that fall,
// a round of an incarnation that no marker started, a marker of an older
// epoch) is refused, counted, and leaves the state as it was.
//
// The fold also follows the chain of positions (JournalEntry.Prev): an
// entry whose Prev is not the position of the entry before it is a gap,
// and a fold with a gap is no state at all (Snapshot refuses it).
type Tail struct {
	cfg  ItemConfig
	snap ShardSnapshot
	// last is the position of the last entry seen (applied, refused or
	// undecodable); gaps counts entries that did not follow it.
	last uint64
	gaps int
	// epoch and node: the incarnation of the last marker taken.
	epoch   uint64
	node    string
	refused int
}

// NewTail starts a replay of shard of cfg from snap (nil: the shard's
// start, ClusterStart).
func NewTail(cfg ItemConfig, shard int, snap *ShardSnapshot) *Tail {
	t := &Tail{cfg: cfg}
	if snap != nil {
		t.snap = *snap
		t.snap.Grabs = append([]SnapGrab(nil), snap.Grabs...)
		t.epoch = snap.Epoch
		t.last = unanchored
	} else {
		t.snap = ShardSnapshot{Item: cfg.Item, Shard: shard, Counters: ClusterStart(cfg, shard)}
	}
	return t
}

// Epoch is the incarnation of the last marker applied (or the snapshot's).
func (t *Tail) Epoch() uint64 { return t.epoch }

// Node is the node of the last marker applied.
func (t *Tail) Node() string { return t.node }

// Refused counts the entries refused so far.
func (t *Tail) Refused() int { return t.refused }

// NextSeq is the sequence the shard's next grab takes.
func (t *Tail) NextSeq() uint64 { return t.snap.Counters.NextSeq }

// PrevUnknown is the Prev of an entry written before entries said it
// (version 1): the chain is not checked at it. A journal written by an
// older seckill still folds.
const PrevUnknown = ^uint64(0)

// unanchored: a fold from a snapshot does not know the position the
// snapshot was taken at; its first entry anchors the chain.
const unanchored = ^uint64(0)

// ErrJournalGap: an entry was not appended after the one the fold saw
// before it.
var ErrJournalGap = errors.New("journal gap")

// gapError is an error that is ErrJournalGap.
type gapError struct{ error }

func (gapError) Is(target error) bool { return target == ErrJournalGap }

// Gaps counts the entries that did not follow the one before them.
func (t *Tail) Gaps() int { return t.gaps }

// Apply takes e, found at position seq of the journal, if it follows from
// the state so far, else refuses it with the reason and changes nothing
// but the position. An entry whose Prev is not the position of the entry
// before it is a gap: refused, and the fold can give no snapshot.
func (t *Tail) Apply(seq uint64, e JournalEntry) error {
	prev := t.last
	t.last = seq
	if prev != unanchored && (seq <= prev || e.Prev != prev && e.Prev != PrevUnknown) {
		t.gaps++
		t.refused++
		return gapError{errf("journal gap: entry %d of %s.%d follows %d, the fold's last is %d", seq, t.snap.Item, t.snap.Shard, e.Prev, prev)}
	}
	err := t.apply(e)
	if err != nil {
		t.refused++
	}
	return err
}

// Skip moves the fold past a message at position seq that is no entry
// (it did not decode): it is refused, but the next entry follows it.
func (t *Tail) Skip(seq uint64) {
	t.last = seq
	t.refused++
}

func (t *Tail) apply(e JournalEntry) error {
	switch e.Kind {
	case EntryTakeover:
		if e.Epoch < t.epoch {
			return errf("takeover of %s.%d at epoch %d after epoch %d", t.snap.Item, t.snap.Shard, e.Epoch, t.epoch)
		}
		t.epoch, t.node = e.Epoch, e.Node
		return nil
	case EntryRound:
		if e.Epoch != t.epoch || e.Node != t.node {
			return errf("round of %s.%d by %s at epoch %d, the shard's incarnation is %s at %d", t.snap.Item, t.snap.Shard, e.Node, e.Epoch, t.node, t.epoch)
		}
	default:
		return errf("journal entry of kind %d", int(e.Kind))
	}
	c, n := t.snap.Counters, len(t.snap.Grabs)
	for i, r := range e.Records {
		if err := t.record(r); err != nil {
			// Undo the entry's records taken before this one.
			for _, u := range e.Records[:i] {
				if u.Kind == RecRelease {
					t.snap.Grabs[u.Grab.Seq-1].Released = false
				}
			}
			t.snap.Counters, t.snap.Grabs = c, t.snap.Grabs[:n]
			return err
		}
	}
	return nil
}

func (t *Tail) record(r Record) error {
	s := &t.snap
	c := r.Counters
	if c.NextSeq < s.Counters.NextSeq || c.Received < s.Counters.Received || c.Returned < s.Counters.Returned ||
		c.Sold < 0 || c.Sold > c.Allocated || c.Allocated > MaxStock {
		return errf("journal of %s.%d: counters %+v after %+v", s.Item, s.Shard, c, s.Counters)
	}
	switch r.Kind {
	case RecGrab:
		g := r.Grab
		if g.Seq != s.Counters.NextSeq || c.NextSeq != g.Seq+1 || !t.cfg.ValidQty(g.Qty) {
			return errf("journal of %s.%d: grab %d (qty %d) where %d is next", s.Item, s.Shard, g.Seq, g.Qty, s.Counters.NextSeq)
		}
		s.Grabs = append(s.Grabs, SnapGrab{Seq: g.Seq, User: g.User, Qty: g.Qty, Key: g.Key, AtMs: g.AtMs})
	case RecRelease:
		seq := r.Grab.Seq
		if seq < 1 || seq > uint64(len(s.Grabs)) || s.Grabs[seq-1].Released || c.NextSeq != s.Counters.NextSeq {
			return errf("journal of %s.%d: release of grab %d", s.Item, s.Shard, seq)
		}
		s.Grabs[seq-1].Released = true
	case RecCounters:
		if c.NextSeq != s.Counters.NextSeq {
			return errf("journal of %s.%d: counters move the next grab to %d from %d", s.Item, s.Shard, c.NextSeq, s.Counters.NextSeq)
		}
	default:
		return errf("journal of %s.%d: record of kind %d", s.Item, s.Shard, int(r.Kind))
	}
	s.Counters = c
	return nil
}

// Snapshot is the state the journal ends in, as incarnation epoch, checked
// whole (RestoreSnapshot): the grabs add up to the counters, keys are not
// reused, the per-user limit holds.
func (t *Tail) Snapshot(epoch uint64) (ShardSnapshot, error) {
	if t.gaps > 0 {
		return ShardSnapshot{}, gapError{errf("journal gap: %d entries of %s.%d did not follow the one before them", t.gaps, t.snap.Item, t.snap.Shard)}
	}
	s := t.snap
	s.Epoch = epoch
	s.Grabs = append([]SnapGrab(nil), t.snap.Grabs...)
	if _, err := RestoreSnapshot(t.cfg, s); err != nil {
		return ShardSnapshot{}, err
	}
	return s, nil
}
