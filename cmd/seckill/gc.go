package main

import (
	"os"
	"runtime/debug"
)

// ServerGCPercent is the garbage collector's target for a serving process
// (serve, and a bench's target child) unless GOGC says otherwise: a flash
// sale's first second allocates fast from a small heap, and at Go's
// default of 100 the collector ran often enough to show in that second's
// p99. On the flash workload (33 k buyers/s, 10 000 units, 2 cores) 400
// sold out after 0.35-0.37 s with a first-second p99 of 49-63 ms, 100
// after 0.41-0.43 s and 106-128 ms. The heap may grow to five times what
// is live (a node with a million grabs keeps about 200 MB live).
const ServerGCPercent = 400

// serverGC applies ServerGCPercent when GOGC is not set.
func serverGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(ServerGCPercent)
	}
}
