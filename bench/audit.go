package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	// replaySample bounds the 201s the audit replays: enough to catch a
	// server that forgets or renumbers grabs, few enough to take well
	// under a second.
	replaySample = 200
	// maxFailures bounds the failures an audit lists; one is enough to
	// fail the run.
	maxFailures = 20
)

// Audit is what the harness checked after a run against one target.
type Audit struct {
	Checks   []string // what passed, for the report
	Failures []string
}

// OK reports whether every check passed.
func (a *Audit) OK() bool { return len(a.Failures) == 0 }

func (a *Audit) failf(format string, args ...any) {
	if len(a.Failures) < maxFailures {
		a.Failures = append(a.Failures, fmt.Sprintf(format, args...))
	}
}

func (a *Audit) String() string {
	if a.OK() {
		return "ok: " + strings.Join(a.Checks, "; ")
	}
	return "FAILED: " + strings.Join(a.Failures, "; ")
}

// audit checks a run's target after the load has stopped. The harness is
// taken to be the only client of its items, which it created fresh:
//   - per item, read through every front: sold ≤ stock and sold + remaining
//     == stock; stock as created; sold ≤ buyers × per-user limit when the
//     target knows its buyers; and every front gives the same numbers
//   - the units the harness saw confirmed (distinct grab ids) match sold;
//     jobs whose outcome is unknown (timeout, 503) may account for more:
//     when there are none, sold == the distinct grab ids exactly
//   - no 201 for a request sent after a sold_out for its item had come
//     back (the harness returns nothing to stock, so sold_out is final);
//     a retry, whose earlier attempt may have landed, is not counted
//   - no user holds more than the per-user limit in the 201s seen
//   - on seckill, up to replaySample 201s are sent again with the same user
//     and Idempotency-Key and must come back with the same grab id; the
//     same users asking once more with a new key must not get a unit; and
//     sold must not change through all that. With several fronts each
//     replay goes through another front than its grab did.
func audit(ctx context.Context, t *Target, plan *Plan, r *Result) *Audit {
	a := &Audit{}
	before, ok := readItems(ctx, a, t, plan)
	if !ok {
		return a
	}
	var sold int64
	for _, st := range before {
		sold += st.Sold
	}
	if a.OK() {
		check := fmt.Sprintf("sold %d ≤ stock, sold+remaining=stock", sold)
		if n := len(t.views()); n > 1 {
			check += fmt.Sprintf(", the same through all %d fronts", n)
		}
		a.Checks = append(a.Checks, check)
	}

	units := r.units(len(plan.Items))
	unknown := r.Unresolved()
	for i, item := range plan.Items {
		switch s := before[i].Sold; {
		case units[i] > s:
			a.failf("%s: %d units confirmed to buyers, only %d sold: confirmed grabs were lost", item, units[i], s)
		case s > units[i]+unknown:
			a.failf("%s: sold %d, but buyers saw %d confirmed and %d outcomes unknown", item, s, units[i], unknown)
		}
	}
	if a.OK() {
		var seen int64
		for _, n := range units {
			seen += n
		}
		if unknown == 0 {
			a.Checks = append(a.Checks, fmt.Sprintf("sold %d == %d distinct 201 grab ids (every job had a final answer)", sold, seen))
		} else {
			a.Checks = append(a.Checks, fmt.Sprintf("201s seen %d vs sold %d (%d unknown)", seen, sold, unknown))
		}
	}

	lateGrabs(a, plan, r)

	held := map[holder]int64{}
	seen := map[string]bool{}
	for _, g := range r.grabs {
		if g.id != "" {
			if seen[g.id] {
				continue
			}
			seen[g.id] = true
		}
		h := holder{g.item, g.user}
		held[h]++
		if lim := before[g.item].PerUserLimit; held[h] == lim+1 {
			a.failf("%s: user %s holds %d units, limit %d", plan.Items[g.item], UserID(g.user), held[h], lim)
		}
	}
	if a.OK() {
		a.Checks = append(a.Checks, fmt.Sprintf("%d buyers within the limit", len(held)))
	}

	if t.Orders != nil {
		auditOrders(ctx, a, t, plan, r)
	}
	if t.Replays && len(r.grabs) > 0 {
		replay(ctx, a, t, plan, r, before)
	}
	return a
}

const (
	// ordersWait bounds the wait for a target's order consumer to catch up
	// with what it sold once the load has stopped: at the seckill writer's
	// pace (tens of thousands of orders a second) a backlog of a few
	// hundred thousand orders.
	ordersWait = 30 * time.Second
	ordersPoll = 100 * time.Millisecond
)

