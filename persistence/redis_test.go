package persistence

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds the wait for a test's redis-server to be ready
// (it loads its append-only file first after a restart).
const redisStartTimeout = 10 * time.Second

// redisServer is a redis-server a test started on a free loopback port,
// the way bench/redis.go starts one, with appendonly yes and
// appendfsync always so that a SIGKILL loses nothing it acknowledged.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis runs redis-server with its files in dir and stops it when the
// test ends. It fails the test when redis-server is missing.
func startRedis(t testing.TB, dir string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found in PATH: the snapshot tests need a real one (make deps installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s := &redisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				ready <- ""
				_, _ = io.Copy(io.Discard, out)
				break
			}
		}
		select {
		case ready <- "redis-server exited before it was ready:\n" + log.String():
		default:
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	select {
	case msg := <-ready:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(redisStartTimeout):
		s.stop(syscall.SIGKILL)
		t.Fatalf("redis-server not ready after %v", redisStartTimeout)
	}
	return s
}

// stop signals the server and waits for it to exit (no-op once it has).
func (s *redisServer) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	<-s.done
}

// client connects to the server; the test closes it.
func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}
