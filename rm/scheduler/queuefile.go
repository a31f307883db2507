package scheduler

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// A queue file is a tree of queue blocks under one "root", after YARN's
// CapacityScheduler (see docs/queues.hcl):
//
//	queue "root" {
//	  queue "prod" {
//	    capacity         = "70%"
//	    maximum_capacity = "100%"
//	    acl_submit       = ["alice", "group:eng"]
//	  }
//	  queue "dev" { capacity = "30%" }
//	}
//
// A capacity is a percentage of the parent ("70%"), a weight among the
// siblings ("3w"), or an absolute resource ("[memory=20480,vcores=10]");
// siblings use one kind.

// Bounds on a queue file.
const (
	MaxQueues     = 1000
	MaxQueueDepth = 8
	maxQueueFile  = 1 << 20
)

// QueueTree is a parsed and validated queue file.
type QueueTree struct {
	Root *QueueConf
	// Filename and Source are the file it was parsed from; the
	// ResourceManager keeps them in raft.
	Filename string
	Source   []byte
	leaves   map[string]*QueueConf
	// path holds each queue's ancestors and itself, root first.
	path map[string][]*QueueConf
	// shares caches LabelShares by label, for at most maxCachedLabels.
	sharesMu sync.Mutex
	shares   map[string]map[string]LabelShare
}

// maxCachedLabels bounds a tree's cache of partition shares: labels
// come from the nodes, and a pass asks for those with schedulable nodes.
const maxCachedLabels = 64

// defaultQueueFile is the tree of a ResourceManager without --queues.
const defaultQueueFile = `queue "root" {
  queue "default" {
    capacity = "100%"
  }
}
`

// DefaultTree is the queue tree loom starts with: root.default, the
// whole cluster, open to every user. It is parsed once; a tree is not
// changed once parsed.
var DefaultTree = sync.OnceValue(func() *QueueTree {
	t, err := ParseQueueFile("built-in queues", []byte(defaultQueueFile))
	if err != nil {
		panic(err)
	}
	return t
})

// QueueConf is one queue of the tree as the file gives it.
type QueueConf struct {
	// Name is the full path (root.prod.batch); Leaf its last element.
	Name, Leaf string
	Capacity   CapacitySpec
	Maximum    CapacitySpec
	// MaxAMShare caps the resources AM containers of a leaf may hold, a
	// fraction of its maximum capacity.
	MaxAMShare float64
	// MinUserLimitPercent and UserLimitFactor are YARN's user limits of a
	// leaf: each active user is guaranteed at least that share of it, and
	// no user takes more than factor × its capacity.
	MinUserLimitPercent float64
	UserLimitFactor     float64
	// MaxApplications bounds a leaf's running and pending applications.
	MaxApplications int
	// Ordering is "fifo" or "fair" within a leaf.
	Ordering string
	// SubmitACL and AdminACL name users and "group:NAME"s; "*" is anyone.
	// A queue's ACLs add to its parent's.
	SubmitACL, AdminACL []string
	// NodeLabels are the node labels (partitions) the queue's
	// applications may ask for, beside its parent's; "*" is every one.
	NodeLabels []string
	// LabelShares are the queue's capacities in labeled partitions, by
	// label, as its label blocks give them: percentages of its parent's
	// in the same partition. A label the queue may use and gives no
	// block for is guaranteed nothing there and may grow to its
	// parent's maximum.
	LabelShares map[string]LabelSpec
	Children    []*QueueConf
	// line is where the queue's block starts, for errors.
	line int
}

// CapacityKind says how a capacity is given.
type CapacityKind int

// The kinds of capacity.
const (
	CapacityUnset CapacityKind = iota
	CapacityPercent
	CapacityWeight
	CapacityAbsolute
)

// LabelSpec is a queue's capacity and maximum in one labeled partition,
// percentages of its parent's there.
type LabelSpec struct {
	Capacity, Maximum float64
	line              int
}

// CapacitySpec is a capacity as the file gives it.
type CapacitySpec struct {
	Kind     CapacityKind
	Percent  float64 // 0..100
	Weight   float64
	Absolute state.Resource
}

