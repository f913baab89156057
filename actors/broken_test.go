package actors

import "github.com/seckill/seckill/engine"

// A broken invariant in a test run is a bug: fail loudly.
func init() { engine.PanicOnBroken = true }
