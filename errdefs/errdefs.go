// Package errdefs holds loom's error classes. Packages wrap errors with a
// class; the gRPC edge maps classes to codes and back, so a client sees the
// same class and a message a user can act on.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error classes.
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrNotLeader          = errors.New("not the leader")
	ErrUnavailable        = errors.New("unavailable")
	// ErrUnauthenticated: the caller presented no identity this cluster
	// trusts. ErrPermissionDenied: it did, and that identity may not do
	// what it asked.
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
)

type classed struct {
	class error
	msg   string
}

func (e *classed) Error() string        { return e.msg }
func (e *classed) Is(target error) bool { return target == e.class }

// InvalidArgument returns an error of class ErrInvalidArgument.
func InvalidArgument(format string, args ...any) error {
	return &classed{ErrInvalidArgument, fmt.Sprintf(format, args...)}
}

// NotFound returns an error of class ErrNotFound.
func NotFound(format string, args ...any) error {
	return &classed{ErrNotFound, fmt.Sprintf(format, args...)}
}

// AlreadyExists returns an error of class ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error {
	return &classed{ErrAlreadyExists, fmt.Sprintf(format, args...)}
}

// FailedPrecondition returns an error of class ErrFailedPrecondition.
func FailedPrecondition(format string, args ...any) error {
	return &classed{ErrFailedPrecondition, fmt.Sprintf(format, args...)}
}

// Unavailable returns an error of class ErrUnavailable.
func Unavailable(format string, args ...any) error {
	return &classed{ErrUnavailable, fmt.Sprintf(format, args...)}
}

// Unauthenticated returns an error of class ErrUnauthenticated.
func Unauthenticated(format string, args ...any) error {
	return &classed{ErrUnauthenticated, fmt.Sprintf(format, args...)}
}

// PermissionDenied returns an error of class ErrPermissionDenied.
func PermissionDenied(format string, args ...any) error {
	return &classed{ErrPermissionDenied, fmt.Sprintf(format, args...)}
}

// leaderPrefix starts the message of a NotLeader error; the leader's
// address follows it.
const leaderPrefix = "not the leader; leader="

// NotLeader returns an error that names the leader's address ("" when
// unknown).
func NotLeader(leader string) error {
	return &classed{ErrNotLeader, leaderPrefix + leader}
}

// LeaderHint returns the leader address carried by a NotLeader error.
func LeaderHint(err error) (string, bool) {
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Message()
	}
	i := strings.Index(msg, leaderPrefix)
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(msg[i+len(leaderPrefix):]), true
}

// ToGRPC maps an error to a gRPC status error.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// FromGRPC maps a gRPC status error back to a classed error whose message
// is the server's.
func FromGRPC(err error) error {
	s, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	var class error
	switch s.Code() {
	case codes.InvalidArgument:
		class = ErrInvalidArgument
	case codes.NotFound:
		class = ErrNotFound
	case codes.AlreadyExists:
		class = ErrAlreadyExists
	case codes.FailedPrecondition:
		class = ErrFailedPrecondition
	case codes.Unavailable:
		class = ErrUnavailable
		if strings.HasPrefix(s.Message(), leaderPrefix) {
			class = ErrNotLeader
		}
	case codes.Unauthenticated:
		class = ErrUnauthenticated
	case codes.PermissionDenied:
		class = ErrPermissionDenied
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", s.Message(), context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", s.Message(), context.Canceled)
	default:
		return errors.New(s.Message())
	}
	return &classed{class, s.Message()}
}
