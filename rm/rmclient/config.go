package rmclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loom-project/loom/tlsutil"
)

// Config is a client's context: where the cluster is and who the client
// is there. LOOM_CONFIG names its file; `loom cluster up` writes one for
// the cluster it starts (and, unless told not to, as the user's default,
// DefaultConfigPath, as minikube writes ~/.kube/config).
type Config struct {
	RM  []string  `json:"rm"`
	TLS ConfigTLS `json:"tls"`
	By  string    `json:"written_by,omitempty"`
	dir string
}

// ConfigTLS names the client's certificate files; relative paths are
// relative to the config file.
type ConfigTLS struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// ConfigByClusterUp marks a config `loom cluster up` wrote, which the
// next one may replace.
const ConfigByClusterUp = "loom cluster up"

// DefaultConfigPath is where a client looks for its context when
// LOOM_CONFIG is not set: ~/.loom/config.
func DefaultConfigPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".loom", "config")
}

// LoadConfig reads a context file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s is not a loom client config: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	return &c, nil
}

// Files are the config's TLS files, with relative paths resolved.
func (c *Config) Files() tlsutil.Files {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(c.dir, p)
	}
	return tlsutil.Files{CA: abs(c.TLS.CA), Cert: abs(c.TLS.Cert), Key: abs(c.TLS.Key)}
}

// WriteConfig writes a context file (mode 0600: it names a private key).
func WriteConfig(path string, c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ResolveConfig finds the client's context: the file LOOM_CONFIG (or
// --config) names, else the default one. It says what to do when there
// is none.
func ResolveConfig(path string) (*Config, error) {
	if path != "" {
		c, err := LoadConfig(path)
		if err != nil {
			return nil, fmt.Errorf("reading the client config %s: %w", path, err)
		}
		return c, nil
	}
	def := DefaultConfigPath()
	c, err := LoadConfig(def)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no client config: set LOOM_CONFIG to the file `loom cluster up` printed, or write %s (see `loom tls --help`)", def)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the client config %s: %w", def, err)
	}
	return c, nil
}
