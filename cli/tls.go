package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/rm"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// tlsCommand makes a cluster's CA and certificates, in the shape of
// `nomad tls` and `consul tls`.
func tlsCommand() *cli.Command {
	return &cli.Command{
		Name:  "tls",
		Usage: "create the cluster CA, certificates for servers, nodes and users, and client configs",
		Description: "Every loom port takes only peers with a certificate of the cluster CA. `loom cluster up` makes all of them\n" +
			"by itself; for a cluster of your own:\n\n" +
			"  loom tls ca create                                  # ca.pem, ca-key.pem: keep the key safe, give the RMs access to it\n" +
			"  loom tls cert create --server --name rm1 --host 10.0.0.1   # server-rm1.pem for `loom rm --tls-*`\n" +
			"  loom tls cert create --node nm1 --host 10.0.0.11           # node-nm1.pem for `loom nm --tls-*`\n" +
			"  loom tls cert create --client --user alice --groups admins # user-alice.pem\n" +
			"  loom tls config --rm 10.0.0.1:8032 --cert user-alice.pem --key user-alice-key.pem   # ~/.loom/config",
		Subcommands: []*cli.Command{
			{
				Name:  "ca",
				Usage: "the cluster's certificate authority",
				Subcommands: []*cli.Command{{
					Name:  "create",
					Usage: "create a CA: ca.pem and ca-key.pem",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the files to"},
						&cli.StringFlag{Name: "name", Value: "loom", Usage: "the cluster's name, in the CA's subject"},
						&cli.IntFlag{Name: "days", Value: int(tlsutil.CAValidity / (24 * time.Hour)), Usage: "validity in days"},
					},
					Action: func(c *cli.Context) error {
						if c.Int("days") < 1 {
							return errors.New("--days must be at least 1")
						}
						ca, err := tlsutil.NewCA(c.String("name"), time.Duration(c.Int("days"))*24*time.Hour)
						if err != nil {
							return err
						}
						key, err := ca.KeyPEM()
						if err != nil {
							return err
						}
						dir := c.String("dir")
						if err := tlsutil.WriteFiles(dir, false, map[string][]byte{"ca.pem": ca.PEM, "ca-key.pem": key}); err != nil {
							return err
						}
						fmt.Fprintf(stdout(), "==> CA certificate saved to %s\n==> CA key saved to %s\n", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
						return nil
					},
				}},
			},
			{
				Name:  "cert",
				Usage: "certificates signed by the cluster CA",
				Subcommands: []*cli.Command{{
					Name:      "create",
					Usage:     "create a certificate for a ResourceManager (--server), a NodeManager (--node NAME) or a user (--client)",
					ArgsUsage: " ",
					Flags: []cli.Flag{
						&cli.BoolFlag{Name: "server", Usage: "a ResourceManager replica's certificate"},
						&cli.StringFlag{Name: "node", Usage: "a NodeManager's certificate, for node NAME"},
						&cli.BoolFlag{Name: "client", Usage: "a user's certificate (--user)"},
						&cli.StringFlag{Name: "name", Value: "rm", Usage: "the server's name (--server)"},
						&cli.StringFlag{Name: "user", Value: rmclient.CurrentUser(), Usage: "the user (--client)"},
						&cli.StringFlag{Name: "groups", Usage: "comma-separated groups of the user (--client); group " + rm.AdminGroup + " administers the cluster by default"},
						&cli.StringSliceFlag{Name: "host", Usage: "a DNS name or IP address the server or node is also reached by (repeatable)"},
						&cli.StringFlag{Name: "ca", Value: "ca.pem", Usage: "the CA certificate"},
						&cli.StringFlag{Name: "ca-key", Value: "ca-key.pem", Usage: "the CA key"},
						&cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the files to"},
						&cli.IntFlag{Name: "days", Value: int(tlsutil.CertValidity / (24 * time.Hour)), Usage: "validity in days"},
					},
					Action: func(c *cli.Context) error {
						id, err := certIdentity(c)
						if err != nil {
							return err
						}
						if c.Int("days") < 1 {
							return errors.New("--days must be at least 1")
						}
						ca, err := tlsutil.LoadCA(c.String("ca"), c.String("ca-key"))
						if err != nil {
							return err
						}
						iss, err := ca.Sign(tlsutil.CertRequest{Identity: id, Hosts: c.StringSlice("host"), Validity: time.Duration(c.Int("days")) * 24 * time.Hour})
						if err != nil {
							return err
						}
						base := id.Kind + "-" + id.Name
						dir := c.String("dir")
						if err := tlsutil.WriteFiles(dir, false, map[string][]byte{base + ".pem": iss.CertPEM, base + "-key.pem": iss.KeyPEM}); err != nil {
							return err
						}
						fmt.Fprintf(stdout(), "==> certificate of %s saved to %s\n==> key saved to %s\n", id, filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem"))
						return nil
					},
				}},
			},
			{
				Name:      "config",
				Usage:     "write a client config naming the cluster and your certificate",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "rm", Value: rmclient.DefaultAddr, Usage: "ResourceManager address(es), host:port[,host:port...]"},
					&cli.StringFlag{Name: "ca", Value: "ca.pem", Usage: "the CA certificate"},
					&cli.StringFlag{Name: "cert", Usage: "your certificate", Required: true},
					&cli.StringFlag{Name: "key", Usage: "your key", Required: true},
					&cli.StringFlag{Name: "path", Value: rmclient.DefaultConfigPath(), Usage: "where to write it"},
				},
				Action: func(c *cli.Context) error {
					addrs, err := rmclient.ParseAddrs(c.String("rm"))
					if err != nil {
						return err
					}
					var files tlsutil.Files
					for _, p := range []struct {
						dst  *string
						flag string
					}{{&files.CA, "ca"}, {&files.Cert, "cert"}, {&files.Key, "key"}} {
						abs, err := filepath.Abs(c.String(p.flag))
						if err != nil {
							return err
						}
						*p.dst = abs
					}
					b, err := tlsutil.Load(files)
					if err != nil {
						return err
					}
					path := c.String("path")
					if err := rmclient.WriteConfig(path, &rmclient.Config{RM: addrs, TLS: rmclient.ConfigTLS{CA: files.CA, Cert: files.Cert, Key: files.Key}}); err != nil {
						return err
					}
					fmt.Fprintf(stdout(), "==> client config for %s saved to %s\n", b.Identity, path)
					if path != rmclient.DefaultConfigPath() {
						fmt.Fprintf(stdout(), "use it with: export LOOM_CONFIG=%s\n", path)
					}
					return nil
				},
			},
		},
	}
}

func certIdentity(c *cli.Context) (tlsutil.Identity, error) {
	n := 0
	for _, set := range []bool{c.Bool("server"), c.String("node") != "", c.Bool("client")} {
		if set {
			n++
		}
	}
	if n != 1 {
		return tlsutil.Identity{}, errors.New("say which certificate: one of --server, --node NAME or --client")
	}
	switch {
	case c.Bool("server"):
		return tlsutil.Identity{Kind: tlsutil.KindServer, Name: c.String("name")}, nil
	case c.String("node") != "":
		return tlsutil.Identity{Kind: tlsutil.KindNode, Name: c.String("node")}, nil
	}
	return tlsutil.Identity{Kind: tlsutil.KindUser, Name: c.String("user"), Groups: splitList(c.String("groups"))}, nil
}
