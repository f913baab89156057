package transport

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeGrabBody(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	const idErr = "user_id must be 1-128 bytes of [A-Za-z0-9_.:-]"

	tests := []struct {
		name    string
		body    string
		want    GrabBody
		wantErr string // exact Error() text; "" means success
	}{
		// Accepted bodies.
		{"basic", `{"user_id":"user-123456","qty":1}`, GrabBody{"user-123456", 1}, ""},
		{"qty absent", `{"user_id":"u1"}`, GrabBody{"u1", 1}, ""},
		{"qty first", `{"qty":2,"user_id":"u1"}`, GrabBody{"u1", 2}, ""},
		{"whitespace", " \t\r\n{ \"user_id\" : \"u1\" , \"qty\" : 3 }\n\t ", GrabBody{"u1", 3}, ""},
		{"all id chars", `{"user_id":"AZaz09_.:-"}`, GrabBody{"AZaz09_.:-", 1}, ""},
		{"id max len", `{"user_id":"` + long(MaxIDLen) + `"}`, GrabBody{long(MaxIDLen), 1}, ""},
		{"escaped id", `{"user_id":"u\u0031"}`, GrabBody{"u1", 1}, ""},
		{"escaped slash-free escapes", `{"user_id":"a\u002Db\u005f"}`, GrabBody{"a-b_", 1}, ""},
		{"escaped key", `{"user\u005fid":"u1","q\u0074y":7}`, GrabBody{"u1", 7}, ""},
		{"qty max", `{"user_id":"u1","qty":1000000}`, GrabBody{"u1", MaxQtyParse}, ""},
		{"id of 128 via escapes", `{"user_id":"` + strings.Repeat(`\u0061`, MaxIDLen) + `"}`, GrabBody{long(MaxIDLen), 1}, ""},

		// Size, emptiness, NUL, top level.
		{"empty", ``, GrabBody{}, "body is empty"},
		{"only whitespace", " \n\t\r", GrabBody{}, "body is empty"},
		{"too large", `{"user_id":"u1"}` + strings.Repeat(" ", MaxBodyBytes), GrabBody{}, "body exceeds 4096 bytes"},
		{"exactly max size ok", `{"user_id":"u1"}` + strings.Repeat(" ", MaxBodyBytes-len(`{"user_id":"u1"}`)), GrabBody{"u1", 1}, ""},
		{"NUL outside", "{\"user_id\":\"u1\"}\x00", GrabBody{}, "body contains a NUL byte"},
		{"NUL in string", "{\"user_id\":\"u\x001\"}", GrabBody{}, "body contains a NUL byte"},
		{"escaped NUL in id", `{"user_id":"u\u00001"}`, GrabBody{}, idErr},
		{"array", `[{"user_id":"u1"}]`, GrabBody{}, "body must be a JSON object"},
		{"string", `"u1"`, GrabBody{}, "body must be a JSON object"},
		{"number", `12`, GrabBody{}, "body must be a JSON object"},
		{"null", `null`, GrabBody{}, "body must be a JSON object"},
		{"garbage", `user_id=u1`, GrabBody{}, "body is not valid JSON"},
		{"BOM", "\xef\xbb\xbf{\"user_id\":\"u1\"}", GrabBody{}, "body is not valid JSON"},
		{"trailing object", `{"user_id":"u1"}{}`, GrabBody{}, "body has data after the JSON object"},
		{"trailing garbage", `{"user_id":"u1"} x`, GrabBody{}, "body has data after the JSON object"},
		{"trailing comma in obj", `{"user_id":"u1",}`, GrabBody{}, "body is not valid JSON"},
		{"unterminated object", `{"user_id":"u1"`, GrabBody{}, "body is not valid JSON"},
		{"unterminated after comma", `{"user_id":"u1",`, GrabBody{}, "body is not valid JSON"},
		{"open brace only", `{`, GrabBody{}, "body is not valid JSON"},
		{"missing colon", `{"user_id" "u1"}`, GrabBody{}, "body is not valid JSON"},
		{"missing value", `{"user_id":}`, GrabBody{}, "body is not valid JSON"},
		{"missing comma", `{"user_id":"u1" "qty":1}`, GrabBody{}, "body is not valid JSON"},
		{"unquoted key", `{user_id:"u1"}`, GrabBody{}, "body is not valid JSON"},
		{"single quotes", `{'user_id':'u1'}`, GrabBody{}, "body is not valid JSON"},
		{"empty object", `{}`, GrabBody{}, "user_id is required"},
		{"empty object ws", `{ }`, GrabBody{}, "user_id is required"},
		{"qty only", `{"qty":1}`, GrabBody{}, "user_id is required"},

		// Fields.
		{"unknown field", `{"user_id":"u1","foo":1}`, GrabBody{}, `unknown field "foo"`},
		{"unknown field first", `{"foo":{"x":[1]},"user_id":"u1"}`, GrabBody{}, `unknown field "foo"`},
		{"case sensitive", `{"User_ID":"u1"}`, GrabBody{}, `unknown field "User_ID"`},
		{"empty key", `{"":1}`, GrabBody{}, `unknown field ""`},
		{"key prefix", `{"user_i":"u1"}`, GrabBody{}, `unknown field "user_i"`},
		{"key extension", `{"user_idx":"u1"}`, GrabBody{}, `unknown field "user_idx"`},
		{"unknown field quoted", `{"a\"b\\c\n":1}`, GrabBody{}, `unknown field "a\"b\\c\n"`},
		{"unknown field unicode escaped", `{"é\u2028":1}`, GrabBody{}, `unknown field "\u00e9\u2028"`},
		{"unknown field long truncated", `{"` + long(100) + `":1}`, GrabBody{}, `unknown field "` + long(32) + `"...`},
		{"unknown field exactly 32", `{"` + long(32) + `":1}`, GrabBody{}, `unknown field "` + long(32) + `"`},
		{"unknown field truncated mid-rune", `{"` + long(31) + `éééé":1}`, GrabBody{}, `unknown field "` + long(31) + `"...`},
		{"unknown field lone surrogate", `{"\ud800":1}`, GrabBody{}, `unknown field "\ufffd"`},
		{"unknown field pair", `{"\ud83d\ude00":1}`, GrabBody{}, `unknown field "\U0001f600"`},
		{"duplicate user_id", `{"user_id":"u1","user_id":"u2"}`, GrabBody{}, `duplicate field "user_id"`},
		{"duplicate qty", `{"user_id":"u1","qty":1,"qty":2}`, GrabBody{}, `duplicate field "qty"`},
		{"duplicate via escape", `{"user_id":"u1","qty":1,"\u0071ty":2}`, GrabBody{}, `duplicate field "qty"`},

		// user_id values.
		{"user_id null", `{"user_id":null}`, GrabBody{}, "user_id must be a string"},
		{"user_id number", `{"user_id":123}`, GrabBody{}, "user_id must be a string"},
		{"user_id negative", `{"user_id":-1}`, GrabBody{}, "user_id must be a string"},
		{"user_id bool", `{"user_id":true}`, GrabBody{}, "user_id must be a string"},
		{"user_id false", `{"user_id":false}`, GrabBody{}, "user_id must be a string"},
		{"user_id object", `{"user_id":{"a":"b"}}`, GrabBody{}, "user_id must be a string"},
		{"user_id array", `{"user_id":["u1"]}`, GrabBody{}, "user_id must be a string"},
		{"user_id deep nesting", `{"user_id":` + strings.Repeat("[", 4000) + `}`, GrabBody{}, "user_id must be a string"},
		{"user_id bad literal", `{"user_id":u1}`, GrabBody{}, "body is not valid JSON"},
		{"user_id empty", `{"user_id":""}`, GrabBody{}, idErr},
		{"user_id too long", `{"user_id":"` + long(MaxIDLen+1) + `"}`, GrabBody{}, idErr},
		{"user_id way too long", `{"user_id":"` + long(3000) + `"}`, GrabBody{}, idErr},
		{"user_id space", `{"user_id":"u 1"}`, GrabBody{}, idErr},
		{"user_id slash", `{"user_id":"u/1"}`, GrabBody{}, idErr},
		{"user_id escaped slash", `{"user_id":"u\/1"}`, GrabBody{}, idErr},
		{"user_id non-ascii", `{"user_id":"üser"}`, GrabBody{}, idErr},
		{"user_id escaped newline", `{"user_id":"u\n"}`, GrabBody{}, idErr},
		{"user_id escaped tab", `{"user_id":"\tu"}`, GrabBody{}, idErr},
		{"user_id raw tab", "{\"user_id\":\"u\t1\"}", GrabBody{}, "body is not valid JSON"},
		{"user_id raw newline", "{\"user_id\":\"u\n1\"}", GrabBody{}, "body is not valid JSON"},
		{"user_id raw DEL", "{\"user_id\":\"u\x7f1\"}", GrabBody{}, idErr},
		{"user_id invalid utf8", "{\"user_id\":\"u\xff1\"}", GrabBody{}, "body is not valid UTF-8"},
		{"user_id overlong utf8", "{\"user_id\":\"\xc0\xaf\"}", GrabBody{}, "body is not valid UTF-8"},
		{"user_id utf8 surrogate", "{\"user_id\":\"\xed\xa0\x80\"}", GrabBody{}, "body is not valid UTF-8"},
		{"user_id truncated utf8", "{\"user_id\":\"\xe2\x82\"}", GrabBody{}, "body is not valid UTF-8"},
		{"key invalid utf8", "{\"\xff\":1}", GrabBody{}, "body is not valid UTF-8"},
		{"bad escape", `{"user_id":"u\x41"}`, GrabBody{}, "body is not valid JSON"},
		{"bad escape quote", `{"user_id":"u\'"}`, GrabBody{}, "body is not valid JSON"},
		{"short unicode escape", `{"user_id":"u\u41"}`, GrabBody{}, "body is not valid JSON"},
		{"bad hex", `{"user_id":"u\u00g1"}`, GrabBody{}, "body is not valid JSON"},
		{"escape at end", `{"user_id":"u\`, GrabBody{}, "body is not valid JSON"},
		{"unicode escape at end", `{"user_id":"u\u00`, GrabBody{}, "body is not valid JSON"},
		{"unterminated string", `{"user_id":"u1`, GrabBody{}, "body is not valid JSON"},
		{"high surrogate then bad escape", `{"user_id":"\ud800\u00zz"}`, GrabBody{}, "body is not valid JSON"},
		{"surrogate pair in id", `{"user_id":"\ud83d\ude00"}`, GrabBody{}, idErr},
		{"lone low surrogate in id", `{"user_id":"\udc00"}`, GrabBody{}, idErr},
		{"high surrogate then letter", `{"user_id":"\ud800\u0061"}`, GrabBody{}, idErr},
		{"id then garbage", `{"user_id":"bad id"x}`, GrabBody{}, "body is not valid JSON"},

		// qty values.
		{"qty zero", `{"user_id":"u1","qty":0}`, GrabBody{}, "qty must be at least 1"},
		{"qty negative zero", `{"user_id":"u1","qty":-0}`, GrabBody{}, "qty must be at least 1"},
		{"qty negative", `{"user_id":"u1","qty":-5}`, GrabBody{}, "qty must be at least 1"},
		{"qty huge negative", `{"user_id":"u1","qty":-99999999999999999999999}`, GrabBody{}, "qty must be at least 1"},
		{"qty above max", `{"user_id":"u1","qty":1000001}`, GrabBody{}, "qty is too large"},
		{"qty int64 max", `{"user_id":"u1","qty":9223372036854775807}`, GrabBody{}, "qty is too large"},
		{"qty overflow", `{"user_id":"u1","qty":99999999999999999999999999999}`, GrabBody{}, "qty is too large"},
		{"qty fraction", `{"user_id":"u1","qty":1.5}`, GrabBody{}, "qty must be an integer"},
		{"qty dot zero", `{"user_id":"u1","qty":1.0}`, GrabBody{}, "qty must be an integer"},
		{"qty exponent", `{"user_id":"u1","qty":1e2}`, GrabBody{}, "qty must be an integer"},
		{"qty exponent upper signed", `{"user_id":"u1","qty":1E+2}`, GrabBody{}, "qty must be an integer"},
		{"qty negative fraction", `{"user_id":"u1","qty":-0.5e-3}`, GrabBody{}, "qty must be an integer"},
		{"qty string", `{"user_id":"u1","qty":"2"}`, GrabBody{}, "qty must be an integer"},
		{"qty null", `{"user_id":"u1","qty":null}`, GrabBody{}, "qty must be an integer"},
		{"qty bool", `{"user_id":"u1","qty":true}`, GrabBody{}, "qty must be an integer"},
		{"qty object", `{"user_id":"u1","qty":{}}`, GrabBody{}, "qty must be an integer"},
		{"qty array", `{"user_id":"u1","qty":[1]}`, GrabBody{}, "qty must be an integer"},
		{"qty deep nesting", `{"qty":` + strings.Repeat("{", 4000), GrabBody{}, "qty must be an integer"},
		{"qty leading plus", `{"user_id":"u1","qty":+1}`, GrabBody{}, "body is not valid JSON"},
		{"qty leading zero", `{"user_id":"u1","qty":01}`, GrabBody{}, "body is not valid JSON"},
		{"qty negative leading zero", `{"user_id":"u1","qty":-01}`, GrabBody{}, "body is not valid JSON"},
		{"qty hex", `{"user_id":"u1","qty":0x10}`, GrabBody{}, "body is not valid JSON"},
		{"qty NaN", `{"user_id":"u1","qty":NaN}`, GrabBody{}, "body is not valid JSON"},
		{"qty Infinity", `{"user_id":"u1","qty":Infinity}`, GrabBody{}, "body is not valid JSON"},
		{"qty leading dot", `{"user_id":"u1","qty":.5}`, GrabBody{}, "body is not valid JSON"},
		{"qty trailing dot", `{"user_id":"u1","qty":1.}`, GrabBody{}, "body is not valid JSON"},
		{"qty bare exponent", `{"user_id":"u1","qty":1e}`, GrabBody{}, "body is not valid JSON"},
		{"qty exponent sign only", `{"user_id":"u1","qty":1e+}`, GrabBody{}, "body is not valid JSON"},
		{"qty minus only", `{"user_id":"u1","qty":-}`, GrabBody{}, "body is not valid JSON"},
		{"qty minus at end", `{"user_id":"u1","qty":-`, GrabBody{}, "body is not valid JSON"},
		{"qty at end", `{"user_id":"u1","qty":1`, GrabBody{}, "body is not valid JSON"},
		{"qty then garbage", `{"user_id":"u1","qty":1x}`, GrabBody{}, "body is not valid JSON"},
		{"qty zero then garbage", `{"user_id":"u1","qty":0x}`, GrabBody{}, "body is not valid JSON"},
		{"qty fraction then garbage", `{"user_id":"u1","qty":1.5.5}`, GrabBody{}, "body is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeGrabBody([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("DecodeGrabBody(%q) = %+v, nil; want error %q", tt.body, got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("DecodeGrabBody(%q) error = %q; want %q", tt.body, err.Error(), tt.wantErr)
				}
				if got != (GrabBody{}) {
					t.Fatalf("DecodeGrabBody(%q) returned non-zero body %+v with error", tt.body, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeGrabBody(%q) error = %q; want %+v", tt.body, err, tt.want)
			}
			if got != tt.want {
				t.Fatalf("DecodeGrabBody(%q) = %+v; want %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeGrabBodyErrorMessagesSafe(t *testing.T) {
	// Unknown field names are echoed back: they must be bounded and printable ASCII.
	bodies := []string{
		`{"` + strings.Repeat(`\u00e9`, 200) + `":1}`,
		`{"` + strings.Repeat(`\ud83d\ude00`, 200) + `":1}`,
		`{"` + strings.Repeat(`\"`, 200) + `":1}`,
		`{"` + strings.Repeat("\u2028", 200) + `":1}`,
		`{"\u0000\u001f\u007f<script>":1}`,
	}
	for _, b := range bodies {
		_, err := DecodeGrabBody([]byte(b))
		if err == nil {
			t.Fatalf("DecodeGrabBody(%q) accepted", b)
		}
		msg := err.Error()
		if len(msg) > 200 {
			t.Errorf("message too long (%d bytes): %q", len(msg), msg)
		}
		for i := 0; i < len(msg); i++ {
			if msg[i] < 0x20 || msg[i] >= 0x7f {
				t.Errorf("message has non-printable-ASCII byte %#x: %q", msg[i], msg)
				break
			}
		}
		if !strings.HasPrefix(msg, `unknown field "`) {
			t.Errorf("unexpected message %q", msg)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"", false},
		{"a", true},
		{"A", true},
		{"0", true},
		{"_", true},
		{".", true},
		{":", true},
		{"-", true},
		{"user-123456", true},
		{"tenant:user_1.2-x", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{strings.Repeat("z", MaxIDLen), true},
		{strings.Repeat("z", MaxIDLen+1), false},
		{"a b", false},
		{"a/b", false},
		{"a+b", false},
		{"a@b", false},
		{"a\x00", false},
		{"a\n", false},
		{"ü", false},
		{"a\x7f", false},
		{"a\xff", false},
		{"[", false},
		{"`", false},
		{"{", false},
	}
	for _, tt := range tests {
		if got := ValidID([]byte(tt.id)); got != tt.want {
			t.Errorf("ValidID(%q) = %v; want %v", tt.id, got, tt.want)
		}
	}
	// Exhaustive single-byte check against the spec'd character class.
	for c := 0; c < 256; c++ {
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-'
		if got := ValidID([]byte{byte(c)}); got != want {
			t.Errorf("ValidID([%#x]) = %v; want %v", c, got, want)
		}
	}
}

func TestDecodeGrabBodyAllocs(t *testing.T) {
	ok := []byte(`{"user_id":"user-123456","qty":1}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeGrabBody(ok) }); n > 1 {
		t.Errorf("DecodeGrabBody(valid) allocs = %v; want <= 1 (the UserID string)", n)
	}
	escaped := []byte(`{"user\u005fid":"user\u002d123456","qty":1}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeGrabBody(escaped) }); n > 1 {
		t.Errorf("DecodeGrabBody(escaped) allocs = %v; want <= 1", n)
	}
	// Fixed-text errors are preallocated.
	bad := []byte(`{"user_id":"u1","qty":0}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeGrabBody(bad) }); n != 0 {
		t.Errorf("DecodeGrabBody(qty 0) allocs = %v; want 0", n)
	}
}

func TestDecodeGrabBodyErrorsValidUTF8(t *testing.T) {
	for _, b := range []string{"", "{", `{"x":1}`, "{\"\xff\":1}", `{"user_id":"u","qty":2.5}`} {
		_, err := DecodeGrabBody([]byte(b))
		if err == nil || !utf8.ValidString(err.Error()) || err.Error() == "" {
			t.Errorf("DecodeGrabBody(%q) err = %v", b, err)
		}
	}
}

var gbBenchSink GrabBody

func BenchmarkDecodeGrabBody(b *testing.B) {
	body := []byte(`{"user_id":"user-123456","qty":1}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		g, err := DecodeGrabBody(body)
		if err != nil {
			b.Fatal(err)
		}
		gbBenchSink = g
	}
}
