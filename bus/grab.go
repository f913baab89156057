package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/seckill/seckill/engine"
)

// GrabMsg is the body of a GRABS message: one confirmed grab. It is JSON so
// that order writers in other languages can read it; the field names are
// part of the contract.
type GrabMsg struct {
	GrabID string `json:"grab_id"` // "<item>.<shard>.<seq>", the order's key
	Item   string `json:"item"`
	Shard  int    `json:"shard"`
	Seq    uint64 `json:"seq"`
	User   string `json:"user"`
	Qty    int64  `json:"qty"`
	Key    string `json:"key"`   // idempotency key, "" when the buyer sent none
	AtMs   int64  `json:"at_ms"` // when the grab was decided, Unix milliseconds
	// PayByMs is the order's payment deadline (Unix ms), set by the relay
	// from the item's payment window so that a writer in another process
	// needs no item config; 0 when unknown.
	PayByMs int64 `json:"pay_by_ms"`
}

// NewGrabMsg is the message of a confirmed grab whose order must be paid by
// payByMs (0: unknown, the writer uses the item's window).
func NewGrabMsg(g engine.Grab, payByMs int64) GrabMsg {
	return GrabMsg{GrabID: g.ID(), Item: g.Item, Shard: g.Shard, Seq: g.Seq, User: g.User, Qty: g.Qty, Key: g.Key,
		AtMs: g.AtMs, PayByMs: payByMs}
}

// Grab is the confirmed grab m carries.
func (m GrabMsg) Grab() engine.Grab {
	return engine.Grab{Item: m.Item, Shard: m.Shard, Seq: m.Seq, User: m.User, Qty: m.Qty, Key: m.Key, AtMs: m.AtMs}
}

// ErrInvalidGrab is wrapped by every DecodeGrab and Validate error.
var ErrInvalidGrab = errors.New("invalid grab")

// Validate checks what DecodeGrab checks, for a message about to be sent.
func (m GrabMsg) Validate() error {
	item, shard, seq, ok := engine.ParseGrabID(m.GrabID)
	switch {
	case !ok:
		return fmt.Errorf("%w: grab_id %q", ErrInvalidGrab, m.GrabID)
	case item != m.Item || shard != m.Shard || seq != m.Seq:
		return fmt.Errorf("%w: grab_id %q does not match item %q shard %d seq %d", ErrInvalidGrab, m.GrabID, m.Item, m.Shard, m.Seq)
	case !engine.ValidID(m.User):
		return fmt.Errorf("%w: user %q", ErrInvalidGrab, m.User)
	case m.Qty < 1 || m.Qty > engine.MaxPerUserLimit: // no grab holds more units
		return fmt.Errorf("%w: qty %d", ErrInvalidGrab, m.Qty)
	case m.Key != "" && !engine.ValidKey(m.Key):
		return fmt.Errorf("%w: key %q", ErrInvalidGrab, m.Key)
	case m.AtMs < 0:
		return fmt.Errorf("%w: at_ms %d", ErrInvalidGrab, m.AtMs)
	case m.PayByMs != 0 && m.PayByMs < m.AtMs:
		return fmt.Errorf("%w: pay_by_ms %d before at_ms %d", ErrInvalidGrab, m.PayByMs, m.AtMs)
	}
	return nil
}

// EncodeGrab appends m as JSON to dst. It writes every field, in a fixed
// order, and does not validate (Validate does).
func EncodeGrab(dst []byte, m GrabMsg) []byte {
	dst = append(dst, `{"grab_id":`...)
	dst = appendString(dst, m.GrabID)
	dst = append(dst, `,"item":`...)
	dst = appendString(dst, m.Item)
	dst = append(dst, `,"shard":`...)
	dst = strconv.AppendInt(dst, int64(m.Shard), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, m.User)
	dst = append(dst, `,"qty":`...)
	dst = strconv.AppendInt(dst, m.Qty, 10)
	dst = append(dst, `,"key":`...)
	dst = appendString(dst, m.Key)
	dst = append(dst, `,"at_ms":`...)
	dst = strconv.AppendInt(dst, m.AtMs, 10)
	dst = append(dst, `,"pay_by_ms":`...)
	dst = strconv.AppendInt(dst, m.PayByMs, 10)
	return append(dst, '}')
}

