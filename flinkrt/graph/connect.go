package graph

import "github.com/loom-project/loom/flinkrt/task"

// ProducersOf lists the producer subtasks that feed consumer subtask c over
// an edge with partitioner p between parallelisms np (producers) and nc
// (consumers). Pointwise edges (forward, rescale) connect ranges, as
// Flink's POINTWISE pattern does; every other edge connects all to all.
func ProducersOf(p task.Partitioner, np, nc, c int) []int {
	if !p.Pointwise() {
		all := make([]int, np)
		for i := range all {
			all[i] = i
		}
		return all
	}
	if np >= nc {
		// Each consumer takes a run of producers.
		lo, hi := c*np/nc, (c+1)*np/nc
		out := make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
		return out
	}
	// Each producer feeds a run of consumers: find the one feeding c.
	for i := 0; i < np; i++ {
		if lo, hi := i*nc/np, (i+1)*nc/np; c >= lo && c < hi {
			return []int{i}
		}
	}
	return nil
}

// ConsumersOf lists the consumer subtasks that producer subtask i feeds, in
// the order of its record writer's channels.
func ConsumersOf(p task.Partitioner, np, nc, i int) []int {
	if !p.Pointwise() {
		all := make([]int, nc)
		for j := range all {
			all[j] = j
		}
		return all
	}
	var out []int
	for c := 0; c < nc; c++ {
		for _, prod := range ProducersOf(p, np, nc, c) {
			if prod == i {
				out = append(out, c)
			}
		}
	}
	return out
}
