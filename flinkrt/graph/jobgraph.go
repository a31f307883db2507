package graph

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// resolved is what Build decides about each node.
type resolved struct {
	parallelism    int
	maxParallelism int
	group          string
	id             string
	vertex         int // index into the job graph's vertices
	chainedFrom    int // node id of the chained operator before, -1 for a head
}

// Build makes the JobGraph of g: parallelism and slot sharing groups
// resolved, default partitioners chosen, operators chained by Flink's rules,
// stable operator ids, the slot count and the fingerprint.
func Build(g *StreamGraph) (*flinkpb.JobGraph, error) {
	if len(g.Nodes) == 0 {
		return nil, fmt.Errorf("the job %q has no operators: add a source and a sink before Execute", g.JobName)
	}
	res := make([]resolved, len(g.Nodes))
	for _, n := range g.Nodes {
		r := &res[n.ID]
		r.parallelism = g.parallelism(n)
		r.maxParallelism = g.maxParallelism(n)
		r.chainedFrom = -1
		if r.parallelism > r.maxParallelism {
			return nil, fmt.Errorf("operator %s has parallelism %d above its maximum parallelism %d; lower one or raise the other", n, r.parallelism, r.maxParallelism)
		}
	}
	for _, e := range g.Edges {
		if e.Source >= e.Target || g.Node(e.Source) == nil || g.Node(e.Target) == nil {
			return nil, fmt.Errorf("edge %d -> %d does not go from an earlier operator to a later one", e.Source, e.Target)
		}
	}
	// Slot sharing groups: named, or inherited when every input agrees.
	for _, n := range g.Nodes {
		r := &res[n.ID]
		switch in := g.inputs(n.ID); {
		case n.SlotSharingGroup != "":
			r.group = n.SlotSharingGroup
		case len(in) == 0:
			r.group = DefaultSlotSharingGroup
		default:
			r.group = res[in[0].Source].group
			for _, e := range in[1:] {
				if res[e.Source].group != r.group {
					r.group = DefaultSlotSharingGroup
				}
			}
		}
	}
	// Partitioners.
	edges := make([]Edge, len(g.Edges))
	for i, e := range g.Edges {
		edges[i] = *e
		src, dst := g.Nodes[e.Source], g.Nodes[e.Target]
		ps, pt := res[e.Source].parallelism, res[e.Target].parallelism
		switch kind := e.Partitioning.Kind; {
		case kind == "":
			if ps == pt {
				edges[i].Partitioning.Kind = task.Forward
			} else {
				edges[i].Partitioning.Kind = task.Rebalance
			}
		case !kind.Valid():
			return nil, fmt.Errorf("edge %s -> %s has unknown partitioner %q", src, dst, kind)
		case kind == task.Forward && ps != pt:
			return nil, fmt.Errorf("forward partitioning does not allow change of parallelism. Upstream operation: %s parallelism: %d, downstream operation: %s parallelism: %d. Use another partitioning strategy, such as broadcast, rebalance, shuffle or global", src.Name, ps, dst.Name, pt)
		case kind == task.Hash && e.Partitioning.KeyHash == nil:
			return nil, fmt.Errorf("edge %s -> %s is keyed but has no key hash", src, dst)
		}
	}
	chainable := func(e *Edge) bool {
		src, dst := g.Nodes[e.Source], g.Nodes[e.Target]
		return !g.ChainingDisabled &&
			len(g.inputs(dst.ID)) == 1 &&
			res[src.ID].group == res[dst.ID].group &&
			src.Chaining != ChainNever &&
			dst.Chaining == ChainAlways &&
			e.Partitioning.Kind == task.Forward &&
			res[src.ID].parallelism == res[dst.ID].parallelism
	}

	// Operator ids: from the UID, else from the node's place in the graph
	// (its index, its inputs' ids, how many outputs chain to it), never
	// from its name, so renaming an operator keeps its state.
	uids := map[string]*Node{}
	for _, n := range g.Nodes {
		h := sha256.New()
		if n.UID != "" {
			if other, ok := uids[n.UID]; ok {
				return nil, fmt.Errorf("UID %q is used by both %s and %s; UIDs must be unique in a job", n.UID, other, n)
			}
			uids[n.UID] = n
			fmt.Fprintf(h, "uid\x00%s", n.UID)
		} else {
			fmt.Fprintf(h, "node\x00%d", n.ID)
			var in []string
			for _, e := range g.inputs(n.ID) {
				in = append(in, res[e.Source].id)
			}
			sort.Strings(in)
			fmt.Fprintf(h, "\x00%s", strings.Join(in, ","))
			chained := 0
			for i := range edges {
				if edges[i].Source == n.ID && chainable(&edges[i]) {
					chained++
				}
			}
			fmt.Fprintf(h, "\x00%d", chained)
		}
		res[n.ID].id = hex.EncodeToString(h.Sum(nil)[:16])
	}

	// Chains: a node joins its input's vertex when the edge is chainable.
	jg := &flinkpb.JobGraph{Name: g.JobName, Config: g.Config}
	for _, n := range g.Nodes {
		r := &res[n.ID]
		in := g.inputs(n.ID)
		var inEdge *Edge
		if len(in) == 1 {
			for i := range edges {
				if edges[i].Source == in[0].Source && edges[i].Target == n.ID {
					inEdge = &edges[i]
				}
			}
		}
		if inEdge != nil && chainable(inEdge) {
			r.vertex = res[inEdge.Source].vertex
			r.chainedFrom = inEdge.Source
		} else {
			r.vertex = len(jg.Vertices)
			jg.Vertices = append(jg.Vertices, &flinkpb.JobVertex{
				Id:               r.id,
				Parallelism:      int32(r.parallelism),
				MaxParallelism:   int32(r.maxParallelism),
				SlotSharingGroup: r.group,
			})
		}
		v := jg.Vertices[r.vertex]
		op := &flinkpb.Operator{
			Node:        int32(n.ID),
			Id:          r.id,
			Name:        n.Name,
			Uid:         n.UID,
			Description: n.Description,
			ChainedFrom: -1,
			KeyedState:  n.KeyedState,
			SplitState:  n.SplitState,
		}
		if n.In != nil {
			op.InType = n.In.Name()
		}
		if n.Out != nil {
			op.OutType = n.Out.Name()
		}
		if r.chainedFrom >= 0 {
			for i, o := range v.Operators {
				if int(o.Node) == r.chainedFrom {
					op.ChainedFrom = int32(i)
				}
			}
			op.SideOutput = inEdge.SideOutput
		}
		v.Operators = append(v.Operators, op)
	}
	for _, v := range jg.Vertices {
		names := make([]string, len(v.Operators))
		for i, o := range v.Operators {
			names[i] = o.Name
		}
		v.Name = strings.Join(names, " -> ")
	}
	for i := range edges {
		e := &edges[i]
		if res[e.Target].chainedFrom == e.Source {
			continue
		}
		jg.Edges = append(jg.Edges, &flinkpb.JobEdge{
			SourceNode:   int32(e.Source),
			TargetNode:   int32(e.Target),
			SourceVertex: jg.Vertices[res[e.Source].vertex].Id,
			TargetVertex: jg.Vertices[res[e.Target].vertex].Id,
			Partitioner:  string(e.Partitioning.Kind),
			SideOutput:   e.SideOutput,
		})
	}
	jg.Slots = int32(SlotsNeeded(jg))
	jg.Fingerprint = Fingerprint(jg)
	return jg, nil
}

