package rpc

import (
	"os"
	"testing"
)

func TestAdvertised(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct{ listen, host, want string }{
		{"127.0.0.1:6123", "", "127.0.0.1:6123"},
		{"0.0.0.0:6123", "node7", "node7:6123"},
		{":6123", "node7", "node7:6123"},
		{"[::]:6123", "", host + ":6123"},
		{"example.org:1", "node7", "example.org:1"},
	} {
		if got := Advertised(c.listen, c.host); got != c.want {
			t.Errorf("Advertised(%q, %q) = %q, want %q", c.listen, c.host, got, c.want)
		}
	}
}
