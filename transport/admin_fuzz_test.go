package transport

import (
	"testing"

	"github.com/seckill/seckill/engine"
)

// The admin decoders never panic, and what they accept is within limits.

func FuzzDecodeCreateItem(f *testing.F) {
	f.Add([]byte(`{"stock":10,"shards":4,"per_user_limit":2,"starts_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"stock":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg, err := DecodeCreateItem("item", body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted %+v: %v", cfg, err)
		}
	})
}

func FuzzDecodeStockChange(f *testing.F) {
	f.Add([]byte(`{"delta":5}`))
	f.Add([]byte(`{"delta":-1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeStockChange(body)
		if err == nil && (d == 0 || d > engine.MaxStock || d < -engine.MaxStock) {
			t.Fatalf("accepted delta %d", d)
		}
	})
}

func FuzzDecodeRelease(f *testing.F) {
	f.Add([]byte(`{"grab_id":"item.1.2"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := DecodeRelease(body)
		if err != nil {
			return
		}
		if _, _, _, ok := engine.ParseGrabID(id); !ok {
			t.Fatalf("accepted grab id %q", id)
		}
	})
}
