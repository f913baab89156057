package fence

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// layoutPrefixes are what decides where shards run: items, placements,
// members and drain marks (not the pool ledgers, which change with every
// refill).
var layoutPrefixes = []string{prefix + "items/", placementPrefix, nodesPrefix, prefix + "drain/", forcedPrefix}

// WatchLayout reports that the cluster's layout changed (an item, a
// placement, a member, a drain mark) until ctx ends or a watch fails, then
// closes the channel. It says only that, not what: a watcher re-reads what
// it needs, so a coalesced or lost event costs a re-read, never a wrong
// state.
func (s *Store) WatchLayout(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, len(layoutPrefixes))
	for _, p := range layoutPrefixes {
		go func() {
			defer func() { done <- struct{}{} }()
			for wr := range s.cli.Watch(ctx, p, clientv3.WithPrefix()) {
				if wr.Err() != nil {
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}()
	}
	go func() {
		<-done // the first watch to end ends them all
		cancel()
		for range len(layoutPrefixes) - 1 {
			<-done
		}
		close(out)
	}()
	return out
}
