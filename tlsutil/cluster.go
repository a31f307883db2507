package tlsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ClusterFiles are the certificates of a cluster on one machine, as
// `loom cluster up` keeps them in DIR/tls.
type ClusterFiles struct {
	Dir string
}

// CA and CAKey are the CA's files.
func (c ClusterFiles) CA() string    { return filepath.Join(c.Dir, "ca.pem") }
func (c ClusterFiles) CAKey() string { return filepath.Join(c.Dir, "ca-key.pem") }

// For names the files of the certificate called name.
func (c ClusterFiles) For(name string) Files {
	return Files{CA: c.CA(), Cert: filepath.Join(c.Dir, name+".pem"), Key: filepath.Join(c.Dir, name+"-key.pem")}
}

// EnsureCA creates the CA unless its files are there, and loads it.
func (c ClusterFiles) EnsureCA(name string) (*CA, error) {
	if _, err := os.Stat(c.CA()); errors.Is(err, os.ErrNotExist) {
		ca, err := NewCA(name, CAValidity)
		if err != nil {
			return nil, err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		if err := WriteFiles(c.Dir, false, map[string][]byte{"ca.pem": ca.PEM, "ca-key.pem": key}); err != nil {
			return nil, err
		}
		return ca, nil
	}
	return LoadCA(c.CA(), c.CAKey())
}

// Ensure issues the certificate called name for id unless a valid one
// of the CA is there, and returns its files.
func (c ClusterFiles) Ensure(ca *CA, name string, id Identity) (Files, error) {
	f := c.For(name)
	if b, err := Load(f); err == nil && b.CA.Equal(ca.Cert) && b.Identity.String() == id.String() {
		return f, nil
	}
	iss, err := ca.Sign(CertRequest{Identity: id})
	if err != nil {
		return Files{}, fmt.Errorf("issuing the certificate of %s: %w", id, err)
	}
	if err := WriteFiles(c.Dir, true, map[string][]byte{name + ".pem": iss.CertPEM, name + "-key.pem": iss.KeyPEM}); err != nil {
		return Files{}, err
	}
	return f, nil
}
