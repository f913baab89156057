package transport

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/persistence"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request failed" {
			out = append(out, m)
		}
	}
	return out
}

// TestFailedRequestsLogRateLimited: a flood of bad requests writes one
// line per kind per FailedLogInterval, the next line counting the ones
// left out; sold-out answers are not failures and write nothing.
func TestFailedRequestsLogRateLimited(t *testing.T) {
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	var buf syncBuf
	srv := NewServer(actors.NewLocal(node), testToken, slog.New(slog.NewJSONHandler(&buf, nil))).FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown()
	ts := &testServer{url: "http://" + ln.Addr().String(), node: node}
	ts.create(t, "gone", `{"stock":1,"shards":1,"per_user_limit":1}`)
	ts.do(t, "POST", "/v1/items/gone/grab", `{"user_id":"a"}`, nil)

	start := time.Now()
	sent := 0
	for deadline := start.Add(10 * time.Second); ; sent++ {
		ts.do(t, "POST", "/v1/items/gone/grab", `{"user_id":"b"}`, nil) // sold out: not a failure
		ts.do(t, "POST", "/v1/items/gone/grab", `{"user":"x"}`, nil)    // 400
		ts.do(t, "GET", "/admin/v1/items", "", nil)                     // 401
		if ls := buf.lines(); len(ls) >= 3 && sent >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds: %d lines", sent, len(buf.lines()))
		}
	}
	elapsed := time.Since(start)
	per := map[string][]map[string]any{}
	for _, l := range buf.lines() {
		per[l["kind"].(string)] = append(per[l["kind"].(string)], l)
	}
	if len(per) != 2 || per["bad_request"] == nil || per["unauthorized"] == nil {
		t.Fatalf("kinds logged: %v", per)
	}
	limit := int(elapsed/FailedLogInterval) + 1
	var suppressed float64
	for kind, ls := range per {
		if len(ls) > limit {
			t.Errorf("%s: %d lines in %v, at most %d", kind, len(ls), elapsed, limit)
		}
		for _, l := range ls {
			suppressed += l["suppressed"].(float64)
		}
	}
	if suppressed == 0 {
		t.Errorf("no line counted the ones left out")
	}
	t.Logf("%d rounds in %v: %d lines", sent, elapsed, len(buf.lines()))
}
