package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	cases := []struct {
		name string
		stat string
		want time.Duration // -1: an error
	}{
		{"plain", "42 (redis-server) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 4 0 100 0 0", 3800 * time.Millisecond},
		{"comm with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond},
		{"no comm", "7 a R 1", -1},
		{"too short", "7 (a) R 1 2 3", -1},
		{"not a number", "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 2 0 0", -1},
		{"negative", "7 (a) R 1 7 7 0 -1 0 0 0 0 0 -5 2 0 0", -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(c.stat))
			if c.want < 0 && err == nil || c.want >= 0 && (err != nil || got != c.want) {
				t.Fatalf("parseStatCPU(%q) = %v, %v; want %v", c.stat, got, err, c.want)
			}
		})
	}
	// This process's own line parses, and its CPU does not fall.
	a, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b, err := procCPU(os.Getpid())
	if err != nil || b < a {
		t.Fatalf("own cpu %v then %v, %v", a, b, err)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("42 (redis-server) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 4 0 100 0 0"))
	f.Add([]byte("7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative cpu %v from %q", d, b)
		}
	})
}
