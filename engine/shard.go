package engine

import (
	"errors"
	"strconv"
)

// Outcome is the answer a shard gives to a grab.
type Outcome uint8

const (
	// Confirmed: a new grab was decided; its record must be made durable
	// before the buyer is told.
	Confirmed Outcome = iota + 1
	// Replayed: the (user, idempotency key) pair already holds a confirmed
	// grab; the same grab is returned and nothing new is recorded.
	Replayed
	SoldOut
	LimitReached
	NotStarted
	Ended
	// KeyReused: the idempotency key was used before by this user with a
	// different quantity; the request is refused rather than guessed at.
	KeyReused
	// BadQty: the quantity is outside 1..per-user limit.
	BadQty
	// Broken: applying the grab would break an invariant. It is a bug; the
	// shard refuses the operation and keeps its state unchanged.
	Broken
	// NeedStock: this shard cannot serve the grab but the item may hold
	// stock elsewhere; the caller asks the pool and tries again.
	NeedStock
	// Released: the grab named (or replayed by key) was returned to stock.
	Released
	// AlreadyReleased: a release of a grab released before; nothing changes.
	AlreadyReleased
	// UnknownGrab: no such grab on this shard.
	UnknownGrab
	// Busy: too many buyers already wait at this shard; not tried.
	Busy
	// Retry: the buyer waited RefillWaitMs and no unit reached the shard,
	// though stock may exist elsewhere: try again (never a false sold out).
	Retry
	// StockChanged: a stock change was applied (Answer.Stock is the new stock).
	StockChanged
	// Insufficient: a reduction asked for more than is unsold (Answer.Available).
	Insufficient
	// BadStock: the stock would leave 0..MaxStock.
	BadStock
)

