// Package layers holds one test: the README's package table is a claim
// (each package imports only those above it), and this keeps it true.
package layers

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/seckill/seckill/"

// row matches a package row of the README's architecture table, e.g.
// "| `engine/` | ..." or "| `cmd/seckill`, `bench/` | ...".
var row = regexp.MustCompile("^\\| ((?:`[a-z/]+`(?:, )?)+) \\|")

func TestREADMELayers(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rank := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		for _, p := range strings.Split(m[1], ", ") {
			p = strings.TrimSuffix(strings.Trim(p, "`"), "/")
			if _, err := os.Stat(filepath.Join("..", "..", p)); err != nil {
				continue // a path of another table
			}
			if _, seen := rank[p]; !seen {
				rank[p] = len(rank)
			}
		}
	}
	if len(rank) < 10 {
		t.Fatalf("found %d packages in the README's table: %v", len(rank), rank)
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ":")
		pkg = strings.TrimPrefix(pkg, module)
		if strings.HasPrefix(pkg, "internal/") {
			continue // test support, beside the layers
		}
		r, ok := rank[pkg]
		if !ok {
			t.Errorf("package %s is not in the README's table", pkg)
			continue
		}
		for _, imp := range strings.Fields(imports) {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok || strings.HasPrefix(dep, "internal/") {
				continue
			}
			if d, ok := rank[dep]; ok && d >= r && !sameRow(pkg, dep) {
				t.Errorf("%s imports %s, which the README's table puts at or below it", pkg, dep)
			}
		}
	}
}

// sameRow: the binary and the harness share a row.
func sameRow(a, b string) bool {
	return (a == "cmd/seckill" || a == "bench") && (b == "cmd/seckill" || b == "bench")
}