// auditOrders checks, on a target whose orders the harness can read, that
// its consumer catches up (as many orders as units sold, within
// ordersWait; orders of outcomes the harness does not know may be missing
// or extra) and that every 201 the harness saw has its order.
func auditOrders(ctx context.Context, a *Audit, t *Target, plan *Plan, r *Result) {
	unknown := r.Unresolved()
	start := time.Now()
	var orders, sold int64
	for _, item := range plan.Items {
		var st ItemState
		for {
			var err error
			if st, err = t.Admin.Item(ctx, item); err != nil {
				a.failf("%v", err)
				return
			}
			if st.Orders >= st.Sold || time.Since(start) > ordersWait || ctx.Err() != nil {
				break
			}
			time.Sleep(ordersPoll)
		}
		switch {
		case st.Orders < 0:
			a.failf("%s: the target did not count its orders", item)
		case st.Orders < st.Sold-unknown:
			a.failf("%s: %d orders for %d units sold after %v: the consumer lost orders or did not catch up", item, st.Orders, st.Sold, ordersWait)
		case st.Orders > st.Sold+unknown:
			a.failf("%s: %d orders for %d units sold: orders were written twice", item, st.Orders, st.Sold)
		}
		orders, sold = orders+st.Orders, sold+st.Sold
	}
	ids := make([][]string, len(plan.Items))
	seen := map[string]bool{}
	for _, g := range r.grabs {
		if g.id == "" {
			a.failf("%s: a 201 without an order id", plan.Items[g.item])
			return
		}
		if !seen[g.id] {
			seen[g.id] = true
			ids[g.item] = append(ids[g.item], g.id)
		}
	}
	for i, item := range plan.Items {
		missing, err := t.Orders.Missing(ctx, item, ids[i])
		if err != nil {
			a.failf("%v", err)
			return
		}
		for _, id := range missing {
			a.failf("%s: 201 with order id %s, but no such order", item, id)
		}
	}
	if a.OK() {
		a.Checks = append(a.Checks, fmt.Sprintf("%d orders for %d sold, every one of %d 201s has its order (consumer caught up within %s)",
			orders, sold, len(seen), dur(time.Since(start))))
	}
}

const (
	// agreeWait bounds the re-reads of an item whose fronts disagree: the
	// load has stopped, but a front may still be catching up (a refill or
	// give-back in flight between nodes). A disagreement that outlasts it
	// fails the audit.
	agreeWait = 3 * time.Second
	agreePoll = 100 * time.Millisecond
)

// readItems reads every item through every front, checks each answer's
// own sums, and that the fronts agree (re-reading within agreeWait while
// they do not). It returns the first front's numbers; false when an item
// could not be read.
func readItems(ctx context.Context, a *Audit, t *Target, plan *Plan) ([]ItemState, bool) {
	views, fronts := t.views(), t.fronts()
	where := func(item string, v int) string {
		if len(views) > 1 {
			return item + " at " + fronts[v]
		}
		return item
	}
	states := make([][]ItemState, len(plan.Items)) // [item][front]
	deadline := time.Now().Add(agreeWait)
	rereads := 0
	for i, item := range plan.Items {
		for {
			states[i] = states[i][:0]
			for _, v := range views {
				st, err := v.Item(ctx, item)
				if err != nil {
					a.failf("%v", err)
					return nil, false
				}
				states[i] = append(states[i], st)
			}
			if agree(states[i]) || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			rereads++
			time.Sleep(agreePoll)
		}
		for v, st := range states[i] {
			at := where(item, v)
			switch {
			case st.Sold > st.Stock:
				a.failf("%s: oversold: sold %d of %d", at, st.Sold, st.Stock)
			case st.Stock != plan.Stock:
				a.failf("%s: stock %d, created with %d", at, st.Stock, plan.Stock)
			case st.Sold < 0 || st.Remaining < 0:
				a.failf("%s: sold %d, remaining %d", at, st.Sold, st.Remaining)
			case st.Sold+st.Remaining != st.Stock:
				a.failf("%s: sold %d + remaining %d != stock %d", at, st.Sold, st.Remaining, st.Stock)
			}
			if st.Buyers >= 0 && st.Sold > st.Buyers*max(st.PerUserLimit, 1) {
				a.failf("%s: sold %d to %d buyers, limit %d each", at, st.Sold, st.Buyers, st.PerUserLimit)
			}
		}
		if !agree(states[i]) {
			var each []string
			for v, st := range states[i] {
				each = append(each, fmt.Sprintf("%s stock %d sold %d remaining %d", fronts[v], st.Stock, st.Sold, st.Remaining))
			}
			a.failf("%s: the fronts disagree after %v: %s", item, agreeWait, strings.Join(each, "; "))
		}
	}
	if rereads > 0 && a.OK() {
		a.Checks = append(a.Checks, fmt.Sprintf("fronts agreed after %d re-reads", rereads))
	}
	before := make([]ItemState, len(plan.Items))
	for i := range plan.Items {
		before[i] = states[i][0]
	}
	return before, true
}

// agree reports whether every front gave the same numbers.
func agree(sts []ItemState) bool {
	for _, st := range sts[1:] {
		if st.Stock != sts[0].Stock || st.Sold != sts[0].Sold || st.Remaining != sts[0].Remaining {
			return false
		}
	}
	return true
}

