package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, c := range []struct {
		format, level string
		ok            bool
		infoShown     bool
		json          bool
	}{
		{"text", "info", true, true, false},
		{"json", "info", true, true, true},
		{"JSON", "warn", true, false, true},
		{"text", "debug", true, true, false},
		{"text", "ERROR", true, false, false},
		{"xml", "info", false, false, false},
		{"text", "loud", false, false, false},
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, c.format, c.level)
		if (err == nil) != c.ok {
			t.Errorf("%s/%s: err %v, want ok=%v", c.format, c.level, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		log.Info("hello", "k", 1)
		if got := buf.Len() > 0; got != c.infoShown {
			t.Errorf("%s/%s: info shown %v", c.format, c.level, got)
		}
		if c.infoShown && c.json {
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "hello" {
				t.Errorf("json line %q: %v", buf.String(), err)
			}
		}
		if c.infoShown && !c.json && !strings.Contains(buf.String(), "msg=hello") {
			t.Errorf("text line %q", buf.String())
		}
	}
}