// appendString writes s as a JSON string. Valid ids and keys are printable
// ASCII and take the fast path; anything else goes through encoding/json so
// that the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// EncodeGrabs appends the body of one GRABS message holding msgs: a lone
// grab as its object (EncodeGrab), several as a JSON array of them.
func EncodeGrabs(dst []byte, msgs []GrabMsg) []byte {
	if len(msgs) == 1 {
		return EncodeGrab(dst, msgs[0])
	}
	dst = append(dst, '[')
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = EncodeGrab(dst, m)
	}
	return append(dst, ']')
}

// DecodeGrab parses and validates a GRABS message body of one grab. It is
// strict: one JSON object with exactly the nine fields (names
// case-sensitive, each once), integers without fraction or exponent, strings
// of printable ASCII (escapes allowed), nothing after the object, and the
// values Validate accepts.
func DecodeGrab(b []byte) (GrabMsg, error) {
	var m GrabMsg
	if len(b) > MaxGrabMsgSize {
		return m, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidGrab, len(b), MaxGrabMsgSize)
	}
	d := decoder{b: b}
	if err := d.object(&m); err != nil {
		return GrabMsg{}, fmt.Errorf("%w: %v", ErrInvalidGrab, err)
	}
	if err := d.end(); err != nil {
		return GrabMsg{}, fmt.Errorf("%w: %v", ErrInvalidGrab, err)
	}
	if err := m.Validate(); err != nil {
		return GrabMsg{}, err
	}
	return m, nil
}

// DecodeGrabs parses and validates any GRABS message body: one grab object
// (DecodeGrab), or a JSON array of 1..MaxGrabsPerMsg such objects, each as
// strict as DecodeGrab's, all of one item (the message's subject).
func DecodeGrabs(b []byte) ([]GrabMsg, error) {
	if len(b) > MaxGrabMsgSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidGrab, len(b), MaxGrabMsgSize)
	}
	d := decoder{b: b}
	if !d.consume('[') {
		m, err := DecodeGrab(b)
		if err != nil {
			return nil, err
		}
		return []GrabMsg{m}, nil
	}
	var out []GrabMsg
	for {
		if len(out) == MaxGrabsPerMsg {
			return nil, fmt.Errorf("%w: more than %d grabs in one message", ErrInvalidGrab, MaxGrabsPerMsg)
		}
		var m GrabMsg
		if err := d.object(&m); err != nil {
			return nil, fmt.Errorf("%w: grab %d: %v", ErrInvalidGrab, len(out), err)
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("grab %d: %w", len(out), err)
		}
		if len(out) > 0 && m.Item != out[0].Item {
			return nil, fmt.Errorf("%w: grab %d is of item %q, grab 0 of %q", ErrInvalidGrab, len(out), m.Item, out[0].Item)
		}
		out = append(out, m)
		if d.consume(',') {
			continue
		}
		if !d.consume(']') {
			return nil, fmt.Errorf("%w: %v", ErrInvalidGrab, d.errorf("want ',' or ']'"))
		}
		break
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGrab, err)
	}
	return out, nil
}

// decoder is a small strict JSON reader for the flat GrabMsg object:
// encoding/json matches field names case-insensitively, accepts duplicate
// fields and floats, which would let two spellings of one grab disagree.
type decoder struct {
	b []byte
	i int
}

const (
	fGrabID = 1 << iota
	fItem
	fShard
	fSeq
	fUser
	fQty
	fKey
	fAtMs
	fPayByMs
	fAll = 1<<iota - 1
)

