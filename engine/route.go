package engine

// ShardFor routes a buyer: shard = FNV-1a-64(item || 0x00 || user) mod shards.
// The hash is part of the on-disk contract (a user's grabs live on the shard
// it names), so it must never change: FNV-1a is fixed by its spec, needs no
// seed and costs a few ns for short ids. The 0x00 separator cannot occur in
// an id, so ("ab","c") and ("a","bc") hash differently.
func ShardFor(item, user string, shards int) int {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(item); i++ {
		h ^= uint64(item[i])
		h *= prime64
	}
	h ^= 0
	h *= prime64
	for i := 0; i < len(user); i++ {
		h ^= uint64(user[i])
		h *= prime64
	}
	return int(h % uint64(shards))
}

// ValidID reports whether s is 1..MaxIDLen bytes of [A-Za-z0-9_.:-], the
// alphabet of item, user and grab ids. It takes bytes too, so the HTTP front
// checks ids before converting them to strings.
func ValidID[T ~string | ~[]byte](s T) bool {
	if len(s) < 1 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// ValidKey reports whether s is a usable Idempotency-Key: 1..MaxKeyLen
// printable ASCII bytes (0x20-0x7e).
func ValidKey(s string) bool {
	if len(s) < 1 || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

var idByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_.:-" {
		t[c] = true
	}
	return t
}()
