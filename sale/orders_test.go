package sale

import (
	"encoding/json"
	"testing"
)

// TestDeadLetterJSON: the admin API lists dead letters with these fields
// only; the stream's sequence and the message body stay out of it.
func TestDeadLetterJSON(t *testing.T) {
	for _, tc := range []struct {
		d    DeadLetter
		want string
	}{
		{DeadLetter{GrabID: "x.0.1", Item: "x", Seq: 9, Deliveries: 5, Body: []byte("{}")}, `{"grab_id":"x.0.1","item":"x","deliveries":5}`},
		{DeadLetter{GrabID: "x.0.1", Item: "x", Deliveries: 5, Reason: "disk full"}, `{"grab_id":"x.0.1","item":"x","deliveries":5,"reason":"disk full"}`},
	} {
		b, err := json.Marshal(tc.d)
		if err != nil || string(b) != tc.want {
			t.Errorf("%+v: %s %v, want %s", tc.d, b, err, tc.want)
		}
	}
}
