package engine

import (
	"errors"
	"strconv"
)

// errf formats an error message without fmt, which would make the engine
// depend on os. It knows the verbs %s, %d, %q and %v (%+v) for the few
// kinds of values engine messages hold.
func errf(format string, args ...any) error { return errors.New(sprintf(format, args...)) }

func sprintf(format string, args ...any) string {
	b := make([]byte, 0, len(format)+32)
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b = append(b, c)
			continue
		}
		i++
		if format[i] == '+' && i+1 < len(format) {
			i++
		}
		verb := format[i]
		if verb == '%' || len(args) == 0 {
			b = append(b, '%')
			continue
		}
		a := args[0]
		args = args[1:]
		b = appendArg(b, a, verb == 'q')
	}
	return string(b)
}

func appendArg(b []byte, a any, quote bool) []byte {
	switch v := a.(type) {
	case string:
		if quote {
			return strconv.AppendQuote(b, v)
		}
		return append(b, v...)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10)
	case interface{ String() string }:
		return append(b, v.String()...)
	case error:
		return append(b, v.Error()...)
	}
	return append(b, "?"...)
}

func (c Counters) String() string {
	return sprintf("{Allocated:%d Sold:%d NextSeq:%d Received:%d Returned:%d}", c.Allocated, c.Sold, c.NextSeq, c.Received, c.Returned)
}

func (b Balance) String() string {
	return sprintf("{Stock:%d Pool:%d InTransit:%d ShardRemaining:%d Sold:%d}", b.Stock, b.Pool, b.InTransit, b.ShardRemaining, b.Sold)
}

// PanicOnBroken makes a broken invariant panic: test binaries set it (in
// an init of a _test.go file) so that a bug fails loudly; a production
// binary refuses the operation instead and keeps its state unchanged.
var PanicOnBroken bool
