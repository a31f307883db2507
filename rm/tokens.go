package rm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/token"
)

// keysKept is how many master keys the state keeps: a token verifies for
// keysKept-1 rotations after its key stopped being the newest.
const keysKept = 3

// masterKeys are the master keys, newest first.
func (s *Server) masterKeys() []*yarnpb.MasterKey { return s.State().Snapshot().Meta().Keys }

// signingKey is the newest master key.
func (s *Server) signingKey() (*yarnpb.MasterKey, error) {
	keys := s.masterKeys()
	if len(keys) == 0 {
		return nil, errdefs.Unavailable("the ResourceManager has no master key yet; try again in a moment")
	}
	return keys[0], nil
}

// rotateKeysIfDue commits a new master key when there is none or the
// newest is KeyRotation old.
func (s *Server) rotateKeysIfDue(now time.Time) error {
	keys := s.masterKeys()
	if len(keys) > 0 && now.Sub(time.UnixMilli(keys[0].CreatedMs)) < s.cfg.KeyRotation {
		return nil
	}
	id := uint32(1)
	if len(keys) > 0 {
		id = keys[0].Id + 1
	}
	if _, _, err := s.commit(CmdRotateKey, rotateKeyCmd{Key: token.NewKey(id, now)}); err != nil {
		return err
	}
	s.logger.Info("master key rotated", "key_id", id)
	return nil
}

// keyRotationLoop rotates the master keys when due.
func (s *Server) keyRotationLoop(ctx context.Context) {
	s.tick(ctx, min(time.Hour, s.cfg.KeyRotation/4), func(now time.Time) {
		if err := s.rotateKeysIfDue(now); err != nil {
			s.logger.Warn("rotating the master key failed", "error", err)
		}
	})
}

// amToken signs the AMToken of an attempt.
func (s *Server) amToken(attemptID string) ([]byte, error) {
	key, err := s.signingKey()
	if err != nil {
		return nil, err
	}
	return token.AM(key, attemptID)
}

// checkAMToken checks that tok is the AMToken of attemptID. roll, when
// not nil, is a token of the newest key to replace it with.
func (s *Server) checkAMToken(tok []byte, attemptID string) (roll []byte, err error) {
	keys := s.masterKeys()
	got, key, err := token.VerifyAM(keys, tok)
	if err != nil {
		if errors.Is(err, token.ErrMissing) {
			return nil, errdefs.Unauthenticated("no AMToken: an ApplicationMaster presents the token of its attempt from its launch credentials (%s)", tlsutil.CredentialAMToken)
		}
		return nil, errdefs.Unauthenticated("the AMToken of attempt %s: %v", attemptID, err)
	}
	if got != attemptID {
		return nil, errdefs.PermissionDenied("the AMToken is attempt %s's, not %s's", got, attemptID)
	}
	if key.Id != keys[0].Id {
		if roll, err = token.AM(keys[0], attemptID); err != nil {
			return nil, err
		}
	}
	return roll, nil
}

// containerToken signs the token that lets c be started on its node for
// user, until ContainerTokenLife from now.
func (s *Server) containerToken(c *state.Container, user string, now time.Time) ([]byte, error) {
	key, err := s.signingKey()
	if err != nil {
		return nil, err
	}
	return token.Container(key, &yarnpb.ContainerTokenIdentifier{
		ContainerId: c.ID, NodeId: c.NodeID, ApplicationId: c.AppID, User: user,
		Resource: c.Resource.Proto(), ExpiryMs: now.Add(s.cfg.ContainerTokenLife).UnixMilli(),
	})
}

// withToken is c's report with its container token, as the AM gets it.
func (s *Server) withToken(c *state.Container, user string, now time.Time) (*yarnpb.Container, error) {
	p := c.Proto()
	tok, err := s.containerToken(c, user, now)
	if err != nil {
		return nil, fmt.Errorf("signing the token of %s: %w", c.ID, err)
	}
	p.Token = tok
	return p, nil
}
