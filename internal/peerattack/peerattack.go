// Package peerattack is the attacker of the peer-port tests: a process that
// is no node (or holds a certificate it should not) speaking protoactor
// remote's gRPC to a node's peer port, with whatever it likes inside.
// Loopback only, like every test.
package peerattack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protoremote "github.com/asynkron/protoactor-go/remote"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Timeout bounds each step of an attack.
const Timeout = 5 * time.Second

// Attacker holds one open Receive stream to a node's peer port.
type Attacker struct {
	conn   *grpc.ClientConn
	stream protoremote.Remoting_ReceiveClient
	cancel context.CancelFunc
}

func creds(tc *tls.Config) grpc.DialOption {
	if tc == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(tc))
}

// Dial opens a stream to addr as protoactor's endpoint writer does: TLS
// with tc (nil: none), a connect request, and its answer. An error means
// the node refused the attacker before it could say anything.
func Dial(addr string, tc *tls.Config) (*Attacker, error) {
	conn, err := grpc.Dial(addr, creds(tc))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Attacker{conn: conn, cancel: cancel}
	done := make(chan error, 1)
	go func() {
		s, err := protoremote.NewRemotingClient(conn).Receive(ctx)
		if err == nil {
			a.stream = s
			err = s.Send(&protoremote.RemoteMessage{MessageType: &protoremote.RemoteMessage_ConnectRequest{
				ConnectRequest: &protoremote.ConnectRequest{ConnectionType: &protoremote.ConnectRequest_ServerConnection{
					ServerConnection: &protoremote.ServerConnection{SystemId: "attacker", Address: "127.0.0.66:6666"}}}}})
		}
		if err == nil {
			var r *protoremote.RemoteMessage
			if r, err = s.Recv(); err == nil && r.GetConnectResponse() == nil {
				err = errors.New("no connect response")
			}
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(Timeout):
		err = errors.New("no answer to the connect request")
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close ends the stream once the node has read everything sent on it (it
// ends its side when it reads the end of ours), then the connection.
func (a *Attacker) Close() {
	if a.stream != nil && a.stream.CloseSend() == nil {
		done := make(chan struct{})
		go func() {
			for {
				if _, err := a.stream.Recv(); err != nil {
					break
				}
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(Timeout):
		}
	}
	a.cancel()
	a.conn.Close()
}

// Batch sends one raw batch.
func (a *Attacker) Batch(b *protoremote.MessageBatch) error {
	return a.stream.Send(&protoremote.RemoteMessage{MessageType: &protoremote.RemoteMessage_MessageBatch{MessageBatch: b}})
}

// Raw sends data as one message of type typeName to the actor target, with
// header (nil: none).
func (a *Attacker) Raw(typeName, target string, data []byte, header map[string]string) error {
	e := &protoremote.MessageEnvelope{TypeId: 0, MessageData: data, Target: 0}
	if header != nil {
		e.MessageHeader = &protoremote.MessageHeader{HeaderData: header}
	}
	return a.Batch(&protoremote.MessageBatch{TypeNames: []string{typeName},
		Targets: []*actor.PID{{Address: "nonhost", Id: target}}, Envelopes: []*protoremote.MessageEnvelope{e}})
}

// Payload sends p as the BytesValue a node sends, to its receiver, with a
// header that claims to be node claim (a forged proof; "" none).
func (a *Attacker) Payload(p []byte, claim string) error {
	data, err := proto.Marshal(&wrapperspb.BytesValue{Value: p})
	if err != nil {
		return err
	}
	var h map[string]string
	if claim != "" {
		h = map[string]string{"seckill-peer": claim}
	}
	return a.Raw("google.protobuf.BytesValue", remote.ReceiverName, data, h)
}

// Msg sends m as if the node at from had sent it, claiming to be node
// claim in a header.
func (a *Attacker) Msg(from, claim string, m engine.Msg) error {
	return a.Payload(remote.AppendEnvelope(nil, remote.MsgFromEnvelope(from, m)), claim)
}

// Request sends a request whose reply should go to from.
func (a *Attacker) Request(from string, r remote.Request) error {
	r.From = from
	if r.ID == 0 {
		r.ID = 1
	}
	return a.Payload(remote.AppendEnvelope(nil, remote.RequestEnvelope(r)), "")
}

// Garbage opens a TCP connection to addr, writes b and closes it.
func Garbage(addr string, b []byte) error {
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(Timeout))
	_, err = c.Write(b)
	return err
}

// Flood opens n TCP connections to addr that say nothing, and returns a
// function that closes them.
func Flood(addr string, n int) (func(), error) {
	var cs []net.Conn
	closeAll := func() {
		for _, c := range cs {
			c.Close()
		}
	}
	for range n {
		c, err := net.DialTimeout("tcp", addr, Timeout)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("connection %d: %w", len(cs), err)
		}
		cs = append(cs, c)
	}
	return closeAll, nil
}

// ListProcesses calls protoactor's unary ListProcesses, unimplemented (it
// panics) in the node's protoactor.
func ListProcesses(addr string, tc *tls.Config) error {
	conn, err := grpc.Dial(addr, creds(tc))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	_, err = protoremote.NewRemotingClient(conn).ListProcesses(ctx, &protoremote.ListProcessesRequest{})
	return err
}
