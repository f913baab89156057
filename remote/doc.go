// Package remote owns the wire between seckill nodes: the envelope that
// carries the sale protocol's messages, and requests (grabs, releases,
// stock changes) and their replies, inside a registered protobuf type, and
// a Transport that sends envelopes to a peer node over protoactor's remote
// and hands what arrives to the caller.
//
// Delivery is at most once, in order per connection while it lasts, with
// no futures and no retries: the protocol already tolerates loss (totals
// are cumulative, asks are repeated, chases resend). Nothing in engine,
// transport or sale imports this package; the actors layer routes to it.
package remote
