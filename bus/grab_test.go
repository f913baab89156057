package bus

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/seckill/seckill/engine"
)

func TestGrabRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 128)
	for _, m := range []GrabMsg{
		{GrabID: "phone-x.5.1", Item: "phone-x", Shard: 5, Seq: 1, User: "u1", Qty: 1, Key: "7f3a-1", AtMs: 1_763_726_400_000, PayByMs: 1_763_727_300_000},
		{GrabID: "a.0.18446744073709551615", Item: "a", Shard: 0, Seq: 1<<64 - 1, User: "u", Qty: engine.MaxPerUserLimit, Key: "", AtMs: 0},
		{GrabID: "a..b..1023.7", Item: "a..b.", Shard: 1023, Seq: 7, User: "A_z:0-9.", Qty: 2, Key: `say "hi" \ {}`, AtMs: 1<<63 - 1, PayByMs: 1<<63 - 1},
		{GrabID: long + ".1.2", Item: long, Shard: 1, Seq: 2, User: long, Qty: 3, Key: strings.Repeat(`"`, 64), AtMs: 5, PayByMs: 1 << 62},
	} {
		b := EncodeGrab(nil, m)
		got, err := DecodeGrab(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got != m {
			t.Fatalf("%s: decoded %+v, want %+v", b, got, m)
		}
		var std GrabMsg // other languages read it as plain JSON
		if err := json.Unmarshal(b, &std); err != nil || std != m {
			t.Fatalf("%s: encoding/json reads %+v, %v", b, std, err)
		}
		if len(b) > MaxGrabMsgSize {
			t.Fatalf("%d bytes encoded, MaxGrabMsgSize %d", len(b), MaxGrabMsgSize)
		}
	}
}

func TestDecodeGrabAccepts(t *testing.T) {
	want := GrabMsg{GrabID: "p.2.3", Item: "p", Shard: 2, Seq: 3, User: "u", Qty: 1, Key: "</&>", AtMs: 9, PayByMs: 10}
	for name, in := range map[string]string{
		"other order and spaces": " {\n\t\"pay_by_ms\":10, \"at_ms\" : 9 , \"key\":\"</&>\",\"qty\":1,\"user\":\"u\",\"seq\":3,\"shard\":2,\"item\":\"p\",\"grab_id\":\"p.2.3\"}\r\n",
		"escapes":                `{"grab_id":"p\u002e2.3","item":"p","shard":2,"seq":3,"user":"u","qty":1,"key":"\u003c\/\u0026\u003e","at_ms":9,"pay_by_ms":10}`,
	} {
		got, err := DecodeGrab([]byte(in))
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v", name, got, err)
		}
	}
}

