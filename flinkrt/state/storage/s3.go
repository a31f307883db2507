package storage

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// CredentialFile is the launch-context credential that carries a job's
// S3 settings (S3Config as JSON) into its AM and TaskManager containers,
// in the directory LOOM_CREDENTIALS names.
const CredentialFile = "s3.json"

// The environment variables S3Config reads, as the AWS tools name them.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
	EnvRegion          = "AWS_REGION"
	EnvDefaultRegion   = "AWS_DEFAULT_REGION"
	EnvEndpoint        = "AWS_ENDPOINT_URL"
	EnvEndpointS3      = "AWS_ENDPOINT_URL_S3"
	EnvCABundle        = "AWS_CA_BUNDLE"
	EnvProfile         = "AWS_PROFILE"
	EnvSharedCreds     = "AWS_SHARED_CREDENTIALS_FILE"
)

// requestTries is how many times the client sends a request that failed
// in a way worth trying again (a connection lost, a 5xx, a 429): 200 ms
// to 1 s apart, with jitter.
const requestTries = 10

// S3Config is how a process reaches the object store.
type S3Config struct {
	// Endpoint is the store's URL (http://host:port for a server of
	// one's own); empty is Amazon S3.
	Endpoint        string `json:"endpoint,omitempty"`
	Region          string `json:"region,omitempty"`
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	SessionToken    string `json:"session_token,omitempty"`
	// CAPEM are the certificates a TLS endpoint's is checked against,
	// besides the system's.
	CAPEM string `json:"ca_pem,omitempty"`
}

// S3ConfigFromEnv reads the S3 settings of this process's environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AWS_REGION, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, and AWS_CA_BUNDLE
// for an https endpoint of one's own: Amazon's is signed by a CA every
// host trusts).
func S3ConfigFromEnv() (S3Config, error) {
	c := S3Config{
		Endpoint:        firstEnv(EnvEndpointS3, EnvEndpoint),
		Region:          firstEnv(EnvRegion, EnvDefaultRegion),
		AccessKeyID:     os.Getenv(EnvAccessKeyID),
		SecretAccessKey: os.Getenv(EnvSecretAccessKey),
		SessionToken:    os.Getenv(EnvSessionToken),
	}
	if f := os.Getenv(EnvCABundle); f != "" && strings.HasPrefix(c.Endpoint, "https://") {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("%s: %w", EnvCABundle, err)
		}
		c.CAPEM = string(b)
	}
	return c, nil
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// Empty reports whether c says nothing.
func (c S3Config) Empty() bool { return c == S3Config{} }

// over fills what c leaves empty from base.
func (c S3Config) over(base S3Config) S3Config {
	if c.AccessKeyID == "" {
		c.AccessKeyID, c.SecretAccessKey, c.SessionToken = base.AccessKeyID, base.SecretAccessKey, base.SessionToken
	}
	if c.Endpoint == "" {
		c.Endpoint = base.Endpoint
	}
	if c.Region == "" {
		c.Region = base.Region
	}
	if c.CAPEM == "" {
		c.CAPEM = base.CAPEM
	}
	return c
}

// processS3Config is this process's S3 settings: its environment, over
// what its container was given (CredentialFile).
func processS3Config() (S3Config, error) {
	env, err := S3ConfigFromEnv()
	if err != nil {
		return env, err
	}
	dir := os.Getenv("LOOM_CREDENTIALS")
	if dir == "" {
		return env, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, CredentialFile))
	if errors.Is(err, fs.ErrNotExist) {
		return env, nil
	}
	if err != nil {
		return env, err
	}
	var given S3Config
	if err := json.Unmarshal(b, &given); err != nil {
		return env, fmt.Errorf("the container's %s: %w", CredentialFile, err)
	}
	return env.over(given), nil
}

// s3Store keeps one client per S3 settings seen: a process has one or
// two (a test, a few).
type s3Store struct {
	mu      sync.Mutex
	clients map[S3Config]*minio.Client
}

const maxS3Clients = 8

var s3s = &s3Store{clients: map[S3Config]*minio.Client{}}

func objectStore() backend { return s3s }

