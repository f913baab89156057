package engine

// Ticket is the host's handle for a request waiting for an answer (an HTTP
// request, an admin call). It never leaves the node that received the
// request: the engine only hands it back in an Answer.
type Ticket uint64

// Answer is what to tell the requester holding Ticket.
type Answer struct {
	Ticket  Ticket
	Outcome Outcome
	Grab    Grab // Confirmed, Replayed, Released, AlreadyReleased
	// Stock changes: the stock after a change (StockChanged), or the unsold
	// units when a reduction was refused (Insufficient).
	Stock, Available int64
}

// RecordKind names a record a step asks the host to make durable.
type RecordKind uint8

const (
	// RecGrab: a confirmed grab, with its shard's counters after it.
	RecGrab RecordKind = iota + 1
	// RecRelease: Grab was returned to stock, with the counters after it.
	RecRelease
	// RecCounters: a shard's counters after a transfer.
	RecCounters
	// RecPool: an item's pool ledger.
	RecPool
)

// Record is one durable fact a step decided. Item and Shard say whose.
type Record struct {
	Kind     RecordKind
	Item     string
	Shard    int
	Grab     Grab
	Counters Counters
	Pool     PoolState
}

// Ready is what one or more steps of a shard or a pool ask the host to do,
// after the model of etcd-io/raft's Ready:
//   - Records must be made durable, in order, after every record of earlier
//     Readys of the same participant;
//   - Msgs are sent and Answers given only once those records (and all
//     earlier ones of the participant) are durable;
//   - NowMsgs and NowAnswers depend on nothing that is not yet durable and
//     may go at once;
//   - WakeAtMs, when not zero, is when the host must call Tick next.
//
// If the records cannot be made durable, every Answer is "unavailable", no
// Msg is sent, and the participant must be restarted from what is durable.
type Ready struct {
	Records    []Record
	Msgs       []Msg
	Answers    []Answer
	NowMsgs    []Msg
	NowAnswers []Answer
	WakeAtMs   int64
}

// Empty reports whether there is nothing to do.
func (r *Ready) Empty() bool {
	return len(r.Records) == 0 && len(r.Msgs) == 0 && len(r.Answers) == 0 && len(r.NowMsgs) == 0 && len(r.NowAnswers) == 0
}

func (r *Ready) reset() {
	clear(r.Records)
	clear(r.Msgs)
	clear(r.Answers)
	clear(r.NowMsgs)
	clear(r.NowAnswers)
	*r = Ready{Records: r.Records[:0], Msgs: r.Msgs[:0], Answers: r.Answers[:0], NowMsgs: r.NowMsgs[:0], NowAnswers: r.NowAnswers[:0]}
}
