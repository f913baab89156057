// Package remote owns the wire between seckill nodes: the envelope that
// carries the sale protocol's messages, and requests (grabs, releases,
// stock changes) and their replies, inside a registered protobuf type, and
// a Transport that sends envelopes to a peer node over protoactor's remote
// and hands what arrives to the caller.
//
// Delivery is at most once, in order per connection while it lasts, with
// no futures and no retries: the protocol already tolerates loss (totals
// are cumulative, asks are repeated, chases resend). A request is sent once
// too and matched with its reply by id; a request or reply lost is a
// timeout, which the requester answers as unavailable, never a resend that
// could grab twice. Nothing in engine, transport or sale imports this
// package; the actors layer routes to it.
package remote