func (s *s3Store) client() (*minio.Client, error) {
	cfg, err := processS3Config()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[cfg]; c != nil {
		return c, nil
	}
	c, err := newS3Client(cfg)
	if err != nil {
		return nil, err
	}
	if len(s.clients) >= maxS3Clients {
		clear(s.clients)
	}
	s.clients[cfg] = c
	return c, nil
}

func newS3Client(cfg S3Config) (*minio.Client, error) {
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("S3 endpoint %q: want http://host:port or https://host[:port]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	var creds *credentials.Credentials
	switch {
	case cfg.AccessKeyID != "":
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	default:
		// An operator's shared credentials file.
		file := os.Getenv(EnvSharedCreds)
		if file == "" {
			home, _ := os.UserHomeDir()
			file = filepath.Join(home, ".aws", "credentials")
		}
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("no S3 credentials: set %s and %s (a job takes them from the environment of whoever submits it), or write %s", EnvAccessKeyID, EnvSecretAccessKey, file)
		}
		creds = credentials.NewFileAWSCredentials(file, os.Getenv(EnvProfile))
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		DisableCompression:    true,
	}
	if secure {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAPEM != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM([]byte(cfg.CAPEM)) {
				return nil, fmt.Errorf("%s holds no PEM certificate", EnvCABundle)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	return minio.New(host, &minio.Options{Creds: creds, Secure: secure, Transport: tr, Region: region, MaxRetries: requestTries})
}

// splitS3 splits a normalized s3:// location into its bucket and key.
func splitS3(loc string) (bucket, key string) {
	bucket, key, _ = strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
	return bucket, key
}

// s3Error turns a store's answer into an error a user can act on.
func s3Error(err error) error {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "NoSuchKey":
		return fs.ErrNotExist
	case "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist (create it first)", r.BucketName)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%s: %s (check %s and %s)", r.Code, r.Message, EnvAccessKeyID, EnvSecretAccessKey)
	}
	return err
}

// maxParallelPuts bounds the objects one writeFiles sends at once.
const maxParallelPuts = 8

func (s *s3Store) writeFiles(ctx context.Context, dir string, files map[string][]byte) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	bucket, prefix := splitS3(dir)
	sem := make(chan struct{}, maxParallelPuts)
	errs := make(chan error, len(files))
	var wg sync.WaitGroup
	for name, data := range files {
		key := strings.TrimPrefix(prefix+"/"+name, "/")
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)),
				minio.PutObjectOptions{ContentType: "application/octet-stream", SendContentMd5: true})
			if err != nil {
				errs <- fmt.Errorf("%s: %w", name, s3Error(err))
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (s *s3Store) readFile(ctx context.Context, loc string) ([]byte, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	bucket, key := splitS3(loc)
	if key == "" {
		return nil, fs.ErrNotExist
	}
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error(err)
	}
	defer obj.Close()
	b, err := readBounded(obj)
	if err != nil {
		return nil, s3Error(err)
	}
	return b, nil
}

func (s *s3Store) list(ctx context.Context, dir string) ([]string, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	bucket, prefix := splitS3(dir)
	if prefix != "" {
		prefix += "/"
	}
	// Cancelling stops the listing's goroutine if the loop ends early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var names []string
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			return nil, s3Error(o.Err)
		}
		if name := strings.TrimSuffix(strings.TrimPrefix(o.Key, prefix), "/"); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

func (s *s3Store) removeAll(ctx context.Context, dir string) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	bucket, prefix := splitS3(dir)
	if prefix == "" {
		return errors.New("refusing to remove a whole bucket")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := make(chan minio.ObjectInfo)
	listErr := make(chan error, 1)
	go func() {
		defer close(objects)
		for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
			if o.Err != nil {
				listErr <- s3Error(o.Err)
				return
			}
			select {
			case objects <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	var first error
	for e := range c.RemoveObjects(ctx, bucket, objects, minio.RemoveObjectsOptions{}) {
		if first == nil {
			first = fmt.Errorf("%s: %w", e.ObjectName, s3Error(e.Err))
		}
	}
	select {
	case err := <-listErr:
		return err
	default:
	}
	return first
}
