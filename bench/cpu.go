package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// CPU time of a target is read from /proc/<pid>/stat of each of its
// processes. The load generator and an in-process server would share one
// process, and Go offers no per-goroutine CPU time, so a target is measured
// only when it runs as a child process (Config.Exec): its own process (the
// server with whatever it embeds, such as the seeds' NATS server and order
// consumer) and its peers (redis-server), each read apart.
const (
	// userHZ is the unit of utime and stime in /proc/<pid>/stat: the
	// kernel's USER_HZ, 100 on every architecture Go runs Linux on.
	userHZ = 100
	// settlePoll and settleQuiet: after the load stops, a target's CPU is
	// read on until one settlePoll passes with at most settleQuiet of CPU
	// over all its processes (one clock tick), so that work the load left
	// behind (an order consumer's backlog, a last commit) is counted.
	settlePoll  = 100 * time.Millisecond
	settleQuiet = time.Second / userHZ
	// settleMax bounds that wait; a target still busy after it is counted
	// up to there.
	settleMax = 10 * time.Second
)

// ProcCPU is the CPU time one process of a target used while measured.
type ProcCPU struct {
	Name string
	Pid  int
	CPU  time.Duration
}

// procCPU returns the user plus system CPU time pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	d, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	return d, nil
}

// parseStatCPU reads utime + stime from the text of /proc/<pid>/stat:
// "pid (comm) state ppid …", where comm may hold spaces and parentheses
// (the last ')' ends it) and utime and stime are fields 14 and 15.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("no comm in %.64q", b)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after comm, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, fmt.Errorf("cpu ticks %.32q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// maxTicks bounds one of utime and stime: a century of CPU, far below
// where ticks would overflow a time.Duration.
const maxTicks = 100 * 365 * 24 * 3600 * userHZ

// cpuMeter adds up the CPU time of a target's processes over the windows
// it is measured in.
type cpuMeter struct {
	procs []Proc
	used  []time.Duration
	at    []time.Duration // readings at the start of the current window
	err   error
}

func newCPUMeter(procs []Proc) *cpuMeter {
	return &cpuMeter{procs: procs, used: make([]time.Duration, len(procs))}
}

func (m *cpuMeter) read() []time.Duration {
	out := make([]time.Duration, len(m.procs))
	for i, p := range m.procs {
		d, err := procCPU(p.Pid)
		if err != nil && m.err == nil {
			m.err = err
		}
		out[i] = d
	}
	return out
}

// start opens a window.
func (m *cpuMeter) start() {
	if len(m.procs) > 0 {
		m.at = m.read()
	}
}

// stop waits for the target to settle, then closes the window.
func (m *cpuMeter) stop() {
	if len(m.procs) == 0 {
		return
	}
	prev := m.read()
	for deadline := time.Now().Add(settleMax); time.Now().Before(deadline); {
		time.Sleep(settlePoll)
		now := m.read()
		var d time.Duration
		for i := range now {
			d += now[i] - prev[i]
		}
		prev = now
		if d <= settleQuiet {
			break
		}
	}
	for i := range prev {
		m.used[i] += prev[i] - m.at[i]
	}
}

// result is the CPU per process, nil when not measured.
func (m *cpuMeter) result() []ProcCPU {
	if len(m.procs) == 0 || m.err != nil {
		return nil
	}
	out := make([]ProcCPU, len(m.procs))
	for i, p := range m.procs {
		out[i] = ProcCPU{Name: p.Name, Pid: p.Pid, CPU: m.used[i]}
	}
	return out
}
