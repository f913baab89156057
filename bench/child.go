package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"
)

// ChildEnv, set in a process's environment, makes the harness's binary
// serve one target (ServeChild) instead of measuring: the harness starts
// each target so (Config.Exec), to read its CPU time apart from its own.
const ChildEnv = "SECKILL_BENCH_CHILD"

const (
	// childHelloPrefix starts the one line a child prints once its target
	// serves: the prefix, then its childHello as JSON.
	childHelloPrefix = "seckill-bench-child "
	// childStartTimeout bounds a child's start: a seckill node opening its
	// stores or a redis-server starting.
	childStartTimeout = time.Minute
	// childStopTimeout bounds a child's stop before it is killed.
	childStopTimeout = 30 * time.Second
)

// childSpec is what a child serves, passed in ChildEnv as JSON.
type childSpec struct {
	Target      string `json:"target"`
	DataDir     string `json:"data_dir,omitempty"`
	Orders      bool   `json:"orders"`
	Redis       string `json:"redis,omitempty"`
	AppendFsync string `json:"appendfsync,omitempty"`
	// CPUProfile, if set, is where the child writes a pprof CPU profile
	// of its whole life.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Trace, if set, is where the child writes a runtime execution trace
	// of its whole life (go tool trace).
	Trace string `json:"trace,omitempty"`
}

type childHello struct {
	URL   string `json:"url"`
	Peers []Proc `json:"peers,omitempty"`
}

// record starts a recorder of the process (a CPU profile, an execution
// trace) writing to a new file at path; the returned func stops it and
// closes the file.
func record(path, what string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return func() {
		stop()
		f.Close()
	}, nil
}

// IsChild reports whether this process was started to serve one target.
func IsChild() bool { return os.Getenv(ChildEnv) != "" }

// ServeChild serves the target ChildEnv names until in ends (the harness
// closes it to stop the child, and it ends too when the harness dies),
// then stops it. It prints the hello line on out once the target serves.
func ServeChild(ctx context.Context, local LocalFunc, in io.Reader, out io.Writer) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(ChildEnv)), &spec); err != nil {
		return fmt.Errorf("%s: %w", ChildEnv, err)
	}
	for _, r := range []struct {
		path, what string
		start      func(io.Writer) error
		stop       func()
	}{
		{spec.CPUProfile, "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile},
		{spec.Trace, "trace", trace.Start, trace.Stop},
	} {
		if r.path == "" {
			continue
		}
		stop, err := record(r.path, r.what, r.start, r.stop)
		if err != nil {
			return fmt.Errorf("child %s: %w", spec.Target, err)
		}
		defer stop()
	}
	var (
		t   *Target
		err error
	)
	switch spec.Target {
	case TargetSeckill:
		t, err = startLocalIn(local, spec.DataDir, spec.Orders)
	case TargetSeeds:
		t, err = StartSeeds(ctx, spec.Redis, spec.AppendFsync)
	case TargetRedis:
		t, err = StartRedisLua(ctx, spec.Redis, spec.AppendFsync)
	case TargetBare:
		t, err = StartBare()
	default:
		err = fmt.Errorf("unknown target %q", spec.Target)
	}
	if err != nil {
		return fmt.Errorf("child %s: %w", spec.Target, err)
	}
	b, _ := json.Marshal(childHello{URL: t.URL, Peers: t.Peers})
	_, werr := fmt.Fprintf(out, "%s%s\n", childHelloPrefix, b)
	if werr == nil {
		_, _ = io.Copy(io.Discard, in)
	}
	return errors.Join(werr, t.Stop())
}

// startChild runs the harness's binary (argv) as a child serving spec's
// target and returns the target, its processes in Procs.
func startChild(argv []string, spec childSpec) (*Target, error) {
	env, _ := json.Marshal(spec)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(env))
	cmd.Stderr = os.Stderr
	// Its own process group: a Ctrl-C at the terminal reaches the harness
	// alone, which then stops the child in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s child: %w", spec.Target, err)
	}
	exited := make(chan struct{})
	stop := func() error {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(childStopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s child did not stop within %v: killed", spec.Target, childStopTimeout)
		}
		if s := cmd.ProcessState; !s.Success() {
			return fmt.Errorf("%s child: %s", spec.Target, s)
		}
		return nil
	}
	hello := make(chan childHello, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), childHelloPrefix)
			var h childHello
			if ok && !sent && json.Unmarshal([]byte(line), &h) == nil {
				hello <- h
				sent = true
			}
		}
		_ = cmd.Wait() // after stdout is read to its end, as Wait requires
		close(exited)
	}()
	var h childHello
	select {
	case h = <-hello:
	case <-exited:
		return nil, fmt.Errorf("%s child exited before it served: %s", spec.Target, cmd.ProcessState)
	case <-time.After(childStartTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("%s child did not serve within %v", spec.Target, childStartTimeout)
	}
	t := &Target{Name: spec.Target, URL: h.URL, Stop: stop,
		Procs: append([]Proc{{Name: spec.Target, Pid: cmd.Process.Pid}}, h.Peers...)}
	if spec.Target != TargetBare {
		admin := NewSeckillAdmin(h.URL, localToken)
		t.Admin = admin
		if spec.Target == TargetSeeds {
			t.Orders = admin.(OrderChecker)
		}
	}
	t.Replays = spec.Target == TargetSeckill
	return t, nil
}
