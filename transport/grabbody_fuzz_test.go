package transport

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// gbRefResult is what encoding/json makes of a body.
type gbRefResult struct {
	obj  map[string]any // the single top-level object (decoded with UseNumber)
	dups bool           // a top-level key occurs more than once (encoding/json keeps the last silently)
}

// gbRefDecode parses body with encoding/json. ok is false unless body is exactly one JSON
// object, optionally surrounded by whitespace.
func gbRefDecode(body []byte) (res gbRefResult, ok bool) {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return res, false // Decode into a map also accepts null
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&res.obj); err != nil || res.obj == nil {
		return res, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return res, false // trailing data
	}

	// Duplicate keys only matter when the object has no other keys (otherwise both
	// directions of the differential check already know what to expect).
	for k := range res.obj {
		if k != "user_id" && k != "qty" {
			return res, true
		}
	}

	// Second pass to see duplicate keys, which Unmarshal into a map hides.
	dec = json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return res, false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return res, false
		}
		key, isStr := tok.(string)
		if !isStr {
			return res, false
		}
		if seen[key] {
			res.dups = true
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return res, false
		}
	}
	return res, true
}

// gbSmallPosInt reports whether s is a plain decimal literal of 1..7 digits without a leading zero.
func gbSmallPosInt(s string) bool {
	if len(s) == 0 || len(s) > 7 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func FuzzDecodeGrabBody(f *testing.F) {
	seeds := []string{
		`{"user_id":"user-123456","qty":1}`,
		`{"user_id":"u1"}`,
		`{"qty":2,"user_id":"u1"}`,
		" \t\r\n{ \"user_id\" : \"u1\" , \"qty\" : 3 }\n",
		`{"user_id":"AZaz09_.:-","qty":1000000}`,
		`{"user_id":"u\u0031"}`,
		`{"user\u005fid":"u1","q\u0074y":7}`,
		`{"user_id":"\ud83d\ude00"}`,
		`{"user_id":"\ud800\u0061"}`,
		`{"user_id":"\udc00"}`,
		`{"user_id":"a\"\\\/\b\f\n\r\t"}`,
		`{"user_id":"` + strings.Repeat("a", MaxIDLen) + `"}`,
		`{"user_id":"` + strings.Repeat("a", MaxIDLen+1) + `"}`,
		`{"user_id":""}`,
		`{"user_id":null}`,
		`{"user_id":123}`,
		`{"user_id":true}`,
		`{"user_id":{"a":1}}`,
		`{"user_id":["u1"]}`,
		`{"user_id":"u1","qty":null}`,
		`{"user_id":"u1","qty":"1"}`,
		`{"user_id":"u1","qty":0}`,
		`{"user_id":"u1","qty":-0}`,
		`{"user_id":"u1","qty":-1}`,
		`{"user_id":"u1","qty":1.5}`,
		`{"user_id":"u1","qty":1.0}`,
		`{"user_id":"u1","qty":1e2}`,
		`{"user_id":"u1","qty":1E-2}`,
		`{"user_id":"u1","qty":01}`,
		`{"user_id":"u1","qty":+1}`,
		`{"user_id":"u1","qty":0x1}`,
		`{"user_id":"u1","qty":NaN}`,
		`{"user_id":"u1","qty":1000001}`,
		`{"user_id":"u1","qty":9223372036854775808}`,
		`{"user_id":"u1","qty":[]}`,
		`{"user_id":"u1","qty":{}}`,
		`{"user_id":"u1","qty":1,"qty":2}`,
		`{"user_id":"u1","user_id":"u2"}`,
		`{"user_id":"u1","\u0071ty":1,"qty":2}`,
		`{"user_id":"u1","foo":1}`,
		`{"User_ID":"u1"}`,
		`{"` + strings.Repeat("k", 40) + `":1}`,
		`{"` + strings.Repeat("é", 20) + `":1}`,
		`{"":1}`,
		`{}`,
		`{`,
		`}`,
		`[]`,
		`null`,
		`"user_id"`,
		`1`,
		``,
		` `,
		`{"user_id":"u1"}{"user_id":"u2"}`,
		`{"user_id":"u1"} x`,
		`{"user_id":"u1",}`,
		`{"user_id" "u1"}`,
		`{"user_id":"u1" "qty":1}`,
		"{\"user_id\":\"u\x001\"}",
		"{\"user_id\":\"u\xff\"}",
		"{\"\xff\":1}",
		"{\"user_id\":\"u\t1\"}",
		"\xef\xbb\xbf{\"user_id\":\"u1\"}",
		`{"user_id":"u\x41"}`,
		`{"user_id":"u\u00g1"}`,
		`{"user_id":"u\`,
		`{"user_id":` + strings.Repeat("[", 100),
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeGrabBody(body) // a panic fails the fuzz run

		// encoding/json is only consulted when a check below can use it: for every accepted
		// body, and for rejected bodies that could meet the reverse check's preconditions.
		// Skipping it otherwise keeps each exec (and the fuzzer's O(n^2) minimization of
		// long interesting inputs) cheap.
		var ref gbRefResult
		refOK := false
		if err == nil || (len(body) <= MaxBodyBytes && utf8.Valid(body)) {
			ref, refOK = gbRefDecode(body)
		}

		if err != nil {
			msg := err.Error()
			if msg == "" || !utf8.ValidString(msg) || len(msg) > 200 {
				t.Fatalf("bad error message %q", msg)
			}
			if got != (GrabBody{}) {
				t.Fatalf("non-zero result %+v with error %q", got, msg)
			}
		} else {
			// Everything accepted satisfies the rules...
			if !ValidID([]byte(got.UserID)) {
				t.Fatalf("accepted invalid user_id %q", got.UserID)
			}
			if got.Qty < 1 || got.Qty > MaxQtyParse {
				t.Fatalf("accepted out-of-range qty %d", got.Qty)
			}
			if len(body) > MaxBodyBytes || bytes.IndexByte(body, 0) >= 0 || !utf8.Valid(body) {
				t.Fatalf("accepted oversized, NUL-containing or non-UTF-8 body %q", body)
			}
			// ...and encoding/json agrees it is one object with the same values.
			if !refOK {
				t.Fatalf("accepted %q, which encoding/json rejects as a single object", body)
			}
			if ref.dups {
				t.Fatalf("accepted %q, which has duplicate keys", body)
			}
			for k := range ref.obj {
				if k != "user_id" && k != "qty" {
					t.Fatalf("accepted %q with unknown key %q", body, k)
				}
			}
			if u, _ := ref.obj["user_id"].(string); u != got.UserID {
				t.Fatalf("user_id: got %q, encoding/json %q (body %q)", got.UserID, ref.obj["user_id"], body)
			}
			wantQty := int64(1)
			if q, present := ref.obj["qty"]; present {
				n, isNum := q.(json.Number)
				if !isNum {
					t.Fatalf("accepted non-number qty %#v (body %q)", q, body)
				}
				v, perr := strconv.ParseInt(string(n), 10, 64)
				if perr != nil {
					t.Fatalf("accepted qty %q that is not an integer literal (body %q)", n, body)
				}
				wantQty = v
			}
			if got.Qty != wantQty {
				t.Fatalf("qty: got %d, encoding/json %d (body %q)", got.Qty, wantQty, body)
			}
		}

		// Reverse: a clean, valid body by encoding/json's reading must be accepted.
		if !refOK || ref.dups || len(body) > MaxBodyBytes || !utf8.Valid(body) {
			return
		}
		u, isStr := ref.obj["user_id"].(string)
		if !isStr || !ValidID([]byte(u)) {
			return
		}
		wantQty := int64(1)
		for k, v := range ref.obj {
			switch k {
			case "user_id":
			case "qty":
				n, isNum := v.(json.Number)
				if !isNum || !gbSmallPosInt(string(n)) {
					return
				}
				q, perr := strconv.ParseInt(string(n), 10, 64)
				if perr != nil || q > MaxQtyParse {
					return
				}
				wantQty = q
			default:
				return
			}
		}
		if err != nil {
			t.Fatalf("rejected %q (%v), but encoding/json reads user_id=%q qty=%d", body, err, u, wantQty)
		}
		if got.UserID != u || got.Qty != wantQty {
			t.Fatalf("got %+v, encoding/json reads user_id=%q qty=%d (body %q)", got, u, wantQty, body)
		}
	})
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"", "a", "user-123456", "a b", "ü", "\x00", strings.Repeat("a", MaxIDLen), strings.Repeat("a", MaxIDLen+1)} {
		f.Add([]byte(s))
	}
	ref := regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	f.Fuzz(func(t *testing.T, b []byte) {
		// The regexp works on runes; restrict the comparison to the byte-level meaning.
		want := len(b) <= MaxIDLen && utf8.Valid(b) && ref.Match(b)
		if got := ValidID(b); got != want {
			t.Fatalf("ValidID(%q) = %v; want %v", b, got, want)
		}
		// An accepted id must round-trip through a body.
		if ValidID(b) {
			body := `{"user_id":"` + string(b) + `"}`
			g, err := DecodeGrabBody([]byte(body))
			if err != nil || g.UserID != string(b) || g.Qty != 1 {
				t.Fatalf("DecodeGrabBody(%q) = %+v, %v", body, g, err)
			}
		}
	})
}
