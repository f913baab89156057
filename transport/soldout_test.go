package transport

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// answerLog is one buyer's answer and, for a sold_out, the admin view's
// remaining read right after it arrived.
type answerLog struct {
	user      string
	status    int
	body      string
	remaining int64 // -1 when not read
	at        time.Duration
}

// TestNoFalseSoldOut: 10 000 units over 64 shards, 50 000 distinct buyers.
// Each sold_out is followed by a read of the admin view: remaining only
// falls in this test, so remaining > 0 after a sold_out means it was > 0
// when the buyer was told. Every answer is logged and shown on failure.
func TestNoFalseSoldOut(t *testing.T) {
	stock, shards, users, clients := 10_000, 64, 50_000, 64
	if testing.Short() {
		stock, users = 1000, 5000
	}
	ts := startServer(t)
	ts.create(t, "hot", fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":1}`, stock, shards))
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	start := time.Now()
	post := func(user string) (int, string) {
		req, _ := http.NewRequest("POST", ts.url+"/v1/items/hot/grab", strings.NewReader(`{"user_id":"`+user+`"}`))
		req.Header.Set("Idempotency-Key", "k-"+user)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	remaining := func() int64 {
		req, _ := http.NewRequest("GET", ts.url+"/admin/v1/items/hot", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return -1
		}
		defer resp.Body.Close()
		var v struct {
			Remaining int64 `json:"remaining"`
			Sold      int64 `json:"sold"`
			Stock     int64 `json:"stock"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Sold+v.Remaining != v.Stock {
			t.Errorf("admin view %+v %v", v, err)
		}
		return v.Remaining
	}
	logs := make([][]answerLog, clients)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for u := c; u < users; u += clients {
				user := fmt.Sprintf("buyer-%05d", u)
				for attempt := 0; ; attempt++ {
					code, body := post(user)
					e := answerLog{user: user, status: code, body: body, remaining: -1, at: time.Since(start)}
					if code == 409 && strings.Contains(body, "sold_out") {
						e.remaining = remaining()
					}
					logs[c] = append(logs[c], e)
					if code != 503 && code != 0 || attempt == 100 {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	var confirmed, soldOut, retried int
	var bad []answerLog
	for _, l := range logs {
		for _, e := range l {
			switch {
			case e.status == 201:
				confirmed++
			case e.remaining == 0:
				soldOut++
			case e.status == 503 || e.status == 0:
				retried++
			default:
				bad = append(bad, e)
			}
		}
	}
	if len(bad) > 0 || confirmed != stock || soldOut != users-stock {
		for i, e := range bad[:min(len(bad), 20)] {
			t.Logf("bad answer %d: %+v", i, e)
		}
		t.Fatalf("%d confirmed (stock %d), %d sold out with nothing left (want %d), %d answers wrong, %d retried",
			confirmed, stock, soldOut, users-stock, len(bad), retried)
	}
	t.Logf("%d confirmed, %d sold out, %d answers retried (503)", confirmed, soldOut, retried)
}
