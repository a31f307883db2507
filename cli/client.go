package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

var rmFlag = &cli.StringFlag{
	Name:    "rm",
	Usage:   "ResourceManager address(es), host:port[,host:port...]",
	Value:   rmclient.DefaultAddr,
	EnvVars: []string{"LOOM_RM"},
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Usage:   "client config: the cluster's addresses and your certificate (default ~/.loom/config, which `loom cluster up` writes)",
	EnvVars: []string{"LOOM_CONFIG"},
}

var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output format: table or json"}

// withRM runs fn with a client of the RM named by --rm, and closes it.
func withRM(c *cli.Context, fn func(rm *rmclient.Client) error) error {
	rm, err := rmClient(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	return fn(rm)
}

// rmClient builds a client of the RM from --rm and the client config.
func rmClient(c *cli.Context) (*rmclient.Client, error) {
	cfg, id, err := clientIdentity(c)
	if err != nil {
		return nil, err
	}
	list := c.String("rm")
	if !c.IsSet("rm") && len(cfg.RM) > 0 {
		list = strings.Join(cfg.RM, ",")
	}
	rm, err := rmclient.NewFromList(list, id)
	if err != nil {
		return nil, err
	}
	rm.RetryFor = 5 * time.Second
	return rm, nil
}

// clientIdentity reads the client config (--config, LOOM_CONFIG) and the
// certificate it names.
func clientIdentity(c *cli.Context) (*rmclient.Config, *tlsutil.Bundle, error) {
	cfg, err := rmclient.ResolveConfig(c.String("config"))
	if err != nil {
		return nil, nil, err
	}
	id, err := tlsutil.Load(cfg.Files())
	if err != nil {
		return nil, nil, fmt.Errorf("the client config's certificate: %w", err)
	}
	return cfg, id, nil
}

func jsonOutput(c *cli.Context) (bool, error) {
	switch c.String("output") {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("unknown output format %q; use -o json or leave it out for a table", c.String("output"))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printProtoJSON prints a cluster object in YARN's camelCase names, every
// field shown, with 64-bit integers as numbers (protojson's strings
// would make every script parse them).
func printProtoJSON(w io.Writer, m proto.Message) error {
	return printJSON(w, protoJSON(m.ProtoReflect()))
}

// protoJSON is m as JSON values: fields by their JSON names, enums by
// name, bytes in base64 (as encoding/json does []byte).
func protoJSON(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, 0, l.Len())
			for j := range l.Len() {
				items = append(items, protoValue(fd, l.Get(j)))
			}
			out[fd.JSONName()] = items
		case fd.IsMap():
			mv := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				mv[k.String()] = protoValue(fd.MapValue(), e)
				return true
			})
			out[fd.JSONName()] = mv
		case fd.Message() != nil && !m.Has(fd):
			out[fd.JSONName()] = nil
		default:
			out[fd.JSONName()] = protoValue(fd, v)
		}
	}
	return out
}

func protoValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoJSON(v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return int32(v.Enum())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Sprint(f) // JSON has no NaN or infinity
		}
	}
	return v.Interface()
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("expected one %s argument, got %d; see `%s --help`", what, c.NArg(), c.Command.HelpName)
	}
	return c.Args().First(), nil
}

func stdout() io.Writer { return os.Stdout }

func fmtTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format(time.RFC3339)
}
