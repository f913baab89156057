package actors

import (
	"runtime"
	"sync"
)

const (
	// dispatchQueue bounds mailbox runs waiting for a worker; past it a run
	// gets a goroutine of its own, so a slow worker never stalls the rest.
	dispatchQueue = 4096
	// workersPerProc: actors block only on a full commit queue, so a few
	// workers per core keep every core busy.
	workersPerProc = 4
)

// poolDispatcher runs actor mailboxes on long-lived goroutines. protoactor's
// default dispatcher starts a goroutine per mailbox run, whose stack then
// grows anew through every grab: a profile of the durable path spent 18 %
// of its CPU copying stacks.
type poolDispatcher struct {
	work chan func()
	quit chan struct{}
	once sync.Once
}

func newPoolDispatcher() *poolDispatcher {
	d := &poolDispatcher{work: make(chan func(), dispatchQueue), quit: make(chan struct{})}
	for range workersPerProc * runtime.GOMAXPROCS(0) {
		go func() {
			for {
				select {
				case fn := <-d.work:
					fn()
				case <-d.quit:
					return
				}
			}
		}()
	}
	return d
}

// Schedule runs fn on a worker, or on its own goroutine when all are busy
// and the queue is full, or after the dispatcher stopped.
func (d *poolDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	case <-d.quit:
		go fn()
	default:
		go fn()
	}
}

// Throughput is how many messages a mailbox run handles before yielding.
func (d *poolDispatcher) Throughput() int { return 300 }

func (d *poolDispatcher) stop() { d.once.Do(func() { close(d.quit) }) }
