package transport

import (
	"bytes"
	"errors"
	"github.com/seckill/seckill/engine"
	"strconv"
	"unicode/utf8"
)

// Limits for the body of POST /v1/items/{item}/grab.
const (
	MaxBodyBytes = 4096            // request body limit: a valid body is < 200 bytes, 4 KiB leaves room for whitespace/escapes while bounding parse work per request
	MaxIDLen     = engine.MaxIDLen // item and user ids: 1..128 bytes of [A-Za-z0-9_.:-]; fits UUIDs/ULIDs and "tenant:user" style ids while keeping store keys and logs small
	MaxQtyParse  = 1_000_000       // sanity bound only (per-item limits are checked elsewhere); keeps qty far from int64 overflow in any downstream arithmetic
)

// gbMaxFieldNameInError bounds how much of an unknown field name is echoed back in an error,
// so a client cannot make us reflect kilobytes of its own input.
const gbMaxFieldNameInError = 32

// GrabBody is the decoded body.
type GrabBody struct {
	UserID string
	Qty    int64 // 1 when absent
}

// Errors with fixed text are preallocated so that rejecting a bad body does not allocate
// (except for unknown-field errors, which name the field).
var (
	gbErrTooLarge     = errors.New("body exceeds " + strconv.Itoa(MaxBodyBytes) + " bytes")
	gbErrEmpty        = errors.New("body is empty")
	gbErrNUL          = errors.New("body contains a NUL byte")
	gbErrSyntax       = errors.New("body is not valid JSON")
	gbErrUTF8         = errors.New("body is not valid UTF-8")
	gbErrNotObject    = errors.New("body must be a JSON object")
	gbErrTrailing     = errors.New("body has data after the JSON object")
	gbErrUserRequired = errors.New("user_id is required")
	gbErrUserType     = errors.New("user_id must be a string")
	gbErrUserInvalid  = errors.New("user_id must be 1-" + strconv.Itoa(MaxIDLen) + " bytes of [A-Za-z0-9_.:-]")
	gbErrUserDup      = errors.New(`duplicate field "user_id"`)
	gbErrQtyType      = errors.New("qty must be an integer")
	gbErrQtyMin       = errors.New("qty must be at least 1")
	gbErrQtyTooLarge  = errors.New("qty is too large")
	gbErrQtyDup       = errors.New(`duplicate field "qty"`)
)

// ValidID reports whether b is 1..MaxIDLen bytes of [A-Za-z0-9_.:-].
func ValidID(b []byte) bool { return engine.ValidID(b) }

const (
	gbFieldUnknown = iota
	gbFieldUserID
	gbFieldQty
)

// DecodeGrabBody parses body. On failure it returns a non-nil error whose Error() text is a short,
// human-readable English description naming the problem, suitable to put in a JSON
// {"status":"bad_request","error":"..."} response (e.g. "body is not valid JSON", "user_id is required",
// "user_id must be 1-128 bytes of [A-Za-z0-9_.:-]", "qty must be an integer", "qty must be at least 1",
// "unknown field \"foo\"", "duplicate field \"qty\"", "body exceeds 4096 bytes", "body must be a JSON object").
//
// The body must be exactly one JSON object (surrounding JSON whitespace allowed) with a required
// string member "user_id" and an optional integer member "qty"; member names are matched exactly
// (case-sensitively) after unescaping. Parsing stops at the first problem found, scanning left to
// right, and that problem is reported. The parser is iterative (no recursion) and, on success,
// allocates only the returned UserID string.
func DecodeGrabBody(body []byte) (GrabBody, error) { return decodeGrabBody(body, true) }

