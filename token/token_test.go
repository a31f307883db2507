package token

import (
	"errors"
	"testing"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
)

// A token verifies with the key that signed it and no other, and any
// change to it fails the signature.
func TestTokensVerifyOnlyAsSigned(t *testing.T) {
	now := time.Now()
	k1, k2 := NewKey(1, now), NewKey(2, now)
	tok, err := AM(k1, "appattempt_1_0001_000001")
	if err != nil {
		t.Fatal(err)
	}
	got, key, err := VerifyAM([]*yarnpb.MasterKey{k2, k1}, tok)
	if err != nil || got != "appattempt_1_0001_000001" || key.Id != 1 {
		t.Fatalf("VerifyAM: %q %v %v", got, key, err)
	}
	if _, _, err := VerifyAM([]*yarnpb.MasterKey{k2}, tok); !errors.Is(err, ErrKey) {
		t.Fatalf("with the signing key retired: %v", err)
	}
	for i := header; i < len(tok); i++ {
		bad := append([]byte(nil), tok...)
		bad[i] ^= 1
		if _, _, err := VerifyAM([]*yarnpb.MasterKey{k1}, bad); err == nil {
			t.Fatalf("a token with byte %d flipped verified", i)
		}
	}
	ct, err := Container(k1, &yarnpb.ContainerTokenIdentifier{ContainerId: "c", ExpiryMs: now.Add(time.Minute).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyAM([]*yarnpb.MasterKey{k1}, ct); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a container token as an AM token: %v", err)
	}
	if _, err := VerifyContainer([]*yarnpb.MasterKey{k1}, ct, now.Add(time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at its expiry: %v", err)
	}
}

// FuzzVerify feeds the token decoder what a peer may send: it never
// panics, and whatever verifies was signed by the key.
func FuzzVerify(f *testing.F) {
	key := &yarnpb.MasterKey{Id: 3, Secret: make([]byte, SecretSize)}
	am, _ := AM(key, "appattempt_1_0001_000001")
	ct, _ := Container(key, &yarnpb.ContainerTokenIdentifier{ContainerId: "c", ExpiryMs: 1 << 62})
	f.Add(am)
	f.Add(ct)
	f.Add([]byte("LT\x01\x02\x00\x00\x00\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys := []*yarnpb.MasterKey{key}
		if id, _, err := VerifyAM(keys, b); err == nil {
			// Only what the key signed verifies: the decoded attempt
			// signs back to the same bytes.
			if again, _ := AM(key, id); string(again) != string(b) {
				t.Fatalf("%x verified as attempt %q, which signs as %x", b, id, again)
			}
		}
		if id, err := VerifyContainer(keys, b, time.UnixMilli(0)); err == nil && id == nil {
			t.Fatal("verified without an identifier")
		}
	})
}
