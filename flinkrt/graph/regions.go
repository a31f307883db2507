package graph

import (
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Regions splits a job's subtasks into pipelined regions: subtasks joined
// by a channel, directly or through others, are in one region. Regions
// exchange no data, so one can be restarted while the others run on. A
// job whose edges all redistribute (keyBy, rebalance, broadcast) is one
// region; a pipeline of forward or rescale edges has one region per
// parallel instance, or per group of them.
//
// Regions returns each subtask's region, by vertex then subtask, and the
// number of regions; regions are numbered in the order of their first
// subtask.
func Regions(jg *flinkpb.JobGraph) ([][]int, int) {
	base := make([]int, len(jg.Vertices)) // flat index of each vertex's subtask 0
	n := 0
	for i, v := range jg.Vertices {
		base[i] = n
		n += int(v.Parallelism)
	}
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int) {
		if ra, rb := find(a), find(b); ra != rb {
			parent[max(ra, rb)] = min(ra, rb)
		}
	}
	for _, e := range jg.Edges {
		src, dst := VertexOfNode(jg, e.SourceNode), VertexOfNode(jg, e.TargetNode)
		if src < 0 || dst < 0 {
			continue
		}
		np, nc := int(jg.Vertices[src].Parallelism), int(jg.Vertices[dst].Parallelism)
		for c := 0; c < nc; c++ {
			for _, p := range ProducersOf(task.Partitioner(e.Partitioner), np, nc, c) {
				union(base[src]+p, base[dst]+c)
			}
		}
	}
	number := map[int]int{}
	out := make([][]int, len(jg.Vertices))
	for i, v := range jg.Vertices {
		out[i] = make([]int, v.Parallelism)
		for s := range out[i] {
			root := find(base[i] + s)
			r, ok := number[root]
			if !ok {
				r = len(number)
				number[root] = r
			}
			out[i][s] = r
		}
	}
	return out, len(number)
}
