package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// freeRoutePort is a port nothing listens on now on 127.0.0.1: every
// server of a cluster must know the others' route ports before it starts.
func freeRoutePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts n servers clustered on 127.0.0.1, all at once (so
// they race to create the one client key they share), and waits until all
// of them agree on a meta leader. It returns the servers and the key file.
func startCluster(t *testing.T, n int) ([]*Embedded, string) {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "shared", CredsFile)
	routes := make([]string, n)
	for i := range routes {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", freeRoutePort(t))
	}
	servers := make([]*Embedded, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			servers[i], errs[i] = StartEmbeddedWith(EmbeddedOptions{
				StoreDir:  t.TempDir(),
				Listen:    "127.0.0.1:0",
				CredsFile: creds,
				Name:      fmt.Sprintf("nats%d", i+1),
				Cluster: &ClusterOptions{
					Listen: strings.TrimPrefix(routes[i], "nats-route://"),
					Routes: routes, // its own among them: the server skips it
				},
			})
		})
	}
	wg.Wait()
	for i, e := range servers {
		if e != nil {
			t.Cleanup(e.Shutdown)
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if e.ClusterURL() != routes[i] || e.CredsPath() != creds || e.Name() != fmt.Sprintf("nats%d", i+1) {
			t.Fatalf("server %d: cluster URL %q, creds %q, name %q", i, e.ClusterURL(), e.CredsPath(), e.Name())
		}
	}
	eventually(t, "one meta leader that every server knows", func() bool { return agreedLeader(servers) != "" })
	return servers, creds
}

// agreedLeader is the meta leader every running server names, "" if
// they do not agree or have none.
func agreedLeader(servers []*Embedded) string {
	leader := ""
	for _, e := range servers {
		if e == nil {
			continue
		}
		l := e.MetaLeader()
		if l == "" || (leader != "" && l != leader) {
			return ""
		}
		leader = l
	}
	return leader
}

// clientURLs is the comma-separated client URLs of the servers.
func clientURLs(servers []*Embedded) string {
	urls := make([]string, len(servers))
	for i, e := range servers {
		urls[i] = e.ClientURL()
	}
	return strings.Join(urls, ",")
}