// SlotsNeeded is the sum over slot sharing groups of the largest
// parallelism of a vertex in the group.
func SlotsNeeded(jg *flinkpb.JobGraph) int {
	groups := map[string]int{}
	for _, v := range jg.Vertices {
		groups[v.SlotSharingGroup] = max(groups[v.SlotSharingGroup], int(v.Parallelism))
	}
	total := 0
	for _, p := range groups {
		total += p
	}
	return total
}

// LogicalSlots numbers the SlotsNeeded slots of a job, by vertex then
// subtask: subtask i of every vertex of a slot sharing group shares the
// group's slot i, and groups take slots one after another in the order of
// their first vertex.
func LogicalSlots(jg *flinkpb.JobGraph) [][]int {
	size := map[string]int{}
	for _, v := range jg.Vertices {
		size[v.SlotSharingGroup] = max(size[v.SlotSharingGroup], int(v.Parallelism))
	}
	base := map[string]int{}
	next := 0
	out := make([][]int, len(jg.Vertices))
	for vi, v := range jg.Vertices {
		b, ok := base[v.SlotSharingGroup]
		if !ok {
			b, base[v.SlotSharingGroup] = next, next
			next += size[v.SlotSharingGroup]
		}
		out[vi] = make([]int, v.Parallelism)
		for s := range out[vi] {
			out[vi][s] = b + s
		}
	}
	return out
}

