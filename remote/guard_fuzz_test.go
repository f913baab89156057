package remote

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	protoremote "github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzScreenBatch: whatever batch arrives, what screenBatch keeps is what
// protoactor's endpoint reader takes without a panic or an error (it
// indexes TypeNames, Targets and Senders unchecked and deserializes by type
// name), every kept envelope is a BytesValue to ReceiverName, and each
// carries exactly the proven name the guard gave it.
func FuzzScreenBatch(f *testing.F) {
	good, _ := proto.Marshal(&wrapperspb.BytesValue{Value: AppendEnvelope(nil, MsgFromEnvelope("127.0.0.1:1", seqMsg(1)))})
	seed := &protoremote.MessageBatch{TypeNames: []string{bytesValueType, "actor.Stop"},
		Targets: []*actor.PID{{Address: "a", Id: ReceiverName}, {Address: "a", Id: "other"}},
		Senders: []*actor.PID{{Address: "b", Id: "x"}},
		Envelopes: []*protoremote.MessageEnvelope{{MessageData: good}, {TypeId: 1}, {Target: 1, MessageData: good},
			{TypeId: 9}, {Sender: 1, MessageData: good, MessageHeader: &protoremote.MessageHeader{HeaderData: map[string]string{peerHeader: "forged"}}}}}
	b, _ := proto.Marshal(seed)
	f.Add(b, "n1")
	f.Add(b, "")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		var m protoremote.MessageBatch
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		n := len(m.Envelopes)
		dropped := screenBatch(&m, name)
		if dropped+len(m.Envelopes) != n {
			t.Fatalf("kept %d and dropped %d of %d", len(m.Envelopes), dropped, n)
		}
		for _, e := range m.Envelopes {
			typeName := m.TypeNames[e.TypeId]
			if m.Targets[e.Target].Id != ReceiverName {
				t.Fatalf("kept an envelope for %q", m.Targets[e.Target].Id)
			}
			if e.Sender > 0 {
				_ = m.Senders[e.Sender-1].Address
			}
			msg, err := protoremote.Deserialize(e.MessageData, typeName, e.SerializerId)
			if err != nil {
				t.Fatalf("kept an envelope protoactor cannot read: %v", err)
			}
			if _, ok := msg.(*wrapperspb.BytesValue); !ok {
				t.Fatalf("kept a %T", msg)
			}
			if got := proven(headerOf(e)); got != name && !(name == "" && e.MessageHeader == nil) {
				t.Fatalf("proven sender %q, want %q", got, name)
			}
		}
	})
}

type header map[string]string

func (h header) Get(k string) string { return h[k] }

func headerOf(e *protoremote.MessageEnvelope) interface{ Get(string) string } {
	if e.MessageHeader == nil {
		return nil
	}
	return header(e.MessageHeader.HeaderData)
}
