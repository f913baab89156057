package sale

import "context"

// Cluster is what the front answers about the cluster a node belongs to:
// its members and its health. A single node has none (the front answers
// "not_clustered"). Each call may reach etcd: the caller bounds ctx.
type Cluster interface {
	Members(ctx context.Context) ([]Member, error)
	Health(ctx context.Context) Health
}

// Member is one node with a live lease.
type Member struct {
	Node string `json:"node"`
	Peer string `json:"peer"`
	HTTP string `json:"http,omitempty"`
	// LeaseLeftMs is etcd's time left on the node's lease, or, for the node
	// answering, its own view: until it must stop confirming.
	LeaseLeftMs int64 `json:"lease_left_ms"`
	// State is "alive", or for the node answering "self" ("expired" once
	// its own lease validity ran out).
	State string `json:"state"`
}

// Health is a node's view of what it depends on.
type Health struct {
	Etcd  string `json:"etcd"`  // "ok" or "unreachable"
	Lease string `json:"lease"` // "valid" or "expired"
	Node  string `json:"node"`
	// Redis, where shard snapshots go: "ok" or "unreachable"; empty (and
	// left out) when the node writes none.
	Redis string `json:"redis,omitempty"`
}

// OK reports whether the node can confirm grabs and keep its snapshots, as
// far as the cluster goes.
func (h Health) OK() bool { return h.Etcd == "ok" && h.Lease == "valid" && h.Redis != "unreachable" }
