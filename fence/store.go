package fence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store reads and changes items, placements and ledgers in etcd. Every
// change is one transaction that compares each key its decision read; a
// lost compare decides again on the values that transaction returned, at
// most MaxCASAttempts times. Two changes do not retry: CreateItem (an item
// that exists stays as it is) and CommitPool (its caller decided on the
// ledger it loaded and must decide again).
type Store struct {
	cli *clientv3.Client
}

// New returns a Store over an etcd client the caller owns (and closes).
func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// errAgain asks casLoop's caller to start over with other keys.
var errAgain = errors.New("fence: keys changed, read again")

// decide is given the keys read (nil: absent) and returns: ops to write (nil: nothing
// to write, the operation is done) or an error that ends the operation.
type decide func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error)

// casLoop reads keys in one transaction, asks decide what to write, and
// writes it if, and only if, none of the keys changed since: each key read
// must still have the mod revision seen, or still be absent. A lost compare
// returns the keys' new values: the first retry decides on them at once
// (two writers: one round trip more). Later retries first pause for a
// random part of a window that grows with every loss, then read afresh
// (values returned before a pause are stale after it). It returns the
// revision of the transaction that wrote (the new mod revision of every key
// it put), or 0 when decide found nothing to write.
func (s *Store) casLoop(ctx context.Context, what string, keys []string, d decide) (int64, error) {
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		gets[i] = clientv3.OpGet(k)
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return 0, fmt.Errorf("%s: read: %w", what, err)
	}
	for attempt := 1; ; attempt++ {
		kvs := kvsOf(resp)
		ops, err := d(kvs)
		if err != nil || ops == nil {
			return 0, err
		}
		sent := time.Now()
		resp, err = s.cli.Txn(ctx).If(unchanged(keys, kvs)...).Then(ops...).Else(gets...).Commit()
		rtt := time.Since(sent)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		if attempt == MaxCASAttempts {
			return 0, fmt.Errorf("%s: %d attempts: %w", what, attempt, ErrContended)
		}
		if attempt == 1 {
			continue
		}
		select {
		case <-time.After(rand.N(min(maxCASBackoff, rtt<<min(attempt, 5)) + 1)):
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if resp, err = s.cli.Txn(ctx).Then(gets...).Commit(); err != nil {
			return 0, fmt.Errorf("%s: read: %w", what, err)
		}
	}
}

// unchanged compares every key with what was read.
func unchanged(keys []string, kvs []*mvccpb.KeyValue) []clientv3.Cmp {
	cmps := make([]clientv3.Cmp, len(keys))
	for i, k := range keys {
		if kvs[i] == nil {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		} else {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", kvs[i].ModRevision)
		}
	}
	return cmps
}

// kvsOf returns the key of each get in a transaction's answer (nil: absent).
func kvsOf(resp *clientv3.TxnResponse) []*mvccpb.KeyValue {
	kvs := make([]*mvccpb.KeyValue, len(resp.Responses))
	for i, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			kvs[i] = rr.Kvs[0]
		}
	}
	return kvs
}
