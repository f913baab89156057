package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary serve one target as a child process, as
// the seckill binary does when Config.Exec re-runs it (see testExec).
func TestMain(m *testing.M) {
	if IsChild() {
		if err := ServeChild(context.Background(), testLocal, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testExec is the command line that re-runs this test binary as a child
// serving one target.
func testExec(t *testing.T) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "-test.run=^$"}
}