type queueBlock struct {
	Name                string        `hcl:"name,label"`
	Capacity            *string       `hcl:"capacity,optional"`
	MaximumCapacity     *string       `hcl:"maximum_capacity,optional"`
	MaxAMShare          *string       `hcl:"max_am_share,optional"`
	MinUserLimitPercent *float64      `hcl:"minimum_user_limit_percent,optional"`
	UserLimitFactor     *float64      `hcl:"user_limit_factor,optional"`
	MaxApplications     *int          `hcl:"max_applications,optional"`
	Ordering            *string       `hcl:"ordering,optional"`
	SubmitACL           []string      `hcl:"acl_submit,optional"`
	AdminACL            []string      `hcl:"acl_administer,optional"`
	NodeLabels          []string      `hcl:"accessible_node_labels,optional"`
	Labels              []*labelBlock `hcl:"label,block"`
	Queues              []*queueBlock `hcl:"queue,block"`
	Remain              hcl.Body      `hcl:",remain"`
}

// labelBlock is a queue's share of one labeled partition (YARN's
// accessible-node-labels.LABEL.capacity and .maximum-capacity).
type labelBlock struct {
	Name            string   `hcl:"name,label"`
	Capacity        *string  `hcl:"capacity,optional"`
	MaximumCapacity *string  `hcl:"maximum_capacity,optional"`
	Remain          hcl.Body `hcl:",remain"`
}

type queueFile struct {
	Queues []*queueBlock `hcl:"queue,block"`
}

var (
	queueNameRe = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	absoluteRe  = regexp.MustCompile(`^\[\s*memory\s*=\s*(\d+)\s*,\s*vcores\s*=\s*(\d+)\s*\]$`)
	aclEntryRe  = regexp.MustCompile(`^(\*|group:[a-zA-Z0-9._-]{1,64}|[a-zA-Z0-9._@-]{1,64})$`)
)

// ParseQueueFile parses and validates a queue file. An error names the
// file and line of each problem and says what to do.
func ParseQueueFile(filename string, src []byte) (*QueueTree, error) {
	if len(src) > maxQueueFile {
		return nil, fmt.Errorf("%s: %d bytes; a queue file is at most %d", filename, len(src), maxQueueFile)
	}
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	var qf queueFile
	if diags := gohcl.DecodeBody(f.Body, nil, &qf); diags.HasErrors() {
		return nil, diagError(diags)
	}
	v := &validator{file: filename}
	if len(qf.Queues) != 1 || qf.Queues[0].Name != "root" {
		return nil, fmt.Errorf("%s: want one top-level block, queue \"root\", with the queues under it", filename)
	}
	root := v.queue(qf.Queues[0], "", 1)
	if len(v.errs) == 0 {
		v.tree(root)
	}
	if len(v.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(v.errs, "\n"))
	}
	t := &QueueTree{Root: root, Filename: filename, Source: slices.Clone(src), leaves: map[string]*QueueConf{}, path: map[string][]*QueueConf{}}
	var walk func(q *QueueConf, above []*QueueConf)
	walk = func(q *QueueConf, above []*QueueConf) {
		path := append(slices.Clip(above), q)
		t.path[q.Name] = path
		if len(q.Children) == 0 {
			t.leaves[q.Name] = q
		}
		for _, c := range q.Children {
			walk(c, path)
		}
	}
	walk(root, nil)
	return t, nil
}