func TestDecodeGrabRejects(t *testing.T) {
	const ok = `"grab_id":"p.2.3","item":"p","shard":2,"seq":3,"user":"u","qty":1,"key":"","at_ms":9,"pay_by_ms":0`
	if _, err := DecodeGrab([]byte(`{` + ok + `}`)); err != nil {
		t.Fatalf("the base case: %v", err)
	}
	for name, in := range map[string]string{
		"empty":                "",
		"not an object":        `[1]`,
		"unknown field":        `{` + ok + `,"extra":1}`,
		"missing field":        `{"grab_id":"p.2.3","item":"p","shard":2,"seq":3,"user":"u","qty":1,"at_ms":9,"pay_by_ms":0}`,
		"duplicate field":      `{` + ok + `,"qty":1}`,
		"field name case":      strings.Replace(`{`+ok+`}`, `"grab_id"`, `"Grab_Id"`, 1),
		"data after":           `{` + ok + `} {}`,
		"trailing comma":       `{` + ok + `,}`,
		"unterminated":         `{` + ok,
		"float qty":            strings.Replace(`{`+ok+`}`, `"qty":1`, `"qty":1.0`, 1),
		"exponent":             strings.Replace(`{`+ok+`}`, `"qty":1`, `"qty":1e0`, 1),
		"leading zero":         strings.Replace(`{`+ok+`}`, `"seq":3`, `"seq":03`, 1),
		"qty zero":             strings.Replace(`{`+ok+`}`, `"qty":1`, `"qty":0`, 1),
		"qty over max":         strings.Replace(`{`+ok+`}`, `"qty":1`, `"qty":1001`, 1),
		"qty as string":        strings.Replace(`{`+ok+`}`, `"qty":1`, `"qty":"1"`, 1),
		"negative seq":         strings.Replace(`{`+ok+`}`, `"seq":3`, `"seq":-3`, 1),
		"seq overflow":         strings.Replace(`{`+ok+`}`, `"seq":3`, `"seq":18446744073709551616`, 1),
		"shard out of range":   strings.NewReplacer(`"p.2.3"`, `"p.1024.3"`, `"shard":2`, `"shard":1024`).Replace(`{` + ok + `}`),
		"pay before grab":      strings.Replace(`{`+ok+`}`, `"pay_by_ms":0`, `"pay_by_ms":8`, 1),
		"negative pay_by_ms":   strings.Replace(`{`+ok+`}`, `"pay_by_ms":0`, `"pay_by_ms":-1`, 1),
		"negative at_ms":       strings.Replace(`{`+ok+`}`, `"at_ms":9`, `"at_ms":-9`, 1),
		"id does not match":    strings.Replace(`{`+ok+`}`, `"shard":2`, `"shard":4`, 1),
		"id does not parse":    strings.Replace(`{`+ok+`}`, `"p.2.3"`, `"p-2-3"`, 1),
		"id with leading zero": strings.Replace(`{`+ok+`}`, `"p.2.3"`, `"p.02.3"`, 1),
		"bad user byte":        strings.Replace(`{`+ok+`}`, `"user":"u"`, `"user":"u!"`, 1),
		"empty user":           strings.Replace(`{`+ok+`}`, `"user":"u"`, `"user":""`, 1),
		"long user":            strings.Replace(`{`+ok+`}`, `"user":"u"`, `"user":"`+strings.Repeat("u", 129)+`"`, 1),
		"long key":             strings.Replace(`{`+ok+`}`, `"key":""`, `"key":"`+strings.Repeat("k", 65)+`"`, 1),
		"control escape":       strings.Replace(`{`+ok+`}`, `"key":""`, `"key":"a\nb"`, 1),
		"raw control byte":     strings.Replace(`{`+ok+`}`, `"key":""`, "\"key\":\"a\tb\"", 1),
		"non-ascii":            strings.Replace(`{`+ok+`}`, `"key":""`, `"key":"é"`, 1),
		"non-ascii escape":     strings.Replace(`{`+ok+`}`, `"key":""`, `"key":"\u00e9"`, 1),
		"short escape":         strings.Replace(`{`+ok+`}`, `"key":""`, `"key":"\u00"`, 1),
		"null":                 strings.Replace(`{`+ok+`}`, `"key":""`, `"key":null`, 1),
		"too big":              `{` + ok + strings.Repeat(" ", MaxGrabMsgSize) + `}`,
	} {
		if m, err := DecodeGrab([]byte(in)); err == nil || !errors.Is(err, ErrInvalidGrab) {
			t.Errorf("%s: got %+v, %v; want ErrInvalidGrab", name, m, err)
		}
	}
}

