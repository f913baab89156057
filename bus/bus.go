// Package bus owns seckill's NATS JetStream layer: the streams and the
// consumer that carry confirmed grabs from the outbox relay to the order
// writers, the embedded server, the batch publisher, the writer loop and the
// dead-letter path.
//
// Delivery is at least once everywhere: Nats-Msg-Id dedupes a republished
// batch within the stream's window, and a redelivered message is harmless
// because order writers key orders by grab id. Nothing here is the source of
// truth for a confirmed grab; the Pebble outbox is.
package bus

import (
	"strings"
	"time"
)

// Names of the streams, subjects and consumers. They are part of the
// contract with order writers in other processes (and languages).
const (
	// StreamGrabs holds the confirmed grabs on GrabSubject(item): each
	// message one grab (a JSON object) or a run of up to MaxGrabsPerMsg
	// grabs of one shard (a JSON array of them); see DecodeGrabs.
	StreamGrabs = "GRABS"
	// SubjectPrefix starts every grab subject: seckill.grabs.<item token>.
	SubjectPrefix = "seckill.grabs."
	// StreamDLQ holds the dead letters, on DLQSubject(item).
	StreamDLQ = "GRABS_DLQ"
	// DLQPrefix starts every dead-letter subject: seckill.dlq.<item token>.
	DLQPrefix = "seckill.dlq."
	// ConsumerOrders is the durable pull consumer shared by all order writers.
	ConsumerOrders = "orders"
	// StreamAdvisories captures the server's max-deliveries and terminated
	// advisories of ConsumerOrders: the only record of which message died.
	StreamAdvisories = "GRABS_ADVISORIES"
	// ConsumerDLQCopier is the durable consumer of StreamAdvisories shared by
	// dead-letter copiers.
	ConsumerDLQCopier = "dlq-copier"

	// The advisories of every consumer of GRABS: ConsumerOrders, and on a
	// cluster each node's ConsumerFor(node). The scans' consumers never
	// redeliver (AckNone), so only order writers' deaths come here.
	advisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamGrabs + ".*"
	advisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + StreamGrabs + ".*"
)

// Lanes of a cluster. Every node's order writers write to the node's own
// order store, so a grab's order is written exactly once only if every
// copy of its message reaches the same node: a redelivery (the writer that
// took it stopped before its ack) or a relay's republish (another run
// cut, another Msg-Id) must not land on another node. So on a cluster the
// relay of node N publishes on GrabSubjectFrom(N, item), and N's writers
// read them alone, through ConsumerFor(N), filtered to N's subjects: the
// node that made a grab writes its order. On one node (node "") the
// subjects and the shared consumer are the ones of before.

// GrabSubjectFrom is the subject the relay of node publishes item's grabs
// on: GrabSubject(item) on one node, one more token naming the node on a
// cluster.
func GrabSubjectFrom(node, item string) string {
	if node == "" {
		return GrabSubject(item)
	}
	return GrabSubject(item) + "." + itemToken(node)
}

// ConsumerFor is the durable consumer node's order writers read:
// ConsumerOrders on one node (node ""), shared by every writer.
func ConsumerFor(node string) string {
	if node == "" {
		return ConsumerOrders
	}
	return ConsumerOrders + "-" + itemToken(node)
}

// consumerFilter is the subjects ConsumerFor(node) reads ("" for all).
func consumerFilter(node string) string {
	if node == "" {
		return ""
	}
	return SubjectPrefix + "*." + itemToken(node)
}

// isOrdersConsumer reports whether name is ConsumerOrders or a node's.
func isOrdersConsumer(name string) bool {
	return name == ConsumerOrders || strings.HasPrefix(name, ConsumerOrders+"-")
}

// Headers set on dead letters, besides Nats-Msg-Id.
const (
	HeaderGrabID     = "Seckill-Grab-Id"    // the grab id (also in the body, unless the body is the problem)
	HeaderGrabsSeq   = "Seckill-Grabs-Seq"  // sequence of the original message in GRABS
	HeaderDeliveries = "Seckill-Deliveries" // deliveries before it died
	HeaderReason     = "Seckill-Reason"     // the last handler error, when a writer gave up on it
	HeaderSubject    = "Seckill-Subject"    // the original's subject: a retry goes back to the same writers
)

// Limits.
const (
	// MaxGrabsPerMsg bounds the grabs in one GRABS message: the relay
	// sends each shard's run of new grabs in messages of up to this many, so
	// that the server, the publisher and the writers handle one message per
	// run rather than one per grab.
	MaxGrabsPerMsg = 64
	// MaxGrabMsgSize bounds a message body in GRABS (the stream refuses
	// larger ones): an encoded grab of maximal ids and key is under 750
	// bytes, so MaxGrabsPerMsg of them fit.
	MaxGrabMsgSize = 64 << 10
	// MaxBatch bounds one PublishBatch and one writer fetch: a few hundred
	// grabs fill a Pebble batch and a publish window; more only adds latency.
	MaxBatch = 4096
	// MaxPublishWindow bounds acks in flight per publisher: past a few
	// thousand the server is the bottleneck and a failure costs more resends.
	MaxPublishWindow = 4096
	// MaxAckPending bounds messages delivered to writers and not yet acked,
	// over all writers: enough for several writers fetching MaxBatch-sized
	// batches, small enough that a stuck writer cannot hold the whole backlog.
	MaxAckPending = 4 * MaxBatch
	// MaxReasonLen bounds the handler error kept with a dead letter.
	MaxReasonLen = 256
	// MaxListDead bounds one ListDead answer.
	MaxListDead = 1000
	// MaxDLQMsgs bounds the dead-letter stream. When it is full the copier
	// fails loudly and keeps the advisory, instead of dropping dead letters.
	MaxDLQMsgs = 100_000
	// GrabsMaxAge keeps grabs a week for reconciliation and replays, and
	// bounds the disk the stream takes.
	GrabsMaxAge = 7 * 24 * time.Hour
)

// GrabSubject is the subject of item's grabs. Item ids may hold dots, and
// "a..b" or "a." would make an invalid subject (the server drops it): the
// token replaces '.' with '~', which no id holds, so each item is exactly one
// token and the mapping is one-to-one.
func GrabSubject(item string) string { return SubjectPrefix + itemToken(item) }

// DLQSubject is the subject of item's dead letters.
func DLQSubject(item string) string { return DLQPrefix + itemToken(item) }

func itemToken(item string) string { return strings.ReplaceAll(item, ".", "~") }

// itemFromSubject inverts GrabSubject, GrabSubjectFrom and DLQSubject.
func itemFromSubject(prefix, subj string) (string, bool) {
	tok, ok := strings.CutPrefix(subj, prefix)
	tok, _, _ = strings.Cut(tok, ".") // a node's token may follow
	if !ok || tok == "" {
		return "", false
	}
	return strings.ReplaceAll(tok, "~", "."), true
}