var outcomeNames = [...]string{
	Confirmed: "confirmed", Replayed: "replayed", SoldOut: "sold_out",
	LimitReached: "limit_reached", NotStarted: "not_started", Ended: "ended",
	KeyReused: "key_reused", BadQty: "bad_qty", Broken: "broken", NeedStock: "need_stock",
	Released: "released", AlreadyReleased: "already_released", UnknownGrab: "unknown_grab",
	Busy: "busy", Retry: "retry", StockChanged: "stock_changed", Insufficient: "insufficient", BadStock: "bad_stock",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && outcomeNames[o] != "" {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// ItemConfig is what an operator fixes when creating an item.
type ItemConfig struct {
	Item         string
	Stock        int64
	Shards       int
	PerUserLimit int64
	StartsAtMs   int64 // 0: on sale from creation
	EndsAtMs     int64 // 0: never ends
	// PaymentWindowMs: an order unpaid this long after its grab is
	// cancelled and its units return to stock. 0 means the default.
	PaymentWindowMs int64
}

// PaymentWindow is the item's payment window in milliseconds.
func (c ItemConfig) PaymentWindow() int64 {
	if c.PaymentWindowMs == 0 {
		return DefaultPaymentWindowMs
	}
	return c.PaymentWindowMs
}

// Sentinel errors for configuration problems callers report to operators.
var (
	ErrBadItemID  = errors.New("item id must be 1-128 bytes of [A-Za-z0-9_.:-]")
	ErrBadStock   = errf("stock must be 0..%d", MaxStock)
	ErrBadShards  = errf("shards must be 1..%d", MaxShards)
	ErrBadLimit   = errf("per_user_limit must be 1..%d", MaxPerUserLimit)
	ErrBadWindow  = errors.New("ends_at must be after starts_at")
	ErrBadPayment = errf("payment_window_s must be %d..%d", MinPaymentWindowMs/1000, MaxPaymentWindowMs/1000)
)

// Validate checks the configuration against the engine's limits.
func (c ItemConfig) Validate() error {
	switch {
	case !ValidID(c.Item):
		return ErrBadItemID
	case c.Stock < 0 || c.Stock > MaxStock:
		return ErrBadStock
	case c.Shards < 1 || c.Shards > MaxShards:
		return ErrBadShards
	case c.PerUserLimit < 1 || c.PerUserLimit > MaxPerUserLimit:
		return ErrBadLimit
	case c.EndsAtMs != 0 && c.EndsAtMs <= c.StartsAtMs:
		return ErrBadWindow
	case c.PaymentWindowMs != 0 && (c.PaymentWindowMs < MinPaymentWindowMs || c.PaymentWindowMs > MaxPaymentWindowMs):
		return ErrBadPayment
	}
	return nil
}

// InitialQuota is the part of the stock spread over the shards at creation;
// the rest waits in the item's pool and goes where buyers are.
func (c ItemConfig) InitialQuota() int64 { return c.Stock * InitialQuotaPercent / 100 }

// InitialAllocation is shard i's part of the initial quota: spread evenly,
// the first quota%shards shards holding one unit more.
func (c ItemConfig) InitialAllocation(i int) int64 {
	q, n := c.InitialQuota(), int64(c.Shards)
	a := q / n
	if int64(i) < q%n {
		a++
	}
	return a
}

// InitialPool is what stays in the pool at creation.
func (c ItemConfig) InitialPool() int64 { return c.Stock - c.InitialQuota() }

// RefillChunk is how many units a shard asks the pool for at a time: half
// a shard's fair share of the stock, so that a hot shard refills a few
// times and a cold one never hoards, bounded by MaxRefillChunk.
func (c ItemConfig) RefillChunk() int64 {
	return min(max(c.Stock/int64(c.Shards)/2, 1), MaxRefillChunk)
}

// LowWater is the remaining count at which a shard asks for a refill
// before it runs dry, so buyers rarely wait for one.
func (c ItemConfig) LowWater() int64 { return c.RefillChunk() / 4 }

// ValidQty reports whether one grab may ask for qty units: 1..the per-user
// limit. The front checks it before any hop (a 400 names the limit); the
// shard checks it again for requests that reach it by other ways.
func (c ItemConfig) ValidQty(qty int64) bool { return qty >= 1 && qty <= c.PerUserLimit }

// Window answers NotStarted or Ended when now is outside the sale, else 0.
func (c ItemConfig) Window(nowMs int64) Outcome {
	if nowMs < c.StartsAtMs {
		return NotStarted
	}
	if c.EndsAtMs != 0 && nowMs >= c.EndsAtMs {
		return Ended
	}
	return 0
}

// Grab is one confirmed purchase of Qty units.
type Grab struct {
	Item  string
	Shard int
	Seq   uint64 // 1, 2, ... per shard, never reused
	User  string
	Qty   int64
	Key   string // idempotency key, may be empty
	AtMs  int64
}

// ID is the grab's public id: "<item>.<shard>.<seq>". The two numeric
// parts are parsed from the right, so the id names its own shard.
func (g Grab) ID() string {
	return string(AppendGrabID(make([]byte, 0, len(g.Item)+24), g.Item, g.Shard, g.Seq))
}

// AppendGrabID appends the id of grab seq of item's shard to dst: the one
// spelling of a grab id, for callers that build answers without allocating.
func AppendGrabID(dst []byte, item string, shard int, seq uint64) []byte {
	dst = append(dst, item...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(shard), 10)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, seq, 10)
}

// ParseGrabID splits a grab id into item, shard and sequence.
func ParseGrabID(id string) (item string, shard int, seq uint64, ok bool) {
	j := lastDot(id)
	if j <= 0 {
		return "", 0, 0, false
	}
	seq, ok = canonicalUint(id[j+1:])
	if !ok || seq == 0 {
		return "", 0, 0, false
	}
	i := lastDot(id[:j])
	if i <= 0 {
		return "", 0, 0, false
	}
	sh64, ok := canonicalUint(id[i+1 : j])
	if !ok || sh64 >= MaxShards {
		return "", 0, 0, false
	}
	shard = int(sh64)
	item = id[:i]
	if !ValidID(item) {
		return "", 0, 0, false
	}
	return item, shard, seq, true
}

// canonicalUint parses the decimal form strconv.AppendUint writes: digits
// only, no sign, no leading zero, so that an id has exactly one spelling.
func canonicalUint(s string) (uint64, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

// Counters are a shard's durable numbers. They travel with every grab record
// so that loading a shard needs no sum over its grabs (the sum is checked).
//
// Allocated == initial allocation + Received - Returned: Received and
// Returned are cumulative, so a transfer is matched with the pool's side by
// comparing totals, and recovery after a crash completes it exactly once.
type Counters struct {
	Allocated int64  // units this shard holds or sold
	Sold      int64  // units in confirmed grabs not released
	NextSeq   uint64 // sequence of the next grab
	Received  int64  // units received from the pool, ever
	Returned  int64  // units given back to the pool (steals, releases), ever
}

// Remaining is what the shard can still sell.
func (c Counters) Remaining() int64 { return c.Allocated - c.Sold }

// GrabInput is one buyer's request as the shard sees it.
type GrabInput struct {
	User  string
	Qty   int64
	Key   string
	NowMs int64
}

// Decision is the shard's answer. When Outcome is Confirmed, Grab and
// Counters form the record that must be durable before anyone is told.
type Decision struct {
	Outcome  Outcome
	Grab     Grab
	Counters Counters
}

// MustPersist reports whether the decision created a record.
func (d Decision) MustPersist() bool { return d.Outcome == Confirmed }

type userKey struct{ user, key string }

type keyed struct {
	seq  uint64
	qty  int64
	atMs int64
}

// Shard is one part of an item's stock and the buyers routed to it.
type Shard struct {
	cfg   ItemConfig
	index int
	c     Counters
	// bought is the units each user holds on this shard. Routing sends a
	// user to one shard only, so this is the user's total for the item.
	bought map[string]int64
	keys   map[userKey]keyed
	// grabs[seq-1] is every grab of this shard, so a release by id needs
	// no disk read.
	grabs []grabSlot
}

type grabSlot struct {
	user     string
	qty      int64
	released bool
}

// NewShard creates shard index of an item with its initial allocation.
func NewShard(cfg ItemConfig, index int) *Shard {
	return RestoreShard(cfg, index, Counters{Allocated: cfg.InitialAllocation(index), NextSeq: 1})
}

// RestoreShard recreates a shard from durable counters; its grabs are then
// fed back with Restore and the whole is checked with Verify.
//
// The maps are sized for one buyer and one key per grab up to
// MaxRestoreHint: a load grows no map (growing them was most of a
// restart's time).
func RestoreShard(cfg ItemConfig, index int, c Counters) *Shard {
	hint := int(min(c.NextSeq-1, MaxRestoreHint))
	return &Shard{
		cfg:    cfg,
		index:  index,
		c:      c,
		bought: make(map[string]int64, hint),
		keys:   make(map[userKey]keyed, hint),
		grabs:  make([]grabSlot, c.NextSeq-1, max(c.NextSeq-1, 16)),
	}
}

// Config returns the item configuration the shard was made with.
func (s *Shard) Config() ItemConfig { return s.cfg }

// Index returns the shard number.
func (s *Shard) Index() int { return s.index }

// Counters returns the shard's current numbers.
func (s *Shard) Counters() Counters { return s.c }

// Users returns how many distinct users hold units on this shard.
func (s *Shard) Users() int { return len(s.bought) }

// Holders calls fn for the user of every grab the shard ever made,
// released ones included (a user may appear more than once), gaps left out.
func (s *Shard) Holders(fn func(user string)) {
	for _, g := range s.grabs {
		if g.user != GapUser {
			fn(g.user)
		}
	}
}

// Bought returns the units user holds.
func (s *Shard) Bought(user string) int64 { return s.bought[user] }

// Grab decides one request. It changes the shard only when the outcome is
// Confirmed.
func (s *Shard) Grab(in GrabInput) Decision {
	if in.Key != "" {
		if k, ok := s.keys[userKey{in.User, in.Key}]; ok {
			if k.qty != in.Qty {
				return Decision{Outcome: KeyReused}
			}
			out := Replayed
			if s.grabs[k.seq-1].released {
				out = Released
			}
			return Decision{Outcome: out, Grab: s.grab(in.User, in.Key, k), Counters: s.c}
		}
	}
	if w := s.cfg.Window(in.NowMs); w != 0 {
		return Decision{Outcome: w}
	}
	if !s.cfg.ValidQty(in.Qty) {
		return Decision{Outcome: BadQty}
	}
	held := s.bought[in.User]
	if held+in.Qty > s.cfg.PerUserLimit {
		return Decision{Outcome: LimitReached}
	}
	if s.c.Remaining() < in.Qty {
		// Whether the item is sold out is the pool's call, not the shard's.
		return Decision{Outcome: NeedStock}
	}
	next := s.c
	next.Sold += in.Qty
	next.NextSeq++
	if err := s.checkCounters(next); err != nil {
		return s.broken(err)
	}
	k := keyed{seq: s.c.NextSeq, qty: in.Qty, atMs: in.NowMs}
	s.c = next
	s.bought[in.User] = held + in.Qty
	s.grabs = append(s.grabs, grabSlot{user: in.User, qty: in.Qty})
	if in.Key != "" {
		s.keys[userKey{in.User, in.Key}] = k
	}
	return Decision{Outcome: Confirmed, Grab: s.grab(in.User, in.Key, k), Counters: s.c}
}

func (s *Shard) grab(user, key string, k keyed) Grab {
	return Grab{Item: s.cfg.Item, Shard: s.index, Seq: k.seq, User: user, Qty: k.qty, Key: key, AtMs: k.atMs}
}

// Restore feeds back one durable grab while loading. Grabs may come in any
// order; Verify checks the whole once all are in.
func (s *Shard) Restore(g Grab) error {
	if g.Item != s.cfg.Item || g.Shard != s.index {
		return errf("grab %s does not belong to shard %s.%d", g.ID(), s.cfg.Item, s.index)
	}
	if g.Seq == 0 || g.Seq >= s.c.NextSeq || g.Qty < 1 {
		return errf("grab %s: seq %d qty %d out of range (next seq %d)", g.ID(), g.Seq, g.Qty, s.c.NextSeq)
	}
	slot := &s.grabs[g.Seq-1]
	if slot.qty != 0 {
		return errf("grab %s restored twice", g.ID())
	}
	*slot = grabSlot{user: g.User, qty: g.Qty}
	s.bought[g.User] += g.Qty
	if g.Key != "" {
		s.keys[userKey{g.User, g.Key}] = keyed{seq: g.Seq, qty: g.Qty, atMs: g.AtMs}
	}
	return nil
}

// RestoreRelease marks a restored grab released, as its durable release
// record says. The counters already account for it.
func (s *Shard) RestoreRelease(seq uint64) error {
	if seq == 0 || seq >= s.c.NextSeq || s.grabs[seq-1].qty == 0 {
		return errf("release of unknown grab %s.%d.%d", s.cfg.Item, s.index, seq)
	}
	slot := &s.grabs[seq-1]
	if slot.released {
		return errf("grab %s.%d.%d released twice", s.cfg.Item, s.index, seq)
	}
	slot.released = true
	s.dropHolding(slot.user, slot.qty)
	return nil
}

func (s *Shard) dropHolding(user string, qty int64) {
	if n := s.bought[user] - qty; n > 0 {
		s.bought[user] = n
	} else {
		delete(s.bought, user)
	}
}

// Release returns a confirmed grab to stock: its units leave this shard for
// the pool (Returned grows) and its user's limit slot is freed. Releasing a
// grab twice changes nothing the second time.
func (s *Shard) Release(seq uint64) Decision {
	if seq == 0 || seq >= s.c.NextSeq || int(seq) > len(s.grabs) || s.grabs[seq-1].qty == 0 || s.grabs[seq-1].user == GapUser {
		return Decision{Outcome: UnknownGrab}
	}
	slot := &s.grabs[seq-1]
	g := Grab{Item: s.cfg.Item, Shard: s.index, Seq: seq, User: slot.user, Qty: slot.qty}
	if slot.released {
		return Decision{Outcome: AlreadyReleased, Grab: g, Counters: s.c}
	}
	next := s.c
	next.Sold -= slot.qty
	next.Allocated -= slot.qty
	next.Returned += slot.qty
	if err := s.checkCounters(next); err != nil {
		return s.broken(err)
	}
	s.c = next
	slot.released = true
	s.dropHolding(slot.user, slot.qty)
	return Decision{Outcome: Released, Grab: g, Counters: s.c}
}

// ApplyRefill takes units the pool sent: sentTotal is the pool's
// cumulative count sent to this shard. It returns how many units are new
// (zero for a refill seen before) and the counters to make durable.
func (s *Shard) ApplyRefill(sentTotal int64) (int64, Counters, error) {
	diff := sentTotal - s.c.Received
	if diff <= 0 {
		return 0, s.c, nil
	}
	next := s.c
	next.Received = sentTotal
	next.Allocated += diff
	if err := s.checkCounters(next); err != nil {
		return 0, s.c, err
	}
	s.c = next
	return diff, s.c, nil
}

// GiveBack hands up to want unsold units to the pool (a steal by a sibling
// or a stock reduction). It returns how many went and the counters.
func (s *Shard) GiveBack(want int64) (int64, Counters) {
	k := min(want, s.c.Remaining())
	if k <= 0 {
		return 0, s.c
	}
	next := s.c
	next.Allocated -= k
	next.Returned += k
	if err := s.checkCounters(next); err != nil {
		s.broken(err)
		return 0, s.c
	}
	s.c = next
	return k, s.c
}

// RefillWant is how many units to ask the pool for now: a chunk when the
// shard is at or below its low-water mark, else zero.
func (s *Shard) RefillWant() int64 {
	if s.c.Remaining() > s.cfg.LowWater() {
		return 0
	}
	return s.cfg.RefillChunk()
}

// Verify checks every invariant of the shard, including those that need a
// walk over its users. Loading calls it once; tests call it after each step.
func (s *Shard) Verify() error {
	if err := s.checkCounters(s.c); err != nil {
		return err
	}
	var held int64
	for i, g := range s.grabs {
		if g.qty == 0 {
			return errf("shard %s.%d: grab %d missing", s.cfg.Item, s.index, i+1)
		}
		if !g.released {
			held += g.qty
		}
	}
	if held != s.c.Sold {
		return errf("shard %s.%d: unreleased grabs hold %d units, sold is %d", s.cfg.Item, s.index, held, s.c.Sold)
	}
	var sum int64
	for u, n := range s.bought {
		if n < 1 || n > s.cfg.PerUserLimit {
			return errf("shard %s.%d: user %q holds %d, limit %d", s.cfg.Item, s.index, u, n, s.cfg.PerUserLimit)
		}
		sum += n
	}
	if sum != s.c.Sold {
		return errf("shard %s.%d: users hold %d units, sold is %d", s.cfg.Item, s.index, sum, s.c.Sold)
	}
	return nil
}

// checkCounters asserts what must hold of a shard's counters at every step.
func (s *Shard) checkCounters(c Counters) error {
	if c.Allocated < 0 || c.Sold < 0 || c.Sold > c.Allocated || c.Allocated > MaxStock || c.NextSeq == 0 ||
		c.Received < 0 || c.Returned < 0 || c.Allocated != s.cfg.InitialAllocation(s.index)+c.Received-c.Returned {
		return errf("shard %s.%d counters broken: %+v (initial %d)", s.cfg.Item, s.index, c, s.cfg.InitialAllocation(s.index))
	}
	return nil
}

// broken refuses a step that would break an invariant (see PanicOnBroken).
func (s *Shard) broken(err error) Decision {
	if PanicOnBroken {
		panic(err)
	}
	return Decision{Outcome: Broken}
}