func (d *decoder) object(m *GrabMsg) error {
	if !d.consume('{') {
		return d.errorf("want '{'")
	}
	var seen int
	for {
		name, err := d.string()
		if err != nil {
			return err
		}
		if !d.consume(':') {
			return d.errorf("want ':'")
		}
		var bit int
		switch name {
		case "grab_id":
			bit = fGrabID
			m.GrabID, err = d.string()
		case "item":
			bit = fItem
			m.Item, err = d.string()
		case "shard":
			bit = fShard
			var n int64
			n, err = d.int(0, engine.MaxShards-1)
			m.Shard = int(n)
		case "seq":
			bit = fSeq
			m.Seq, err = d.uint()
		case "user":
			bit = fUser
			m.User, err = d.string()
		case "qty":
			bit = fQty
			m.Qty, err = d.int(1, engine.MaxPerUserLimit)
		case "key":
			bit = fKey
			m.Key, err = d.string()
		case "at_ms":
			bit = fAtMs
			m.AtMs, err = d.int(0, 1<<63-1)
		case "pay_by_ms":
			bit = fPayByMs
			m.PayByMs, err = d.int(0, 1<<63-1)
		default:
			return d.errorf("unknown field %q", name)
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		if seen&bit != 0 {
			return d.errorf("duplicate field %q", name)
		}
		seen |= bit
		if d.consume(',') {
			continue
		}
		if !d.consume('}') {
			return d.errorf("want ',' or '}'")
		}
		break
	}
	if seen != fAll {
		return fmt.Errorf("missing field %s", missingField(seen))
	}
	return nil
}

// end checks that nothing but white space follows.
func (d *decoder) end() error {
	d.space()
	if d.i != len(d.b) {
		return d.errorf("data after the message")
	}
	return nil
}

func missingField(seen int) string {
	for i, name := range []string{"grab_id", "item", "shard", "seq", "user", "qty", "key", "at_ms", "pay_by_ms"} {
		if seen&(1<<i) == 0 {
			return name
		}
	}
	return ""
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{d.i}, args...)...)
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, reporting whether c was there.
func (d *decoder) consume(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// string reads a JSON string of printable ASCII. Escapes are decoded, but
// only to printable ASCII: no field may hold anything else.
func (d *decoder) string() (string, error) {
	if !d.consume('"') {
		return "", d.errorf("want a string")
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s, nil
		case c == '\\':
			return d.escapedString(start)
		case c < 0x20 || c > 0x7e:
			return "", d.errorf("byte 0x%02x in a string", c)
		}
		d.i++
	}
	return "", d.errorf("unterminated string")
}

// escapedString continues string from the first backslash.
func (d *decoder) escapedString(start int) (string, error) {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), nil
		case c < 0x20 || c > 0x7e:
			return "", d.errorf("byte 0x%02x in a string", c)
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			break
		}
		switch e := d.b[d.i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
			d.i += 2
		case 'u':
			if d.i+6 > len(d.b) {
				return "", d.errorf("short \\u escape")
			}
			r, err := strconv.ParseUint(string(d.b[d.i+2:d.i+6]), 16, 16)
			if err != nil || r < 0x20 || r > 0x7e {
				return "", d.errorf("escape %q is not printable ASCII", d.b[d.i:d.i+6])
			}
			out = append(out, byte(r))
			d.i += 6
		default:
			return "", d.errorf("escape \\%c is not printable ASCII", e)
		}
	}
	return "", d.errorf("unterminated string")
}

// digits reads a JSON integer: an optional '-', then "0" or a digit 1-9
// followed by digits; a fraction or exponent is refused.
func (d *decoder) digits() (neg bool, s string, err error) {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '-' {
		neg = true
		d.i++
	}
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	s = string(d.b[start:d.i])
	switch {
	case s == "":
		return false, "", d.errorf("want an integer")
	case len(s) > 1 && s[0] == '0':
		return false, "", d.errorf("leading zero")
	case d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E'):
		return false, "", d.errorf("want an integer")
	}
	return neg, s, nil
}

func (d *decoder) int(lo, hi int64) (int64, error) {
	neg, s, err := d.digits()
	if err != nil {
		return 0, err
	}
	if neg {
		s = "-" + s
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s out of range [%d, %d]", s, lo, hi)
	}
	return n, nil
}

func (d *decoder) uint() (uint64, error) {
	neg, s, err := d.digits()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if neg || err != nil {
		return 0, fmt.Errorf("%s out of range", s)
	}
	return n, nil
}