// decodeGrabBody is DecodeGrabBody; without needUser, user_id may be left
// out (buyer auth: the token names the buyer) and UserID is then "".
func decodeGrabBody(body []byte, needUser bool) (GrabBody, error) {
	if len(body) > MaxBodyBytes {
		return GrabBody{}, gbErrTooLarge
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return GrabBody{}, gbErrNUL
	}
	i := gbSkipWS(body, 0)
	if i == len(body) {
		return GrabBody{}, gbErrEmpty
	}
	if body[i] != '{' {
		if gbValueStart(body[i]) {
			return GrabBody{}, gbErrNotObject
		}
		return GrabBody{}, gbErrSyntax
	}
	i = gbSkipWS(body, i+1)

	var (
		idBuf    [MaxIDLen]byte
		idLen    int
		haveUser bool
		haveQty  bool
		qty      int64 = 1
	)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			// Member name.
			if i >= len(body) || body[i] != '"' {
				return GrabBody{}, gbErrSyntax
			}
			var keyBuf [gbMaxFieldNameInError]byte
			end, n, err := gbScanString(body, i, keyBuf[:])
			if err != nil {
				return GrabBody{}, err
			}
			key := keyBuf[:min(n, len(keyBuf))]
			field := gbFieldUnknown
			switch {
			case n == len("user_id") && string(key) == "user_id":
				field = gbFieldUserID
			case n == len("qty") && string(key) == "qty":
				field = gbFieldQty
			}
			if field == gbFieldUnknown {
				return GrabBody{}, gbUnknownField(key, n > len(key))
			}
			i = gbSkipWS(body, end)
			if i >= len(body) || body[i] != ':' {
				return GrabBody{}, gbErrSyntax
			}
			i = gbSkipWS(body, i+1)
			if i >= len(body) {
				return GrabBody{}, gbErrSyntax
			}

			// Member value.
			c := body[i]
			switch field {
			case gbFieldUserID:
				if haveUser {
					return GrabBody{}, gbErrUserDup
				}
				haveUser = true
				if c != '"' {
					if gbValueStart(c) {
						return GrabBody{}, gbErrUserType
					}
					return GrabBody{}, gbErrSyntax
				}
				end, n, err := gbScanString(body, i, idBuf[:])
				if err != nil {
					return GrabBody{}, err
				}
				if !gbDelimOK(body, end) {
					return GrabBody{}, gbErrSyntax
				}
				if n > MaxIDLen || !ValidID(idBuf[:n]) {
					return GrabBody{}, gbErrUserInvalid
				}
				idLen = n
				i = end
			case gbFieldQty:
				if haveQty {
					return GrabBody{}, gbErrQtyDup
				}
				haveQty = true
				if c != '-' && (c < '0' || c > '9') {
					if gbValueStart(c) {
						return GrabBody{}, gbErrQtyType
					}
					return GrabBody{}, gbErrSyntax
				}
				end, q, err := gbScanQty(body, i)
				if err != nil {
					return GrabBody{}, err
				}
				qty = q
				i = end
			}

			// Separator or end of object.
			i = gbSkipWS(body, i)
			if i >= len(body) {
				return GrabBody{}, gbErrSyntax
			}
			if body[i] == ',' {
				i = gbSkipWS(body, i+1)
				continue
			}
			if body[i] == '}' {
				i++
				break
			}
			return GrabBody{}, gbErrSyntax
		}
	}
	if gbSkipWS(body, i) != len(body) {
		return GrabBody{}, gbErrTrailing
	}
	if !haveUser && needUser {
		return GrabBody{}, gbErrUserRequired
	}
	return GrabBody{UserID: string(idBuf[:idLen]), Qty: qty}, nil
}

// gbUnknownField builds the error for an unknown member name. name is the (possibly
// truncated) unescaped name, which is valid UTF-8 apart from a possibly cut last rune.
func gbUnknownField(name []byte, truncated bool) error {
	if truncated {
		// Drop a rune cut in half by truncation.
		if j := len(name) - 1; j >= 0 {
			for j > 0 && !utf8.RuneStart(name[j]) {
				j--
			}
			if !utf8.FullRune(name[j:]) {
				name = name[:j]
			}
		}
	}
	// QuoteToASCII yields printable ASCII whatever the input, so the message is safe to embed.
	msg := "unknown field " + strconv.QuoteToASCII(string(name))
	if truncated {
		msg += "..."
	}
	return errors.New(msg)
}

