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
	// PeerHTTP, with certificates: where the other nodes call its admin
	// API (https, a client certificate of the cluster's CA required).
	PeerHTTP string `json:"peer_http,omitempty"`
	// LeaseLeftMs is etcd's time left on the node's lease, or, for the node
	// answering, its own view: until it must stop confirming.
	LeaseLeftMs int64 `json:"lease_left_ms"`
	// State is "alive", or for the node answering "self" ("expired" once
	// its own lease validity ran out).
	State string `json:"state"`
	// Draining: an operator asked its shards to move away.
	Draining bool `json:"draining"`
	// Shards is how many shards etcd places on it (every item).
	Shards int `json:"shards"`
	// RelayLag is how many of its durable grabs the stream has not
	// acknowledged; nil when it did not answer.
	RelayLag *int64 `json:"relay_lag"`
}

// Health is a node's view of what it depends on.
type Health struct {
	Etcd  string `json:"etcd"`  // "ok" or "unreachable"
	Lease string `json:"lease"` // "valid" or "expired"
	Node  string `json:"node"`
	// Redis, where shard snapshots go: "ok" or "unreachable"; empty (and
	// left out) when the node writes none.
	Redis string `json:"redis,omitempty"`
	// NATS, the order stream: "ok" or "unreachable"; empty when the node
	// runs no order side.
	NATS string `json:"nats,omitempty"`
	// ShardsUnavailable counts shards placed on a node without a live
	// lease or in the middle of a move: their buyers get 503. Nil on a
	// node that runs no sale spread over nodes.
	ShardsUnavailable *int `json:"shards_unavailable,omitempty"`
	// UnitsFrozen counts units a forced move took out of play.
	UnitsFrozen *int64 `json:"units_frozen,omitempty"`
}

// OK reports whether the node can confirm grabs and keep its snapshots, and
// every shard can sell, as far as the cluster goes.
func (h Health) OK() bool {
	return h.Etcd == "ok" && h.Lease == "valid" && h.Redis != "unreachable" && h.NATS != "unreachable" &&
		(h.ShardsUnavailable == nil || *h.ShardsUnavailable == 0)
}

// ClusterAdmin is the cluster admin API beyond members and health: where
// shards run, draining nodes and moving shards. Errors that are the
// caller's (no such node, shard or item; a move that is not allowed) are
// *AdminError; others mean etcd or a node did not answer.
type ClusterAdmin interface {
	Placement(ctx context.Context, item string) ([]ShardPlacement, error)
	// Drain marks node draining (on) or not and, when on, asks every shard
	// it runs to move to the other live nodes; it returns the moves asked.
	Drain(ctx context.Context, node string, on bool) ([]MoveAsked, error)
	// Move asks shard of item to move to node to. Force moves the shard of
	// a node whose lease expired (see MoveAsked.Risk).
	Move(ctx context.Context, item string, shard int, to string, force bool) (MoveAsked, error)
	// LocalReport is what this node runs of item, for the other nodes'
	// views; a JSON value.
	LocalReport(item string) (any, bool)
	// LocalFacts is what this node's stores hold of item, for the cluster
	// reconcile; a JSON value.
	LocalFacts(item string) (any, error)
	// Self is this node's own numbers (relay lag), for members lists.
	Self() any
}

// ShardPlacement is one shard as the placement admin view shows it.
type ShardPlacement struct {
	Shard     int    `json:"shard"`
	Node      string `json:"node"`
	Epoch     uint64 `json:"epoch"`
	State     string `json:"state"`
	MovingTo  string `json:"moving_to,omitempty"`
	Remaining *int64 `json:"remaining"` // nil: the owner did not answer
	Sold      *int64 `json:"sold"`
	// Snapshot is the shard's last snapshot in Redis; nil when none.
	Snapshot *SnapshotInfo `json:"snapshot"`
}

// SnapshotInfo is a snapshot's sequence and age.
type SnapshotInfo struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
	AgeMs int64  `json:"age_ms"`
}

// MoveAsked is one move the cluster was asked for.
type MoveAsked struct {
	Item  string `json:"item"`
	Shard int    `json:"shard"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"` // the epoch the shard will run at on To (forced), or runs at now
	State string `json:"state"` // "moving" (cooperative, under way) or "moved" (forced)
	// Risk says what a forced move may cost; empty for a cooperative one.
	Risk string `json:"risk,omitempty"`
}

// AdminError is a refused admin call: Code is the JSON error code, Status
// the HTTP status.
type AdminError struct {
	Status int
	Code   string
	Msg    string
}

func (e *AdminError) Error() string { return e.Code + ": " + e.Msg }