// lateGrabs fails the audit for every 201 whose request went out after a
// sold_out for its item had come back. The harness returns no unit to
// stock, so once a front said sold_out no new grab can be confirmed. A
// retry may be confirming a grab an earlier, unanswered attempt made
// before the sell-out, and a grab id already seen is a replay: neither is
// counted.
func lateGrabs(a *Audit, plan *Plan, r *Result) {
	if len(r.soldOut) == 0 {
		return
	}
	seen := map[string]bool{}
	late := 0
	for _, g := range r.grabs { // in the order answers came
		replayed := g.id != "" && seen[g.id]
		if g.id != "" {
			seen[g.id] = true
		}
		at, ok := r.soldOut[g.item]
		if !ok || g.retry || replayed || g.sent <= at {
			continue
		}
		late++
		a.failf("%s: grab %s (user %s) confirmed for a request sent at %v, after a sold_out came back at %v",
			plan.Items[g.item], g.id, UserID(g.user), g.sent, at)
	}
	if late == 0 {
		first := time.Duration(-1)
		for _, at := range r.soldOut {
			if first < 0 || at < first {
				first = at
			}
		}
		a.Checks = append(a.Checks, fmt.Sprintf("no 201 sent after a sold_out (first at %s)", dur(first)))
	}
}

// replay sends a spread sample of the 201s again, then reads the items
// once more: replays must return the same grab ids and sell nothing.
func replay(ctx context.Context, a *Audit, t *Target, plan *Plan, r *Result, before []ItemState) {
	c := &http.Client{Timeout: clientTimeout}
	fronts := t.fronts()
	// through another front than the grab's (job n went to front n mod k)
	via := func(job int64, skip int64) string { return fronts[(job+skip)%int64(len(fronts))] }
	step := max(len(r.grabs)/replaySample, 1)
	var same, refused int
	users := map[holder]bool{}
	for i, n := 0, 0; i < len(r.grabs) && n < replaySample; i, n = i+step, n+1 {
		g := r.grabs[i]
		item := plan.Items[g.item]
		if plan.Keys {
			status, ans, err := grab(ctx, c, via(g.job, 1), item, UserID(g.user), Key(g.job), plan.authz(g.user))
			id := ans.GrabID
			switch {
			case err != nil:
				a.failf("replay %s: %v", g.id, err)
			case status != http.StatusCreated:
				a.failf("replay of %s (user %s, key %s): HTTP %d, want 201", g.id, UserID(g.user), Key(g.job), status)
			case id != g.id:
				a.failf("replay of %s (user %s, key %s) returned grab %q", g.id, UserID(g.user), Key(g.job), id)
			default:
				same++
			}
		}
		if h := (holder{g.item, g.user}); !users[h] && before[g.item].PerUserLimit == 1 {
			users[h] = true
			key := ""
			if plan.Keys {
				key = "audit-" + Key(g.job)
			}
			status, ans, err := grab(ctx, c, via(g.job, 2), item, UserID(g.user), key, plan.authz(g.user))
			id := ans.GrabID
			switch {
			case err != nil:
				a.failf("limit probe for %s: %v", UserID(g.user), err)
			case status == http.StatusCreated:
				a.failf("%s: user %s, who holds the limit, got another unit (%s)", item, UserID(g.user), id)
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				a.failf("limit probe for %s: HTTP %d: the buyer's token was refused", UserID(g.user), status)
			default:
				refused++
			}
		}
	}
	for i, item := range plan.Items {
		for _, v := range t.views() {
			st, err := v.Item(ctx, item)
			if err != nil {
				a.failf("%v", err)
				return
			}
			if st.Sold != before[i].Sold {
				a.failf("%s: sold went from %d to %d during replays", item, before[i].Sold, st.Sold)
			}
		}
	}
	if plan.Keys {
		a.Checks = append(a.Checks, fmt.Sprintf("%d replays gave the same grab id", same))
	}
	a.Checks = append(a.Checks, fmt.Sprintf("%d more grabs by buyers at their limit refused", refused))
}

// holder is one user of one item.
type holder struct {
	item int
	user int64
}

// grabAnswer is what the harness reads of a grab's answer.
type grabAnswer struct {
	Status string // "confirmed", "sold_out", ...
	GrabID string
}

// grab sends one grab and returns the HTTP status and the answer.
func grab(ctx context.Context, c *http.Client, base, item, user, key string, authz []byte) (int, grabAnswer, error) {
	body := `{"user_id":"` + user + `","qty":1}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/items/"+item+"/grab", strings.NewReader(body))
	if err != nil {
		return 0, grabAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if authz != nil {
		req.Header.Set("Authorization", string(authz))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, grabAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
	if err != nil {
		return 0, grabAnswer{}, err
	}
	b = bytes.TrimSpace(b)
	return resp.StatusCode, grabAnswer{Status: string(outcomeOf(b)), GrabID: grabID(b)}, nil
}