// FuzzDecodeGrab: DecodeGrab never panics, accepts only what Validate
// accepts and encoding/json reads the same way, and what it accepts
// survives a round trip through EncodeGrab.
func FuzzDecodeGrab(f *testing.F) {
	for _, m := range grabs("seed", 1, 2) {
		f.Add(EncodeGrab(nil, m))
	}
	f.Add([]byte(`{"grab_id":"p.2.3","item":"p","shard":2,"seq":3,"user":"u","qty":1,"key":"\/\u003c\"","at_ms":9,"pay_by_ms":10}`))
	f.Add([]byte(`{"grab_id":"p.2.3","item":"p","shard":2,"seq":3,"user":"u","qty":1.5,"key":"","at_ms":9,"pay_by_ms":0}`))
	f.Add([]byte(`{"grab_id":"p.2.3"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeGrab(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidGrab) {
				t.Fatalf("error %v does not wrap ErrInvalidGrab", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded an invalid grab: %v", err)
		}
		var std GrabMsg
		if err := json.Unmarshal(b, &std); err != nil || std != m {
			t.Fatalf("encoding/json reads %+v, %v; we read %+v", std, err, m)
		}
		again, err := DecodeGrab(EncodeGrab(nil, m))
		if err != nil || again != m {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, m)
		}
	})
}

func TestGrabsRoundTrip(t *testing.T) {
	long := strings.Repeat("x", engine.MaxIDLen)
	maximal := make([]GrabMsg, MaxGrabsPerMsg) // the largest message the relay sends
	for i := range maximal {
		g := engine.Grab{Item: long, Shard: engine.MaxShards - 1, Seq: uint64(1<<64-1) - uint64(i), User: long,
			Qty: engine.MaxPerUserLimit, Key: strings.Repeat(`"`, engine.MaxKeyLen), AtMs: 1<<63 - 1}
		maximal[i] = NewGrabMsg(g, 1<<63-1)
		if maximal[i].Grab() != g {
			t.Fatalf("grab %s back from its message: %+v", g.ID(), maximal[i].Grab())
		}
	}
	for name, run := range map[string][]GrabMsg{
		"one":     grabs("p", 7, 1),
		"two":     grabs("p", 7, 2),
		"maximal": maximal,
	} {
		b := EncodeGrabs(nil, run)
		if len(b) > MaxGrabMsgSize {
			t.Fatalf("%s: %d bytes encoded, MaxGrabMsgSize %d", name, len(b), MaxGrabMsgSize)
		}
		got, err := DecodeGrabs(b)
		if err != nil || !slices.Equal(got, run) {
			t.Fatalf("%s: decoded %d grabs, %v", name, len(got), err)
		}
		var std []GrabMsg // other languages read a run as a plain JSON array
		if len(run) == 1 {
			std = make([]GrabMsg, 1)
			err = json.Unmarshal(b, &std[0])
		} else {
			err = json.Unmarshal(b, &std)
		}
		if err != nil || !slices.Equal(std, run) {
			t.Fatalf("%s: encoding/json reads %d grabs, %v", name, len(std), err)
		}
	}
}

func TestDecodeGrabsRejects(t *testing.T) {
	one := string(EncodeGrab(nil, grabs("p", 1, 1)[0]))
	other := string(EncodeGrab(nil, grabs("q", 2, 1)[0]))
	if _, err := DecodeGrabs([]byte(`[` + one + `]`)); err != nil {
		t.Fatalf("the base case: %v", err)
	}
	for name, in := range map[string]string{
		"empty array":     `[]`,
		"too many":        `[` + strings.Repeat(one+`,`, MaxGrabsPerMsg) + one + `]`,
		"two items":       `[` + one + `,` + other + `]`,
		"trailing comma":  `[` + one + `,]`,
		"data after":      `[` + one + `] x`,
		"unterminated":    `[` + one,
		"nested":          `[[` + one + `]]`,
		"not an object":   `[1]`,
		"invalid element": `[` + one + `,` + strings.Replace(one, `"qty":1`, `"qty":0`, 1) + `]`,
		"bad single":      `{}`,
		"too big":         `[` + one + strings.Repeat(" ", MaxGrabMsgSize) + `]`,
	} {
		if got, err := DecodeGrabs([]byte(in)); err == nil || !errors.Is(err, ErrInvalidGrab) {
			t.Errorf("%s: got %d grabs, %v; want ErrInvalidGrab", name, len(got), err)
		}
	}
}

// FuzzDecodeGrabs: DecodeGrabs never panics, accepts only runs of 1 to
// MaxGrabsPerMsg valid grabs of one item that encoding/json reads the same
// way, and what it accepts survives a round trip through EncodeGrabs.
func FuzzDecodeGrabs(f *testing.F) {
	f.Add(EncodeGrabs(nil, grabs("seed", 1, 1)))
	f.Add(EncodeGrabs(nil, grabs("seed", 1, 3)))
	f.Add([]byte(`[` + string(EncodeGrab(nil, grabs("p", 1, 1)[0])) + `,{"grab_id":"q.1.1"}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		run, err := DecodeGrabs(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidGrab) {
				t.Fatalf("error %v does not wrap ErrInvalidGrab", err)
			}
			return
		}
		if len(run) < 1 || len(run) > MaxGrabsPerMsg {
			t.Fatalf("decoded %d grabs", len(run))
		}
		for _, m := range run {
			if err := m.Validate(); err != nil || m.Item != run[0].Item {
				t.Fatalf("decoded %+v in a run of %q: %v", m, run[0].Item, err)
			}
		}
		var std []GrabMsg
		if err := json.Unmarshal(b, &std); err != nil {
			std = make([]GrabMsg, 1)
			err = json.Unmarshal(b, &std[0])
			if err != nil {
				t.Fatalf("encoding/json cannot read what we read: %v", err)
			}
		}
		if !slices.Equal(std, run) {
			t.Fatalf("encoding/json reads %+v; we read %+v", std, run)
		}
		again, err := DecodeGrabs(EncodeGrabs(nil, run))
		if err != nil || !slices.Equal(again, run) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, run)
		}
	})
}
