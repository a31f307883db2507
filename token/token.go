// Package token is the tokens the ResourceManager signs and the daemons
// check (DESIGN.md §6), after YARN's: an AMToken that only one
// application attempt's AM holds, and a ContainerToken per allocation
// that a NodeManager checks before it starts anything.
//
// A token is "LT", a version byte, a kind byte, the id of the master key
// that signed it (uint32, big-endian), the identifier (protobuf), and the
// HMAC-SHA256 of all that. Master keys live in the RM's raft state, the
// leader rotates them, and a token signed with a key that has been
// retired no longer verifies.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Kinds of token.
const (
	KindAM        byte = 1
	KindContainer byte = 2
)

const (
	magic   = "LT"
	version = 1
	header  = len(magic) + 2 + 4
	macSize = sha256.Size
	// MaxSize bounds a token anyone may hand a daemon.
	MaxSize = 4 << 10
)

// SecretSize is the size of a master key's secret.
const SecretSize = 32

// NewKey makes a master key with id, created at now.
func NewKey(id uint32, now time.Time) *yarnpb.MasterKey {
	s := make([]byte, SecretSize)
	_, _ = rand.Read(s)
	return &yarnpb.MasterKey{Id: id, Secret: s, CreatedMs: now.UnixMilli()}
}

// Errors a token check answers with.
var (
	ErrMissing   = errors.New("no token")
	ErrMalformed = errors.New("the token is malformed")
	ErrKey       = errors.New("the token's key is unknown or retired")
	ErrSignature = errors.New("the token's signature does not verify")
	ErrExpired   = errors.New("the token has expired")
)

// sign makes a token of kind over id with key.
func sign(key *yarnpb.MasterKey, kind byte, id proto.Message) ([]byte, error) {
	payload, err := proto.Marshal(id)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, header+len(payload)+macSize)
	b = append(b, magic...)
	b = append(b, version, kind)
	b = binary.BigEndian.AppendUint32(b, key.Id)
	b = append(b, payload...)
	m := hmac.New(sha256.New, key.Secret)
	m.Write(b)
	b = m.Sum(b)
	if len(b) > MaxSize {
		return nil, fmt.Errorf("a token of %d bytes is over the %d-byte bound", len(b), MaxSize)
	}
	return b, nil
}

// verify checks a token of kind against keys and decodes its identifier
// into id; it returns the key that signed it.
func verify(keys []*yarnpb.MasterKey, kind byte, tok []byte, id proto.Message) (*yarnpb.MasterKey, error) {
	if len(tok) == 0 {
		return nil, ErrMissing
	}
	if len(tok) > MaxSize || len(tok) < header+macSize || string(tok[:2]) != magic || tok[2] != version || tok[3] != kind {
		return nil, ErrMalformed
	}
	kid := binary.BigEndian.Uint32(tok[4:8])
	var key *yarnpb.MasterKey
	for _, k := range keys {
		if k.GetId() == kid {
			key = k
			break
		}
	}
	if key == nil {
		return nil, ErrKey
	}
	body, mac := tok[:len(tok)-macSize], tok[len(tok)-macSize:]
	m := hmac.New(sha256.New, key.Secret)
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return nil, ErrSignature
	}
	if err := proto.Unmarshal(body[header:], id); err != nil {
		return nil, ErrMalformed
	}
	return key, nil
}

// AM signs the AMToken of an application attempt.
func AM(key *yarnpb.MasterKey, attemptID string) ([]byte, error) {
	return sign(key, KindAM, &yarnpb.AMTokenIdentifier{ApplicationAttemptId: attemptID})
}

// VerifyAM checks an AMToken and returns the attempt it names and the key
// that signed it.
func VerifyAM(keys []*yarnpb.MasterKey, tok []byte) (string, *yarnpb.MasterKey, error) {
	var id yarnpb.AMTokenIdentifier
	key, err := verify(keys, KindAM, tok, &id)
	if err != nil {
		return "", nil, err
	}
	return id.ApplicationAttemptId, key, nil
}

// Container signs a ContainerToken.
func Container(key *yarnpb.MasterKey, id *yarnpb.ContainerTokenIdentifier) ([]byte, error) {
	return sign(key, KindContainer, id)
}

// VerifyContainer checks a ContainerToken and its expiry against now, and
// returns what it allows.
func VerifyContainer(keys []*yarnpb.MasterKey, tok []byte, now time.Time) (*yarnpb.ContainerTokenIdentifier, error) {
	id := &yarnpb.ContainerTokenIdentifier{}
	if _, err := verify(keys, KindContainer, tok, id); err != nil {
		return nil, err
	}
	if now.UnixMilli() >= id.ExpiryMs {
		return nil, fmt.Errorf("%w (at %s)", ErrExpired, time.UnixMilli(id.ExpiryMs).UTC().Format(time.RFC3339))
	}
	return id, nil
}