// gbSkipWS returns the index of the first non-whitespace byte at or after i.
func gbSkipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// gbValueStart reports whether c can begin a JSON value.
func gbValueStart(c byte) bool {
	switch c {
	case '{', '[', '"', '-', 't', 'f', 'n', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// gbDelimOK reports whether b[i] may follow a member value: whitespace, ',' or '}'.
// Checking it before semantic validation means a malformed body is reported as such
// (e.g. "qty":01 is invalid JSON, not "qty must be at least 1").
func gbDelimOK(b []byte, i int) bool {
	if i >= len(b) {
		return false
	}
	switch b[i] {
	case ' ', '\t', '\n', '\r', ',', '}':
		return true
	}
	return false
}

// gbPut stores c at dst[n] if there is room and returns n+1; the caller learns the full
// decoded length even when it exceeds len(dst).
func gbPut(dst []byte, n int, c byte) int {
	if n < len(dst) {
		dst[n] = c
	}
	return n + 1
}

// gbHex4 decodes the four hex digits at b[i:i+4].
func gbHex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// gbScanString validates the JSON string starting at b[i] == '"' and unescapes it into dst.
// It returns the index just past the closing quote and the full unescaped length n; only
// the first min(n, len(dst)) bytes are stored. Lone UTF-16 surrogates decode to U+FFFD,
// as in encoding/json; raw control characters and invalid UTF-8 are errors.
func gbScanString(b []byte, i int, dst []byte) (end, n int, err error) {
	i++ // opening quote
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, n, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, 0, gbErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/':
				n = gbPut(dst, n, b[i+1])
			case 'b':
				n = gbPut(dst, n, '\b')
			case 'f':
				n = gbPut(dst, n, '\f')
			case 'n':
				n = gbPut(dst, n, '\n')
			case 'r':
				n = gbPut(dst, n, '\r')
			case 't':
				n = gbPut(dst, n, '\t')
			case 'u':
				r, ok := gbHex4(b, i+2)
				if !ok {
					return 0, 0, gbErrSyntax
				}
				i += 6
				if 0xD800 <= r && r < 0xE000 {
					// Surrogate: valid only as a high surrogate followed by an escaped low one.
					// Otherwise it becomes U+FFFD and whatever follows is scanned normally.
					valid := false
					if r < 0xDC00 && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						if r2, ok := gbHex4(b, i+2); ok && 0xDC00 <= r2 && r2 < 0xE000 {
							r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
							i += 6
							valid = true
						}
					}
					if !valid {
						r = utf8.RuneError
					}
				}
				var tmp [utf8.UTFMax]byte
				for _, c := range tmp[:utf8.EncodeRune(tmp[:], r)] {
					n = gbPut(dst, n, c)
				}
				continue
			default:
				return 0, 0, gbErrSyntax
			}
			i += 2
		case c < 0x20:
			return 0, 0, gbErrSyntax
		case c < utf8.RuneSelf:
			n = gbPut(dst, n, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, 0, gbErrUTF8
			}
			for _, c := range b[i : i+size] {
				n = gbPut(dst, n, c)
			}
			i += size
		}
	}
	return 0, 0, gbErrSyntax // unterminated
}

// gbScanQty parses the JSON number starting at b[i] ('-' or a digit) and checks that it is
// an integer in [1, MaxQtyParse]. It returns the index just past the number.
func gbScanQty(b []byte, i int) (end int, qty int64, err error) {
	neg := false
	if b[i] == '-' {
		neg = true
		i++
	}
	if i >= len(b) {
		return 0, 0, gbErrSyntax
	}
	var v int64
	big := false
	switch c := b[i]; {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			if !big {
				v = v*10 + int64(b[i]-'0')
				big = v > MaxQtyParse // stop accumulating long before int64 could overflow
			}
		}
	default:
		return 0, 0, gbErrSyntax
	}
	notInt := false
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, gbErrSyntax
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		notInt = true
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, gbErrSyntax
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		notInt = true
	}
	if !gbDelimOK(b, i) {
		return 0, 0, gbErrSyntax
	}
	switch {
	case notInt:
		return 0, 0, gbErrQtyType
	case neg || v == 0:
		return 0, 0, gbErrQtyMin
	case big:
		return 0, 0, gbErrQtyTooLarge
	}
	return i, v, nil
}
