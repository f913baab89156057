package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Every answer the contract tests get through http.DefaultClient is
// recorded and, once they have all run, checked against openapi.json: a
// status the document does not list for the operation, or a body that
// does not match its schema, fails the package. So the document and the
// code cannot drift apart.

// maxRecorded bounds the distinct answers kept (same method, path, status
// and body are kept once): the load tests send tens of thousands alike.
const maxRecorded = 20_000

type exchange struct {
	method, url string
	status      int
	header      http.Header
	body        []byte
}

type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[string]bool
	all  []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil
	}
	key := fmt.Sprintf("%s %s %d %s", req.Method, req.URL.Path, resp.StatusCode, body)
	r.mu.Lock()
	if !r.seen[key] && len(r.all) < maxRecorded {
		r.seen[key] = true
		r.all = append(r.all, exchange{req.Method, req.URL.String(), resp.StatusCode, resp.Header.Clone(), body})
	}
	r.mu.Unlock()
	return resp, nil
}

var recorded = &recorder{next: http.DefaultTransport, seen: map[string]bool{}}

func TestMain(m *testing.M) {
	http.DefaultTransport = recorded
	code := m.Run()
	if code == 0 && len(recorded.all) > 0 {
		if err := checkContract(recorded.all); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: answers that do not match transport/openapi.json:\n"+err.Error())
			code = 1
		} else if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "openapi: %d distinct answers match transport/openapi.json\n", len(recorded.all))
		}
	}
	os.Exit(code)
}

func loadContract() (*openapi3.T, routers.Router, error) {
	// The dashboard is a page: its body is checked as a string.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDoc)
	if err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("validate document: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	return doc, router, err
}

// checkContract validates every exchange; it returns all the mismatches.
func checkContract(all []exchange) error {
	_, router, err := loadContract()
	if err != nil {
		return err
	}
	var bad []string
	for _, x := range all {
		if err := checkExchange(router, x); err != nil {
			bad = append(bad, fmt.Sprintf("%s %s -> %d %.300s\n    %v", x.method, x.url, x.status, x.body, err))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d answers:\n%s", len(bad), len(all), strings.Join(bad, "\n"))
	}
	return nil
}

func checkExchange(router routers.Router, x exchange) error {
	req, err := http.NewRequest(x.method, x.url, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		// A path or method the API does not have: only the generic 404
		// and 405 answers may come back, in the error form.
		if x.status != 404 && x.status != 405 {
			return fmt.Errorf("no operation in the document: %v", err)
		}
		return checkErrorBody(x.body)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if x.status == 405 {
		return checkErrorBody(x.body)
	}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: x.status, Header: x.header,
		Body: io.NopCloser(bytes.NewReader(x.body)), Options: opts,
	})
}

func checkErrorBody(b []byte) error {
	if !bytes.HasPrefix(b, []byte(`{"status":`)) {
		return fmt.Errorf("not an error body")
	}
	return nil
}

// TestContractCheckFails: the check refuses an answer that is not in the
// document (a status not listed, a body of the wrong shape) and accepts
// one that is, so a drift cannot pass unseen.
func TestContractCheckFails(t *testing.T) {
	_, router, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:1"
	for _, c := range []struct {
		x  exchange
		ok bool
	}{
		{exchange{"GET", base + "/v1/time", 200, jsonHeader(), []byte(`{"now_ms":1}`)}, true},
		{exchange{"GET", base + "/v1/time", 200, jsonHeader(), []byte(`{"now":1}`)}, false},
		{exchange{"GET", base + "/v1/time", 418, jsonHeader(), []byte(`{"status":"teapot"}`)}, false},
		{exchange{"POST", base + "/v1/items/x/grab", 201, jsonHeader(),
			[]byte(`{"status":"confirmed","grab_id":"x.0.1","item":"x","user_id":"u","qty":1}`)}, true},
		{exchange{"POST", base + "/v1/items/x/grab", 201, jsonHeader(), []byte(`{"status":"confirmed","grab_id":"x.0.1"}`)}, false},
		{exchange{"POST", base + "/v1/items/x/grab", 409, jsonHeader(), []byte(`{"status":"sold_out"}`)}, true},
		{exchange{"POST", base + "/v1/items/x/grab", 409, jsonHeader(), []byte(`{"status":"gone"}`)}, false},
		{exchange{"GET", base + "/nope", 404, jsonHeader(), []byte(`{"status":"not_found","error":"no such path"}`)}, true},
		{exchange{"GET", base + "/nope", 200, jsonHeader(), []byte(`{}`)}, false},
	} {
		err := checkExchange(router, c.x)
		if (err == nil) != c.ok {
			t.Errorf("%s %s %d %s: err %v, want ok=%v", c.x.method, c.x.url, c.x.status, c.x.body, err, c.ok)
		}
	}
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// TestOpenAPIServed: GET /openapi.json is the embedded document, and it is
// OpenAPI 3.1.
func TestOpenAPIServed(t *testing.T) {
	ts := startServer(t)
	r := ts.do(t, "GET", "/openapi.json", "", nil)
	if r.code != 200 || r.raw != string(openAPIDoc) || !strings.Contains(r.raw, `"openapi": "3.1.0"`) {
		t.Fatalf("openapi.json: %d %.100s", r.code, r.raw)
	}
}
