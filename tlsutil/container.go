package tlsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The files of a container's identity in its credentials directory,
// which its NodeManager names in LOOM_CREDENTIALS.
const (
	CredentialCA   = "ca.pem"
	CredentialCert = "cert.pem"
	CredentialKey  = "key.pem"
	// CredentialAMToken is an AM container's AMToken, which the
	// ResourceManager signs for the attempt it launches.
	CredentialAMToken = "am-token"
	// EnvCredentials names a container's credentials directory.
	EnvCredentials = "LOOM_CREDENTIALS"
	// EnvAdmins lists the cluster's admins (as the ResourceManager's
	// --admins, comma-separated) in an AM container, for the
	// application's own services to let them act on it.
	EnvAdmins = "LOOM_ADMINS"
)

// Credentials are the launch-context credentials that give a container
// this certificate.
func (iss *Issued) Credentials(caPEM []byte) map[string][]byte {
	return map[string][]byte{CredentialCA: caPEM, CredentialCert: iss.CertPEM, CredentialKey: iss.KeyPEM}
}

// ContainerFiles names the identity files of the container this process
// runs in, or reports false outside a container that was given one.
func ContainerFiles() (Files, bool) {
	dir := os.Getenv(EnvCredentials)
	if dir == "" {
		return Files{}, false
	}
	return Files{CA: filepath.Join(dir, CredentialCA), Cert: filepath.Join(dir, CredentialCert), Key: filepath.Join(dir, CredentialKey)}, true
}

// ContainerCredentials reads the container's identity back as launch
// credentials, for an AM to hand its application's identity to the
// containers it starts.
func ContainerCredentials() (map[string][]byte, error) {
	f, ok := ContainerFiles()
	if !ok {
		return nil, errors.New("this container was given no credentials (" + EnvCredentials + " is not set)")
	}
	out := map[string][]byte{}
	for name, p := range map[string]string{CredentialCA: f.CA, CredentialCert: f.Cert, CredentialKey: f.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// ContainerAMToken reads the AMToken of the AM container this process
// runs in.
func ContainerAMToken() ([]byte, error) {
	dir := os.Getenv(EnvCredentials)
	if dir == "" {
		return nil, errors.New("this container was given no credentials (" + EnvCredentials + " is not set)")
	}
	b, err := os.ReadFile(filepath.Join(dir, CredentialAMToken))
	if err != nil {
		return nil, fmt.Errorf("the AM container's token: %w", err)
	}
	return b, nil
}

// LoadContainer loads the identity of the container this process runs in.
func LoadContainer() (*Bundle, error) {
	f, ok := ContainerFiles()
	if !ok {
		return nil, errors.New("this container was given no certificate (" + EnvCredentials + " is not set); it must be started by a NodeManager for an application")
	}
	return Load(f)
}
