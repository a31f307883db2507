// Package rpc holds what every loom gRPC connection shares, in the cluster
// and in the streaming runtime alike.
package rpc

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loom-project/loom/errdefs"
)

// DialOptions are the gRPC options of every loom client connection: TLS
// with tc (plaintext where tc is nil, which only the streaming runtime's
// own connections still are), and reconnects that start after 20 ms
// instead of grpc-go's 1 s, so a daemon that has just started is reached
// as soon as it listens.
func DialOptions(tc *tls.Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
}

// Advertised turns a listen address into one others can dial: an
// unspecified host ("", 0.0.0.0, ::) becomes host, or this machine's name
// when host is empty.
func Advertised(listen, host string) string {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	return net.JoinHostPort(host, port)
}

// Authorize resolves and checks the caller of a gRPC method; the context
// it returns carries what it resolved to the handler.
type Authorize func(ctx context.Context, method string) (context.Context, error)

// AuthOptions are the server options that run authorize before every
// unary and streaming handler, answering its refusal as a gRPC status.
func AuthOptions(authorize Authorize) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			ctx, err := authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, errdefs.ToGRPC(err)
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			ctx, err := authorize(ss.Context(), info.FullMethod)
			if err != nil {
				return errdefs.ToGRPC(err)
			}
			return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
		}),
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
