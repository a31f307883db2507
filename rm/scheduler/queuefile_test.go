package scheduler

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/loom-project/loom/rm/state"
)

// The documented example parses, and its leaves' shares of the cluster
// are their percentages down the tree.
func TestQueueFileExample(t *testing.T) {
	src, err := os.ReadFile("../../docs/queues.hcl")
	if err != nil {
		t.Fatal(err)
	}
	tree, err := ParseQueueFile("queues.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Queue{}
	for _, q := range tree.Leaves(state.Resource{MemoryMB: 100_000, VCores: 100}) {
		got[q.Name] = q
	}
	want := map[string][3]float64{ // capacity, maximum, AM share
		"root.prod.etl":     {0.42, 1, 0.5},
		"root.prod.serving": {0.28, 1, 0.2},
		"root.dev":          {0.3, 0.6, 0.5},
	}
	if len(got) != len(want) {
		t.Fatalf("leaves %v", got)
	}
	for name, w := range want {
		q := got[name]
		if math.Abs(q.Capacity-w[0]) > 1e-9 || math.Abs(q.MaxCapacity-w[1]) > 1e-9 || q.MaxAMShare != w[2] {
			t.Errorf("%s: capacity %g, maximum %g, AM share %g; want %v", name, q.Capacity, q.MaxCapacity, q.MaxAMShare, w)
		}
	}
	etl := tree.Root.Children[0].Children[0]
	if etl.Ordering != "fair" || etl.UserLimitFactor != 2 || etl.MinUserLimitPercent != 25 {
		t.Errorf("etl's settings: %+v", etl)
	}
	gpu := tree.LabelShares("gpu")
	if etl, serving, dev := gpu["root.prod.etl"], gpu["root.prod.serving"], gpu["root.dev"]; math.Abs(etl.Capacity-0.8) > 1e-9 || etl.Maximum != 1 ||
		math.Abs(serving.Capacity-0.2) > 1e-9 || serving.Maximum != 0.5 || dev != (LabelShare{}) {
		t.Errorf("gpu shares: etl %+v, serving %+v, dev %+v", etl, serving, dev)
	}
}

// Weights share the parent's capacity; an absolute resource is its share
// of the cluster, within its parent's.
func TestQueueCapacityKinds(t *testing.T) {
	tree, err := ParseQueueFile("q.hcl", []byte(`
queue "root" {
  queue "a" {
    capacity = "50%"
    queue "x" { capacity = "3w" }
    queue "y" { capacity = "1w" }
  }
  queue "b" {
    capacity = "50%"
    queue "fixed" {
      capacity         = "[memory=20000,vcores=40]"
      maximum_capacity = "[memory=90000,vcores=90]"
    }
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Queue{}
	for _, q := range tree.Leaves(state.Resource{MemoryMB: 100_000, VCores: 100}) {
		got[q.Name] = q
	}
	if x, y := got["root.a.x"], got["root.a.y"]; math.Abs(x.Capacity-0.375) > 1e-9 || math.Abs(y.Capacity-0.125) > 1e-9 {
		t.Errorf("weights 3:1 of 50%%: %g and %g, want 0.375 and 0.125", x.Capacity, y.Capacity)
	}
	// 20000 MB of 100000 and 40 of 100 vcores: the smaller, 20%; its
	// maximum, 90%, within its parent's maximum (the whole cluster).
	if f := got["root.b.fixed"]; math.Abs(f.Capacity-0.2) > 1e-9 || math.Abs(f.MaxCapacity-0.9) > 1e-9 {
		t.Errorf("absolute: %+v, want 0.2 and 0.9", f)
	}
}

// Every error names the file and line and says what to do.
func TestQueueFileErrors(t *testing.T) {
	for _, c := range []struct {
		src, want string
	}{
		{`queue "root" {}`, "q.hcl:1: queue root has no queues under it"},
		{"queue \"top\" {\n  queue \"a\" { capacity = \"100%\" }\n}", "one top-level block, queue \"root\""},
		{"queue \"root\" {\n  queue \"a\" { capacity = \"60%\" }\n  queue \"b\" { capacity = \"30%\" }\n}", "q.hcl:2: the capacities of the queues under root add up to 90%, not 100%"},
		{"queue \"root\" {\n  queue \"a\" { capacity = \"50%\" }\n  queue \"b\" { capacity = \"1w\" }\n}", "q.hcl:3: queue root.b gives its capacity another way than its siblings"},
		{"queue \"root\" {\n  queue \"a\" {\n    capacity = \"100%\"\n    maximum_capacity = \"50%\"\n  }\n}", "maximum_capacity 50% is below its capacity 100%"},
		{"queue \"root\" {\n  queue \"a\" { capacity = \"lots\" }\n}", "capacity \"lots\": want a percentage"},
		{"queue \"root\" {\n  queue \"a\" {\n    capacity = \"100%\"\n    capacty = \"1%\"\n  }\n}", "q.hcl:4: queue \"a\": no setting \"capacty\""},
		{"queue \"root\" {\n  queue \"a b\" { capacity = \"100%\" }\n}", "queue name \"a b\""},
		{"queue \"root\" {\n  queue \"a\" { capacity = \"50%\" }\n  queue \"a\" { capacity = \"50%\" }\n}", "two children named \"a\""},
		{"queue \"root\" {\n  queue \"a\" {\n    capacity = \"100%\"\n    ordering = \"lifo\"\n  }\n}", "ordering \"lifo\": want \"fifo\" or \"fair\""},
		{"queue \"root\" {\n  queue \"a\" {\n    capacity = \"100%\"\n    acl_submit = [\"bad user\"]\n  }\n}", "acl_submit entry \"bad user\""},
		{"queue \"root\" {\n  queue \"a\" {}\n}", "queue root.a has no capacity"},
		{"queue \"root\" {\n  capacity = \"50%\"\n  queue \"a\" { capacity = \"100%\" }\n}", "queue root: it is the whole cluster"},
		{`queue "root" {`, "q.hcl:1"},
		// Label blocks.
		{"queue \"root\" {\n  queue \"a\" {\n    capacity = \"100%\"\n    label \"gpu\" { capacity = \"100%\" }\n  }\n}", "q.hcl:4: queue root.a: label \"gpu\" block for a label it may not use; add \"gpu\" to its accessible_node_labels"},
		{"queue \"root\" {\n  label \"gpu\" { capacity = \"100%\" }\n  queue \"a\" { capacity = \"100%\" }\n}", "q.hcl:2: queue root: it has every partition"},
		{labeled("capacity = \"60%\"", "capacity = \"30%\""), "the label \"gpu\" capacities of the queues under root add up to 90%, not 100%"},
		{labeled("capacity = \"half\"", ""), "q.hcl:5: queue root.a: label \"gpu\": capacity \"half\": want a percentage"},
		{labeled("capacity = \"100%\"\n maximum_capacity = \"50%\"", ""), "label \"gpu\": maximum_capacity 50% is below its capacity 100%"},
		{labeled("capacty = \"100%\"", ""), "q.hcl:6: queue root.a: label \"gpu\": no setting \"capacty\" (the settings: capacity, maximum_capacity)"},
		{labeled("capacity = \"100%\"\n }\n label \"gpu\" {\n capacity = \"100%\"", ""), "queue root.a has two label \"gpu\" blocks"},
		{"queue \"root\" {\n  queue \"p\" {\n    capacity = \"100%\"\n    accessible_node_labels = [\"gpu\"]\n    queue \"c\" {\n      capacity = \"100%\"\n      label \"gpu\" { capacity = \"100%\" }\n    }\n  }\n}",
			"q.hcl:7: queue root.p.c: label \"gpu\" capacity 100% of a parent with none of that partition; give root.p a label \"gpu\" block with a capacity"},
	} {
		_, err := ParseQueueFile("q.hcl", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.src, err, c.want)
		}
	}
	if _, err := ParseQueueFile("q.hcl", make([]byte, maxQueueFile+1)); err == nil {
		t.Error("an oversized file parsed")
	}
	deep := "queue \"root\" {\n" + strings.Repeat("queue \"d\" {\ncapacity = \"100%\"\n", MaxQueueDepth+1) + strings.Repeat("}\n", MaxQueueDepth+2)
	if _, err := ParseQueueFile("q.hcl", []byte(deep)); err == nil || !strings.Contains(err.Error(), "levels deep") {
		t.Errorf("a tree too deep: %v", err)
	}
}

// labeled is a file of two queues, a and b, that may use gpu, with a's
// and b's label "gpu" blocks holding the settings given ("" for none).
func labeled(a, b string) string {
	block := func(settings string) string {
		if settings == "" {
			return ""
		}
		return "    label \"gpu\" {\n " + settings + "\n }\n"
	}
	return "queue \"root\" {\n  accessible_node_labels = [\"gpu\"]\n  queue \"a\" {\n    capacity = \"50%\"\n" + block(a) + "  }\n  queue \"b\" {\n    capacity = \"50%\"\n" + block(b) + "  }\n}"
}

// A queue file never panics the parser, and what parses has leaves whose
// shares are fractions.
func FuzzParseQueueFile(f *testing.F) {
	if src, err := os.ReadFile("../../docs/queues.hcl"); err == nil {
		f.Add(src)
	}
	f.Add([]byte("queue \"root\" {\n  queue \"a\" { capacity = \"3w\" }\n}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		tree, err := ParseQueueFile("q.hcl", src)
		if err != nil {
			return
		}
		for _, q := range tree.Leaves(state.Resource{MemoryMB: 1000, VCores: 10}) {
			if q.Capacity < 0 || q.Capacity > 1 || q.MaxCapacity < q.Capacity || q.MaxCapacity > 1 {
				t.Fatalf("leaf %+v", q)
			}
		}
	})
}

func parse(t *testing.T, src string) *QueueTree {
	t.Helper()
	tree, err := ParseQueueFile("test.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestQueueACLs(t *testing.T) {
	tree := parse(t, `queue "root" {
  acl_administer = ["ops"]
  queue "prod" {
    capacity       = "70%"
    acl_submit     = ["group:eng"]
    acl_administer = ["lead"]
  }
  queue "dev" { capacity = "30%" }
}`)
	for _, tc := range []struct {
		queue       string
		who         Who
		submit, adm bool
	}{
		{"root.prod", Who{User: "ann", Groups: []string{"eng"}}, true, false},
		{"root.prod", Who{User: "bob"}, false, false},
		{"root.prod", Who{User: "lead"}, true, true}, // a queue's administrators may submit
		{"root.prod", Who{User: "ops"}, true, true},  // the parent's administrators too
		{"root.dev", Who{User: "bob"}, true, false},  // no list on the path: open
		{"root.dev", Who{User: "lead"}, true, false},
	} {
		if got := tree.MaySubmit(tc.queue, tc.who); got != tc.submit {
			t.Errorf("MaySubmit(%s, %v) = %v", tc.queue, tc.who, got)
		}
		if got := tree.MayAdminister(tc.queue, tc.who); got != tc.adm {
			t.Errorf("MayAdminister(%s, %v) = %v", tc.queue, tc.who, got)
		}
	}
}