// TestCluster_R3SurvivesOneServer: on three clustered servers Ensure scales
// the streams from R1 to R3 (and never back down), publishes are acked,
// and with the server leading GRABS shut down the other two elect a new
// leader, take new publishes and serve every message, old and new.
func TestCluster_R3SurvivesOneServer(t *testing.T) {
	servers, creds := startCluster(t, 3)
	nc, err := Dial(clientURLs(servers), t.Name(), ClientAuth{CredsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Right after the election the meta layer may still refuse requests.
	eventually(t, "R1 streams created", func() bool { return Ensure(ctx, js, Config{}) == nil })
	if r := streamInfo(t, js, StreamGrabs).Config.Replicas; r != 1 {
		t.Fatalf("GRABS created with %d replicas, want 1", r)
	}
	for _, want := range []int{3, 1} { // scale up, then a process asking for fewer
		// Scaling up may outlast the API's 5 s timeout on a busy machine;
		// Ensure is idempotent and every process retries it.
		eventually(t, fmt.Sprintf("ensured R%d", want), func() bool {
			err := Ensure(ctx, js, Config{Replicas: want})
			if err != nil {
				t.Logf("ensure R%d: %v", want, err)
			}
			return err == nil
		})
		for _, name := range []string{StreamGrabs, StreamDLQ, StreamAdvisories} {
			if r := streamInfo(t, js, name).Config.Replicas; r != 3 {
				t.Fatalf("after ensure R%d: %s has %d replicas, want 3", want, name, r)
			}
		}
	}
	eventually(t, "GRABS and its consumer on three servers", func() bool {
		si, err := js.Stream(ctx, StreamGrabs)
		if err != nil {
			return false
		}
		c, err := js.Consumer(ctx, StreamGrabs, ConsumerOrders)
		if err != nil {
			return false
		}
		ci := c.CachedInfo()
		cl := si.CachedInfo().Cluster
		return cl != nil && cl.Leader != "" && len(cl.Replicas) == 2 &&
			ci.Cluster != nil && ci.Cluster.Leader != "" && len(ci.Cluster.Replicas) == 2
	})

	p := newPublisher(js, 16, 5*time.Second)
	defer p.Close()
	before, after := grabs("r3", 1, 100), grabs("r3", 101, 100)
	if err := p.PublishBatch(ctx, before); err != nil {
		t.Fatal(err)
	}

	leader := streamInfo(t, js, StreamGrabs).Cluster.Leader
	var rest []*Embedded
	for _, e := range servers {
		if e.Name() == leader {
			e.Shutdown()
		} else {
			rest = append(rest, e)
		}
	}
	if len(rest) != 2 {
		t.Fatalf("GRABS leader %q is none of the servers", leader)
	}
	t.Logf("shut down %s, the GRABS leader", leader)
	eventually(t, "published on the two left", func() bool { return p.PublishBatch(ctx, after) == nil })
	if l := streamInfo(t, js, StreamGrabs).Cluster.Leader; l == leader || l == "" {
		t.Fatalf("GRABS leader after the shutdown: %q", l)
	}

	seen := map[uint64]int{}
	err = GrabsInStream(ctx, js, "r3", func(g GrabMsg) error {
		seen[g.Seq]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range append(before, after...) {
		if seen[g.Seq] != 1 {
			t.Errorf("grab %d in the stream %d times", g.Seq, seen[g.Seq])
		}
	}
	if len(seen) != len(before)+len(after) {
		t.Errorf("%d grabs in the stream, want %d", len(seen), len(before)+len(after))
	}
}

// TestCluster_ExpectedLastSubjectSequence: a publish with
// Nats-Expected-Last-Subject-Sequence works on an R3 stream, with all
// three servers and with two; a stale expectation is refused and
// IsWrongLastSequence knows the refusal.
func TestCluster_ExpectedLastSubjectSequence(t *testing.T) {
	servers, creds := startCluster(t, 3)
	nc, err := Dial(clientURLs(servers), t.Name(), ClientAuth{CredsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sc := jetstream.StreamConfig{Name: "CAS", Subjects: []string{"cas.>"}, Storage: jetstream.FileStorage, Replicas: 3}
	eventually(t, "R3 stream created", func() bool {
		_, err := js.CreateOrUpdateStream(ctx, sc)
		return err == nil
	})

	casRounds(t, js, "cas.a")
	inFlight(t, js, "cas.c")
	servers[0].Shutdown()
	casRounds(t, js, "cas.b")
	// cas.a goes on from where it was, on the two left.
	eventually(t, "cas.a published on two servers", func() bool {
		_, err := js.Publish(ctx, "cas.a", []byte("3"), jetstream.WithExpectLastSequencePerSubject(lastSeq(t, js, "cas.a")))
		return err == nil
	})
}

// casRounds publishes twice to the empty subject subj, each time expecting
// the last sequence it has, then once with a stale expectation.
func casRounds(t *testing.T, js jetstream.JetStream, subj string) {
	t.Helper()
	ctx := context.Background()
	var last uint64
	for i := range 2 {
		var ack *jetstream.PubAck
		eventually(t, fmt.Sprintf("%s publish %d expecting %d", subj, i, last), func() bool {
			var err error
			ack, err = js.Publish(ctx, subj, []byte{byte('0' + i)}, jetstream.WithExpectLastSequencePerSubject(last))
			if IsWrongLastSequence(err) {
				t.Fatalf("%s expecting %d, the right one: %v", subj, last, err)
			}
			return err == nil
		})
		last = ack.Sequence
	}
	_, err := js.Publish(ctx, subj, []byte("stale"), jetstream.WithExpectLastSequencePerSubject(last-1))
	if !IsWrongLastSequence(err) {
		t.Fatalf("%s expecting %d, stale (last %d): got %v", subj, last-1, last, err)
	}
	var apiErr *jetstream.APIError
	errors.As(err, &apiErr)
	t.Logf("stale expectation on %s refused: code %d: %v", subj, apiErr.ErrorCode, err)
}

// inFlight publishes to the empty subject subj without an expectation and,
// before its ack, again expecting the subject empty: refused either as
// wrong (10071, the first was applied) or because the first is still in
// flight (10164, only on a replicated stream), both a lost compare-and-set.
func inFlight(t *testing.T, js jetstream.JetStream, subj string) {
	t.Helper()
	first, err := js.PublishAsync(subj, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := js.PublishAsync(subj, []byte("second"), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []jetstream.PubAckFuture{first, second} {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if f != second || !IsWrongLastSequence(err) {
				t.Fatalf("%s: %v", f.Msg().Data, err)
			}
			t.Logf("second publish on %s refused: %v", subj, err)
			continue
		case <-time.After(waitFor):
			t.Fatalf("%s: no ack after %s", f.Msg().Data, waitFor)
		}
		if f == second {
			t.Fatalf("second publish on %s, expecting it empty, stored", subj)
		}
	}
}

func lastSeq(t *testing.T, js jetstream.JetStream, subj string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "CAS")
	if err != nil {
		return 0 // the publish expecting 0 fails and the poll goes on
	}
	m, err := s.GetLastMsgForSubject(context.Background(), subj)
	if err != nil {
		return 0
	}
	return m.Sequence
}

// TestWrongLastSequenceR1: a single server refuses a stale expectation with
// the other code, which IsWrongLastSequence knows too; other errors are not
// a lost compare-and-set.
func TestWrongLastSequenceR1(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	nc, err := e.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CAS", Subjects: []string{"cas.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "cas.a", nil, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
		t.Fatal(err)
	}
	_, err = js.Publish(ctx, "cas.a", nil, jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if !IsWrongLastSequence(err) || !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("stale expectation on R1: %v", err)
	}
	for _, err := range []error{nil, errors.New("wrong last sequence"), jetstream.ErrStreamNotFound, &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamNotFound}} {
		if IsWrongLastSequence(err) {
			t.Errorf("IsWrongLastSequence(%v)", err)
		}
	}
	// And a single server cannot keep replicas.
	if err := Ensure(ctx, js, Config{Replicas: 3}); err == nil {
		t.Fatal("ensured R3 streams on a single server")
	}
}

func TestEmbeddedOptionsValidate(t *testing.T) {
	ok := func() EmbeddedOptions {
		return EmbeddedOptions{StoreDir: "d", Listen: "127.0.0.1:0", Name: "n1",
			Cluster: &ClusterOptions{Listen: "127.0.0.1:6222", Routes: []string{"nats-route://127.0.0.1:6223"}}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		edit     func(*EmbeddedOptions)
		loopback bool // refused as off loopback
	}{
		{"no store", func(o *EmbeddedOptions) { o.StoreDir = "" }, false},
		{"negative sync", func(o *EmbeddedOptions) { o.SyncInterval = -time.Second }, false},
		{"no name", func(o *EmbeddedOptions) { o.Name = "" }, false},
		{"name with space", func(o *EmbeddedOptions) { o.Name = "n 1" }, false},
		{"no client listener", func(o *EmbeddedOptions) { o.Listen = "" }, false},
		{"no routes", func(o *EmbeddedOptions) { o.Cluster.Routes = nil }, false},
		{"no route listener", func(o *EmbeddedOptions) { o.Cluster.Listen = "" }, false},
		{"route listener on every interface", func(o *EmbeddedOptions) { o.Cluster.Listen = ":6222" }, true},
		{"route listener on 0.0.0.0", func(o *EmbeddedOptions) { o.Cluster.Listen = "0.0.0.0:6222" }, true},
		{"route listener off loopback", func(o *EmbeddedOptions) { o.Cluster.Listen = "10.0.0.1:6222" }, true},
		{"route listener by host name", func(o *EmbeddedOptions) { o.Cluster.Listen = "example.com:6222" }, true},
		{"route off loopback", func(o *EmbeddedOptions) { o.Cluster.Routes = []string{"nats-route://192.168.1.2:6222"} }, true},
		{"route not a route URL", func(o *EmbeddedOptions) { o.Cluster.Routes = []string{"nats://127.0.0.1:6222"} }, false},
		{"route with a password", func(o *EmbeddedOptions) { o.Cluster.Routes = []string{"nats-route://u:p@127.0.0.1:6222"} }, false},
	} {
		o := ok()
		tc.edit(&o)
		err := o.Validate()
		if err == nil || errors.Is(err, ErrNotLoopback) != tc.loopback {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, addr := range []string{"127.0.0.2:6222", "[::1]:6222", "localhost:6222"} {
		o := ok()
		o.Cluster.Listen = addr
		if err := o.Validate(); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
