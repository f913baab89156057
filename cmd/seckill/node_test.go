package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestNodeName: the first start stores the name (given or generated), a
// later start without --node uses it, a different --node is refused, and a
// bad name is refused before anything is stored.
func TestNodeName(t *testing.T) {
	dir := t.TempDir()
	if _, err := nodeName(dir, "a/b"); err == nil {
		t.Fatal("a name with '/' accepted")
	}
	if n, err := nodeName(dir, "n1"); err != nil || n != "n1" {
		t.Fatalf("first start: %q %v", n, err)
	}
	if n, err := nodeName(dir, ""); err != nil || n != "n1" {
		t.Fatalf("restart without --node: %q %v", n, err)
	}
	if n, err := nodeName(dir, "n1"); err != nil || n != "n1" {
		t.Fatalf("restart with the same --node: %q %v", n, err)
	}
	if _, err := nodeName(dir, "n2"); err == nil || !strings.Contains(err.Error(), `"n1"`) {
		t.Fatalf("another --node: %v, want a refusal naming n1", err)
	}
	gen := t.TempDir()
	n, err := nodeName(gen, "")
	if err != nil || !regexp.MustCompile(`^[a-z0-9-]{1,16}$`).MatchString(n) {
		t.Fatalf("generated name %q %v", n, err)
	}
	if again, err := nodeName(gen, ""); err != nil || again != n {
		t.Fatalf("generated name not kept: %q then %q %v", n, again, err)
	}
}