// Fingerprint is the hex SHA-256 of the graph without its fingerprint.
func Fingerprint(jg *flinkpb.JobGraph) string {
	c := proto.Clone(jg).(*flinkpb.JobGraph)
	c.Fingerprint = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		// Marshalling a well-formed message cannot fail.
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate checks a JobGraph received from elsewhere: every reference
// resolves, parallelisms are in range, vertices are in topological order,
// the slot count and the fingerprint match the content.
func Validate(jg *flinkpb.JobGraph) error {
	if jg == nil || len(jg.Vertices) == 0 {
		return fmt.Errorf("the job graph has no vertices")
	}
	vertex := map[string]int{}
	nodeVertex := map[int32]int{}
	for i, v := range jg.Vertices {
		if !isHexID(v.Id) {
			return fmt.Errorf("vertex %d has id %q; ids are 32 hex digits", i, v.Id)
		}
		if _, dup := vertex[v.Id]; dup {
			return fmt.Errorf("vertex id %s appears twice", v.Id)
		}
		vertex[v.Id] = i
		if v.Parallelism < 1 || v.MaxParallelism < v.Parallelism || v.MaxParallelism > 32768 {
			return fmt.Errorf("vertex %q has parallelism %d and maximum parallelism %d; want 1 <= parallelism <= maximum <= 32768", v.Name, v.Parallelism, v.MaxParallelism)
		}
		if len(v.Operators) == 0 || v.Operators[0].Id != v.Id {
			return fmt.Errorf("vertex %q does not start with its head operator", v.Name)
		}
		for j, op := range v.Operators {
			if _, dup := nodeVertex[op.Node]; dup || op.Node < 0 {
				return fmt.Errorf("operator node %d of vertex %q is invalid or appears twice", op.Node, v.Name)
			}
			nodeVertex[op.Node] = i
			if (j == 0) != (op.ChainedFrom < 0) || int(op.ChainedFrom) >= j {
				return fmt.Errorf("operator %q of vertex %q is chained from %d", op.Name, v.Name, op.ChainedFrom)
			}
			if len(op.SideOutput) > MaxSideOutputName {
				return fmt.Errorf("operator %q reads a side output whose name is %d bytes, more than %d", op.Name, len(op.SideOutput), MaxSideOutputName)
			}
		}
	}
	for _, e := range jg.Edges {
		s, okS := vertex[e.SourceVertex]
		t, okT := vertex[e.TargetVertex]
		if !okS || !okT {
			return fmt.Errorf("edge %d -> %d names an unknown vertex", e.SourceNode, e.TargetNode)
		}
		if s >= t {
			return fmt.Errorf("edge %s -> %s does not go to a later vertex", e.SourceVertex, e.TargetVertex)
		}
		if nv, ok := nodeVertex[e.SourceNode]; !ok || nv != s {
			return fmt.Errorf("edge source node %d is not in vertex %s", e.SourceNode, e.SourceVertex)
		}
		if jg.Vertices[t].Operators[0].Node != e.TargetNode {
			return fmt.Errorf("edge target node %d is not the head of vertex %s", e.TargetNode, e.TargetVertex)
		}
		if len(e.SideOutput) > MaxSideOutputName {
			return fmt.Errorf("edge %d -> %d carries a side output whose name is %d bytes, more than %d", e.SourceNode, e.TargetNode, len(e.SideOutput), MaxSideOutputName)
		}
		p := task.Partitioner(e.Partitioner)
		if !p.Valid() {
			return fmt.Errorf("edge %d -> %d has unknown partitioner %q", e.SourceNode, e.TargetNode, e.Partitioner)
		}
		if p == task.Forward && jg.Vertices[s].Parallelism != jg.Vertices[t].Parallelism {
			return fmt.Errorf("forward edge %d -> %d changes parallelism", e.SourceNode, e.TargetNode)
		}
	}
	if int(jg.Slots) != SlotsNeeded(jg) {
		return fmt.Errorf("the job graph asks for %d slots but its vertices need %d", jg.Slots, SlotsNeeded(jg))
	}
	if f := Fingerprint(jg); f != jg.Fingerprint {
		return fmt.Errorf("the job graph's fingerprint %q does not match its content (%s); it was changed after it was built", jg.Fingerprint, f)
	}
	return nil
}

// MaxSideOutputName bounds the name of a side output (an OutputTag's id).
const MaxSideOutputName = 256

func isHexID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// VertexOfNode returns the index of the vertex holding node, or -1.
func VertexOfNode(jg *flinkpb.JobGraph, node int32) int {
	for i, v := range jg.Vertices {
		for _, op := range v.Operators {
			if op.Node == node {
				return i
			}
		}
	}
	return -1
}
