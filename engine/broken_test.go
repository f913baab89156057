package engine

// A broken invariant in a test run is a bug: fail loudly.
func init() { PanicOnBroken = true }