// Resolve maps a queue name as a user writes it to a leaf queue's full
// name: "root.prod.etl", "prod.etl", or a leaf's own name ("etl") when
// only one leaf has it; "" is "default".
func (t *QueueTree) Resolve(name string) (string, error) {
	if name == "" {
		name = "default"
	}
	full := name
	if !strings.HasPrefix(full, "root.") && full != "root" {
		full = "root." + name
	}
	if _, ok := t.leaves[full]; ok {
		return full, nil
	}
	if path, ok := t.path[full]; ok {
		q := path[len(path)-1]
		return "", fmt.Errorf("queue %s is a parent queue; applications go to its leaves: %s", q.Name, strings.Join(t.leavesUnder(q), ", "))
	}
	var match []string
	for n, q := range t.leaves {
		if q.Leaf == name {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return "", fmt.Errorf("queue %q does not exist; the leaf queues: %s", name, strings.Join(t.LeafNames(), ", "))
	}
	slices.Sort(match)
	return "", fmt.Errorf("queue %q is ambiguous: %s; give its full name", name, strings.Join(match, ", "))
}

// LeafNames are the leaf queues' full names in the file's order.
func (t *QueueTree) LeafNames() []string { return t.leavesUnder(t.Root) }

func (t *QueueTree) leavesUnder(q *QueueConf) []string {
	if len(q.Children) == 0 {
		return []string{q.Name}
	}
	var out []string
	for _, c := range q.Children {
		out = append(out, t.leavesUnder(c)...)
	}
	return out
}

// Leaf returns a leaf queue's settings; nil when there is none of that
// name.
func (t *QueueTree) Leaf(name string) *QueueConf { return t.leaves[name] }

// Who is a caller as queue ACLs see it.
type Who struct {
	User   string
	Groups []string
}

// MaySubmit reports whether who may submit to leaf: a queue's submit ACL
// is the union of the lists on its path from root; a path that lists
// nobody is open to every user. A queue's administrators may submit too.
func (t *QueueTree) MaySubmit(leaf string, who Who) bool {
	listed := false
	for _, q := range t.path[leaf] {
		if len(q.SubmitACL) > 0 {
			listed = true
			if aclAllows(q.SubmitACL, who) {
				return true
			}
		}
	}
	return !listed || t.MayAdminister(leaf, who)
}

// MayAdminister reports whether who administers leaf (may kill and move
// others' applications in it): one of the acl_administer lists on its
// path from root names them. Cluster admins administer every queue;
// the caller checks that.
func (t *QueueTree) MayAdminister(leaf string, who Who) bool {
	for _, q := range t.path[leaf] {
		if aclAllows(q.AdminACL, who) {
			return true
		}
	}
	return false
}

// MayUseLabel reports whether leaf's applications may ask for nodes of
// label: accessible_node_labels on its path from root lists it, or "*".
// Every queue may use the nodes without labels.
func (t *QueueTree) MayUseLabel(leaf, label string) bool {
	if label == "" {
		return true
	}
	return pathUses(t.path[leaf], label)
}

// NamedLabels are the labels the file names, in accessible_node_labels
// lists or label blocks ("*" is none of them), sorted.
func (t *QueueTree) NamedLabels() []string {
	var out []string
	for _, path := range t.path {
		q := path[len(path)-1]
		for _, l := range q.NodeLabels {
			if l != "*" && !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
		for l := range q.LabelShares {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return out
}

// NodeLabelsOf are the node labels leaf's applications may ask for, from
// its path from root, sorted.
func (t *QueueTree) NodeLabelsOf(leaf string) []string {
	var out []string
	for _, q := range t.path[leaf] {
		for _, l := range q.NodeLabels {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return out
}

func aclAllows(acl []string, who Who) bool {
	for _, e := range acl {
		if e == "*" || e == who.User {
			return true
		}
		if g, ok := strings.CutPrefix(e, "group:"); ok && slices.Contains(who.Groups, g) {
			return true
		}
	}
	return false
}

func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		where := ""
		if d.Subject != nil {
			where = fmt.Sprintf("%s:%d: ", d.Subject.Filename, d.Subject.Start.Line)
		}
		msg := where + d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		msgs = append(msgs, msg)
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}

type validator struct {
	file  string
	errs  []string
	count int
}

func (v *validator) fail(line int, format string, args ...any) {
	v.errs = append(v.errs, fmt.Sprintf("%s:%d: ", v.file, line)+fmt.Sprintf(format, args...))
}

func blockLine(b *queueBlock) int {
	if b.Remain == nil {
		return 0
	}
	return b.Remain.MissingItemRange().Start.Line
}

// queue checks one block and its children; parent is the parent's path.
func (v *validator) queue(b *queueBlock, parent string, depth int) *QueueConf {
	line := blockLine(b)
	if attrs, _ := b.Remain.JustAttributes(); len(attrs) > 0 {
		for name, a := range attrs {
			v.fail(a.Range.Start.Line, "queue %q: no setting %q (the settings: capacity, maximum_capacity, max_am_share, minimum_user_limit_percent, user_limit_factor, max_applications, ordering, acl_submit, acl_administer, accessible_node_labels, and label blocks)", b.Name, name)
		}
	}
	name := b.Name
	if parent != "" {
		name = parent + "." + b.Name
	}
	q := &QueueConf{Name: name, Leaf: b.Name, MaxAMShare: 0.5, MinUserLimitPercent: 100, UserLimitFactor: 1, MaxApplications: 10_000, Ordering: "fifo", line: line}
	if v.count++; v.count > MaxQueues {
		v.fail(line, "more than %d queues", MaxQueues)
		return q
	}
	if depth > MaxQueueDepth {
		v.fail(line, "queue %s is %d levels deep; at most %d", name, depth, MaxQueueDepth)
		return q
	}
	if !queueNameRe.MatchString(b.Name) {
		v.fail(line, "queue name %q: use 1 to 64 letters, digits, '_' and '-'", b.Name)
	}
	if b.Capacity != nil {
		q.Capacity = v.capacity(line, name, "capacity", *b.Capacity)
	}
	if b.MaximumCapacity != nil {
		q.Maximum = v.capacity(line, name, "maximum_capacity", *b.MaximumCapacity)
	}
	if b.MaxAMShare != nil {
		if f, ok := percent(*b.MaxAMShare); ok && f > 0 && f <= 100 {
			q.MaxAMShare = f / 100
		} else {
			v.fail(line, "queue %s: max_am_share %q: want a percentage above 0%% and at most 100%%, such as \"50%%\"", name, *b.MaxAMShare)
		}
	}
	if b.MinUserLimitPercent != nil {
		if f := *b.MinUserLimitPercent; f > 0 && f <= 100 {
			q.MinUserLimitPercent = f
		} else {
			v.fail(line, "queue %s: minimum_user_limit_percent %g: want 1 to 100", name, f)
		}
	}
	if b.UserLimitFactor != nil {
		if f := *b.UserLimitFactor; f > 0 && f <= 1000 {
			q.UserLimitFactor = f
		} else {
			v.fail(line, "queue %s: user_limit_factor %g: want above 0, at most 1000 (1 keeps a user within the queue's capacity)", name, f)
		}
	}
	if b.MaxApplications != nil {
		if n := *b.MaxApplications; n >= 1 && n <= 1_000_000 {
			q.MaxApplications = n
		} else {
			v.fail(line, "queue %s: max_applications %d: want 1 to 1000000", name, n)
		}
	}
	if b.Ordering != nil {
		if o := *b.Ordering; o == "fifo" || o == "fair" {
			q.Ordering = o
		} else {
			v.fail(line, "queue %s: ordering %q: want \"fifo\" or \"fair\"", name, o)
		}
	}
	for _, acl := range []struct {
		key  string
		list []string
		dst  *[]string
	}{{"acl_submit", b.SubmitACL, &q.SubmitACL}, {"acl_administer", b.AdminACL, &q.AdminACL}} {
		for _, e := range acl.list {
			if !aclEntryRe.MatchString(e) {
				v.fail(line, "queue %s: %s entry %q: want a user name, \"group:NAME\" or \"*\"", name, acl.key, e)
			}
		}
		*acl.dst = slices.Clone(acl.list)
	}
	for _, l := range b.NodeLabels {
		if l != "*" && !yarnpb.NodeLabel(l) {
			v.fail(line, "queue %s: accessible_node_labels entry %q: want a node label (1 to 128 letters, digits, '.', '_', '-') or \"*\"", name, l)
		}
	}
	q.NodeLabels = slices.Clone(b.NodeLabels)
	for _, lb := range b.Labels {
		v.label(q, lb)
	}
	seen := map[string]bool{}
	for _, c := range b.Queues {
		if seen[c.Name] {
			v.fail(blockLine(c), "queue %s has two children named %q", name, c.Name)
			continue
		}
		seen[c.Name] = true
		q.Children = append(q.Children, v.queue(c, name, depth+1))
	}
	return q
}

// label checks one label block of q and adds it to q's shares.
func (v *validator) label(q *QueueConf, b *labelBlock) {
	line := 0
	if b.Remain != nil {
		line = b.Remain.MissingItemRange().Start.Line
		if attrs, _ := b.Remain.JustAttributes(); len(attrs) > 0 {
			for name, a := range attrs {
				v.fail(a.Range.Start.Line, "queue %s: label %q: no setting %q (the settings: capacity, maximum_capacity)", q.Name, b.Name, name)
			}
		}
	}
	if !yarnpb.NodeLabel(b.Name) {
		v.fail(line, "queue %s: label block %q: want a node label (1 to 128 letters, digits, '.', '_', '-')", q.Name, b.Name)
		return
	}
	if _, dup := q.LabelShares[b.Name]; dup {
		v.fail(line, "queue %s has two label %q blocks", q.Name, b.Name)
		return
	}
	spec := LabelSpec{Maximum: 100, line: line}
	pct := func(key string, s *string, dst *float64) {
		if s == nil {
			return
		}
		if f, ok := percent(*s); ok && f >= 0 && f <= 100 {
			*dst = f
			return
		}
		v.fail(line, "queue %s: label %q: %s %q: want a percentage of the parent's in the partition, 0%% to 100%%, such as \"50%%\"", q.Name, b.Name, key, *s)
	}
	pct("capacity", b.Capacity, &spec.Capacity)
	pct("maximum_capacity", b.MaximumCapacity, &spec.Maximum)
	if spec.Maximum < spec.Capacity {
		v.fail(line, "queue %s: label %q: maximum_capacity %g%% is below its capacity %g%%", q.Name, b.Name, spec.Maximum, spec.Capacity)
	}
	if q.LabelShares == nil {
		q.LabelShares = map[string]LabelSpec{}
	}
	q.LabelShares[b.Name] = spec
}

// capacity parses "70%", "3w" or "[memory=M,vcores=V]".
func (v *validator) capacity(line int, queue, key, s string) CapacitySpec {
	s = strings.TrimSpace(s)
	if f, ok := percent(s); ok {
		if f < 0 || f > 100 {
			v.fail(line, "queue %s: %s %q: a percentage is 0%% to 100%%", queue, key, s)
		}
		return CapacitySpec{Kind: CapacityPercent, Percent: f}
	}
	if w, ok := strings.CutSuffix(s, "w"); ok {
		f, err := strconv.ParseFloat(w, 64)
		if err != nil || f < 0 || f > 1e6 || math.IsNaN(f) {
			v.fail(line, "queue %s: %s %q: a weight is a number of 0 to 1000000 and a \"w\", such as \"3w\"", queue, key, s)
		}
		return CapacitySpec{Kind: CapacityWeight, Weight: f}
	}
	if m := absoluteRe.FindStringSubmatch(s); m != nil {
		mem, err1 := strconv.ParseInt(m[1], 10, 64)
		vc, err2 := strconv.ParseInt(m[2], 10, 32)
		if err1 != nil || err2 != nil {
			v.fail(line, "queue %s: %s %q: the numbers are too large", queue, key, s)
		}
		return CapacitySpec{Kind: CapacityAbsolute, Absolute: state.Resource{MemoryMB: mem, VCores: int32(vc)}}
	}
	v.fail(line, "queue %s: %s %q: want a percentage (\"70%%\"), a weight (\"3w\") or a resource (\"[memory=20480,vcores=10]\")", queue, key, s)
	return CapacitySpec{}
}

func percent(s string) (float64, bool) {
	p, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// tree checks the rules between queues: siblings give their capacity one
// way, percentages of siblings add up to 100%, a maximum is at least the
// capacity, and the root takes the whole cluster.
func (v *validator) tree(q *QueueConf) {
	v.treeUnder(q, nil)
}

// treeUnder checks q, whose ancestors are above, root first, and the
// queues under it. In each labeled partition, a queue's label block
// needs the label on its path, a parent that has some of the partition
// (root has all of it), and siblings whose capacities there add up to
// 100%, or give none.
func (v *validator) treeUnder(q *QueueConf, above []*QueueConf) {
	if q.Name == "root" && (q.Capacity.Kind != CapacityUnset || q.Maximum.Kind != CapacityUnset) {
		v.fail(q.line, "queue root: it is the whole cluster; give capacities to the queues under it")
	}
	path := append(slices.Clip(above), q)
	for _, label := range slices.Sorted(maps.Keys(q.LabelShares)) {
		spec := q.LabelShares[label]
		switch {
		case q.Name == "root":
			v.fail(spec.line, "queue root: it has every partition; give label %q blocks to the queues under it", label)
		case !pathUses(path, label):
			v.fail(spec.line, "queue %s: label %q block for a label it may not use; add %q to its accessible_node_labels", q.Name, label, label)
		case spec.Capacity > 0 && len(above) > 1 && above[len(above)-1].LabelShares[label].Capacity == 0:
			parent := above[len(above)-1]
			v.fail(spec.line, "queue %s: label %q capacity %g%% of a parent with none of that partition; give %s a label %q block with a capacity", q.Name, label, spec.Capacity, parent.Name, label)
		}
	}
	if len(q.Children) > 0 {
		labels := map[string]float64{}
		for _, c := range q.Children {
			for label, spec := range c.LabelShares {
				labels[label] += spec.Capacity
			}
		}
		for _, label := range slices.Sorted(maps.Keys(labels)) {
			if sum := labels[label]; sum != 0 && math.Abs(sum-100) > 0.01 {
				v.fail(q.Children[0].line, "the label %q capacities of the queues under %s add up to %g%%, not 100%% (or give none)", label, q.Name, sum)
			}
		}
	}
	if len(q.Children) == 0 {
		if q.Name == "root" {
			v.fail(q.line, "queue root has no queues under it; add at least one leaf queue")
		}
		return
	}
	kind := CapacityUnset
	sum := 0.0
	for _, c := range q.Children {
		if c.Capacity.Kind == CapacityUnset {
			v.fail(c.line, "queue %s has no capacity; give it one (\"30%%\", \"1w\" or \"[memory=M,vcores=V]\")", c.Name)
			continue
		}
		if kind == CapacityUnset {
			kind = c.Capacity.Kind
		} else if c.Capacity.Kind != kind {
			v.fail(c.line, "queue %s gives its capacity another way than its siblings under %s; give all of them percentages, weights or resources", c.Name, q.Name)
		}
		sum += c.Capacity.Percent
		if c.Maximum.Kind == CapacityPercent && c.Capacity.Kind == CapacityPercent && c.Maximum.Percent < c.Capacity.Percent {
			v.fail(c.line, "queue %s: maximum_capacity %g%% is below its capacity %g%%", c.Name, c.Maximum.Percent, c.Capacity.Percent)
		}
		if c.Maximum.Kind == CapacityWeight {
			v.fail(c.line, "queue %s: maximum_capacity is a percentage or a resource, not a weight", c.Name)
		}
		v.treeUnder(c, path)
	}
	if kind == CapacityPercent && math.Abs(sum-100) > 0.01 {
		v.fail(q.Children[0].line, "the capacities of the queues under %s add up to %g%%, not 100%%", q.Name, sum)
	}
}

// Leaves are the tree's leaf queues in file order, with their capacity
// and maximum as fractions of a cluster of total resources (Walk).
func (t *QueueTree) Leaves(total state.Resource) []Queue {
	var out []Queue
	t.Walk(total, func(q *QueueConf, capacity, maximum float64) {
		if len(q.Children) > 0 {
			return
		}
		out = append(out, Queue{
			Name: q.Name, Capacity: capacity, MaxCapacity: maximum, MaxAMShare: q.MaxAMShare,
			MinUserLimitPercent: q.MinUserLimitPercent, UserLimitFactor: q.UserLimitFactor,
			MaxApplications: q.MaxApplications, Ordering: q.Ordering,
		})
	})
	return out
}

// Walk visits every queue, parents before their children in file order,
// with its capacity and maximum as fractions of a cluster of total
// resources: a percentage of the parent's, a weight's share of the
// siblings', or an absolute resource's share of the cluster (the smaller
// of memory and vcores), each within its parent's. A queue without a
// maximum may grow to its parent's.
func (t *QueueTree) Walk(total state.Resource, fn func(q *QueueConf, capacity, maximum float64)) {
	var walk func(q *QueueConf, capacity, maximum float64)
	walk = func(q *QueueConf, capacity, maximum float64) {
		fn(q, capacity, maximum)
		weights := 0.0
		for _, c := range q.Children {
			weights += c.Capacity.Weight
		}
		for _, c := range q.Children {
			var share float64
			switch c.Capacity.Kind {
			case CapacityPercent:
				share = capacity * c.Capacity.Percent / 100
			case CapacityWeight:
				if weights > 0 {
					share = capacity * c.Capacity.Weight / weights
				}
			case CapacityAbsolute:
				share = min(fractionOf(c.Capacity.Absolute, total), capacity)
			}
			max := maximum
			switch c.Maximum.Kind {
			case CapacityPercent:
				max = maximum * c.Maximum.Percent / 100
			case CapacityAbsolute:
				max = min(fractionOf(c.Maximum.Absolute, total), maximum)
			}
			walk(c, share, math.Max(max, share))
		}
	}
	walk(t.Root, 1, 1)
}

// LabelShare is a queue's capacity and maximum in one labeled partition,
// as fractions of the partition.
type LabelShare struct {
	Capacity, Maximum float64
}

// LabelShares are every queue's shares of the partition of label, by
// queue name: a queue's are its label block's percentages of its
// parent's there (root has all of it); a queue that may use the label
// and gives no block is guaranteed none and may grow to its parent's
// maximum; a queue that may not use it has none. The map is shared:
// callers only read it.
func (t *QueueTree) LabelShares(label string) map[string]LabelShare {
	t.sharesMu.Lock()
	defer t.sharesMu.Unlock()
	if out, ok := t.shares[label]; ok {
		return out
	}
	if t.shares == nil || len(t.shares) >= maxCachedLabels {
		t.shares = map[string]map[string]LabelShare{}
	}
	out := t.labelShares(label)
	t.shares[label] = out
	return out
}

func (t *QueueTree) labelShares(label string) map[string]LabelShare {
	out := map[string]LabelShare{}
	var walk func(q *QueueConf, path []*QueueConf, parent LabelShare)
	walk = func(q *QueueConf, path []*QueueConf, parent LabelShare) {
		path = append(path, q)
		var sh LabelShare
		switch spec, ok := q.LabelShares[label]; {
		case q.Name == "root":
			sh = LabelShare{1, 1}
		case !pathUses(path, label):
		case ok:
			sh = LabelShare{parent.Capacity * spec.Capacity / 100, parent.Maximum * spec.Maximum / 100}
		default:
			sh = LabelShare{0, parent.Maximum}
		}
		out[q.Name] = sh
		for _, c := range q.Children {
			walk(c, path, sh)
		}
	}
	walk(t.Root, nil, LabelShare{})
	return out
}

// pathUses reports whether a queue whose path from root is path may use
// label's nodes.
func pathUses(path []*QueueConf, label string) bool {
	for _, q := range path {
		if slices.Contains(q.NodeLabels, label) || slices.Contains(q.NodeLabels, "*") {
			return true
		}
	}
	return false
}

func fractionOf(r, total state.Resource) float64 {
	if total.MemoryMB <= 0 || total.VCores <= 0 {
		return 0
	}
	return min(float64(r.MemoryMB)/float64(total.MemoryMB), float64(r.VCores)/float64(total.VCores), 1)
}
