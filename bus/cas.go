package bus

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// IsWrongLastSequence reports whether err is JetStream refusing a publish
// whose expected last sequence (Nats-Expected-Last-Sequence,
// Nats-Expected-Last-Subject-Sequence) it could not confirm: a lost
// compare-and-set, after which the publisher re-reads and decides again.
// Two codes mean that: 10071, the stream's last sequence is another; and,
// on a replicated stream only, 10164, another publish to the subject is
// still in flight, so the expectation cannot be checked yet (it may even
// have been right). nats.go v1.55's jetstream package has no sentinel for
// either (its ErrKeyExists matches 10071 alone).
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
