package yarnpb

import (
	"fmt"
	"strings"
)

// Bounds on what a container launch context may carry, which the RM
// checks of a submitted AM and every NodeManager of every container.
const (
	MaxCommandArgs     = 4096
	MaxEnvVars         = 1024
	MaxEnvBytes        = 1 << 20 // of the environment, and of the command
	MaxLocalResources  = 1024
	MaxCredentials     = 16
	MaxCredentialBytes = 64 << 10
)

// NodeLabel reports whether l is a node label: 1 to 128 letters,
// digits, '.', '_' and '-'. NodeManagers' labels, asks' and queue files'
// are all checked by it.
func NodeLabel(l string) bool {
	if l == "" || len(l) > 128 {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// PlainName reports whether name is a plain file name: it stays in the
// directory it is joined to.
func PlainName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 && !strings.ContainsAny(name, "/\\\x00")
}

// Validate checks a launch context against the bounds, and that every
// name in it is one a process or a file can have.
func (lc *ContainerLaunchContext) Validate() error {
	envBytes := 0
	for k, v := range lc.Env {
		envBytes += len(k) + len(v)
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return fmt.Errorf("environment variable %q is not a valid name", k)
		}
	}
	argBytes := 0
	for _, a := range lc.Command {
		argBytes += len(a)
		if strings.Contains(a, "\x00") {
			return fmt.Errorf("a command argument holds a NUL byte")
		}
	}
	switch {
	case len(lc.Command) > MaxCommandArgs || argBytes > MaxEnvBytes:
		return fmt.Errorf("the command has %d arguments of %d bytes, at most %d and %d bytes are allowed", len(lc.Command), argBytes, MaxCommandArgs, MaxEnvBytes)
	case len(lc.Env) > MaxEnvVars || envBytes > MaxEnvBytes:
		return fmt.Errorf("the environment has %d variables of %d bytes, at most %d and %d bytes are allowed", len(lc.Env), envBytes, MaxEnvVars, MaxEnvBytes)
	case len(lc.LocalResources) > MaxLocalResources:
		return fmt.Errorf("%d local resources, at most %d are allowed", len(lc.LocalResources), MaxLocalResources)
	case len(lc.Credentials) > MaxCredentials:
		return fmt.Errorf("%d credentials, at most %d are allowed", len(lc.Credentials), MaxCredentials)
	}
	for _, r := range lc.LocalResources {
		if !PlainName(r.Name) {
			return fmt.Errorf("local resource name %q is not a plain file name", r.Name)
		}
	}
	for name, b := range lc.Credentials {
		if !PlainName(name) || len(b) > MaxCredentialBytes {
			return fmt.Errorf("credential %q must be a plain file name of at most %d bytes", name, MaxCredentialBytes)
		}
	}
	return nil
}
