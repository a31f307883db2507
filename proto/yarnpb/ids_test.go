package yarnpb

import (
	"fmt"
	"strings"
	"testing"
)

func TestContainerIDsKeepTheirFormat(t *testing.T) {
	for _, v := range []struct {
		epoch   int64
		attempt int32
		seq     int64
	}{{0, 0, 0}, {1, 1, 1}, {3, 2, 41}, {12, 10, 999999}, {123, 100, 1234567}, {-1, 1, 1}, {1, -2, 3}, {1, 2, -3}, {1 << 62, 1 << 30, 1 << 62}} {
		app := AppID(1700000000000, 7)
		want := fmt.Sprintf("container_e%02d_%s_%02d_%06d", v.epoch, "1700000000000_0007", v.attempt, v.seq)
		if got := ContainerID(v.epoch, app, v.attempt, v.seq); got != want {
			t.Errorf("ContainerID(%d, %s, %d, %d) = %s, want %s", v.epoch, app, v.attempt, v.seq, got, want)
		}
	}
}

func TestIDsRoundTrip(t *testing.T) {
	app := AppID(1700000000000, 7)
	at := AttemptID(app, 2)
	c := ContainerID(3, app, 2, 41)
	if got, err := AppIDOfAttempt(at); err != nil || got != app {
		t.Errorf("AppIDOfAttempt(%s) = %s, %v", at, got, err)
	}
	if got, err := AppIDOfContainer(c); err != nil || got != app {
		t.Errorf("AppIDOfContainer(%s) = %s, %v", c, got, err)
	}
	if ts, seq, err := ParseAppID(app); err != nil || ts != 1700000000000 || seq != 7 {
		t.Errorf("ParseAppID(%s) = %d, %d, %v", app, ts, seq, err)
	}
}

func TestIDsRefuseAnythingButDigits(t *testing.T) {
	for _, id := range []string{
		"container_e01_x_a_b_c/../../../../etc",
		"container_e01_1_1_1_1/../../x",
		"container_e01_1_1_1_",
		"container_e_1_1_1_1",
		"container_e01_+1_1_1_1",
		"container_e01_1 _1_1_1",
	} {
		if _, err := AppIDOfContainer(id); err == nil {
			t.Errorf("container id %q was taken", id)
		}
	}
	for _, id := range []string{"appattempt_1_1_1/..", "appattempt_1_1", "appattempt_x_1_1", "appattempt_1_1_-1"} {
		if _, err := AppIDOfAttempt(id); err == nil {
			t.Errorf("attempt id %q was taken", id)
		}
	}
	for _, id := range []string{"application_+1_1", "application_1_1/..", "application_1_", "application_1_" + strings.Repeat("9", 30)} {
		if _, _, err := ParseAppID(id); err == nil {
			t.Errorf("application id %q was taken", id)
		}
	}
}

// FuzzIDs: whatever parses as an id is a plain file name, as the
// NodeManager uses ids in paths.
func FuzzIDs(f *testing.F) {
	f.Add("container_e01_1700000000000_0001_01_000001")
	f.Add("appattempt_1700000000000_0001_000001")
	f.Add("application_1700000000000_0001")
	f.Fuzz(func(t *testing.T, id string) {
		check := func(s string) {
			if strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." {
				t.Fatalf("id %q gives path component %q", id, s)
			}
		}
		if app, err := AppIDOfContainer(id); err == nil {
			check(app)
			check(id)
		}
		if app, err := AppIDOfAttempt(id); err == nil {
			check(app)
			check(id)
		}
		if _, _, err := ParseAppID(id); err == nil {
			check(id)
		}
	})
}
