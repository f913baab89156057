package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/seckill/seckill/fence"
)

// nodeIDFile holds a clustered node's name in its data directory: a node
// restarted on its data keeps its name, so its lease, and later its
// shards, are its own again.
const nodeIDFile = "node.id"

// nodeName is the name a clustered node runs under: the one stored in
// dataDir, which a different flag value may not change; or the flag's,
// stored; or a new one ("node-" and 8 hex digits), stored.
func nodeName(dataDir, flagName string) (string, error) {
	path := filepath.Join(dataDir, nodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(b))
		if err := fence.CheckNodeID(stored); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if flagName != "" && flagName != stored {
			return "", fmt.Errorf("--node %q, but %s says this data directory belongs to node %q: "+
				"start it without --node or with --node %s, or use another data directory", flagName, path, stored, stored)
		}
		return stored, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("node id: %w", err)
	}
	name := flagName
	if name == "" {
		raw := make([]byte, 4)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		name = "node-" + hex.EncodeToString(raw)
	}
	if err := fence.CheckNodeID(name); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return name, nil
}
