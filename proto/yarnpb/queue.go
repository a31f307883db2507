package yarnpb

// UsedShare is what a queue holds as a share of its capacity (YARN's used
// capacity): the larger of its memory and vcores shares. Past 1 it uses
// idle capacity.
func (q *QueueInfo) UsedShare() float64 {
	var m, v float64
	if g := q.GetGuaranteed().GetMemoryMb(); g > 0 {
		m = float64(q.GetUsed().GetMemoryMb()) / float64(g)
	}
	if g := q.GetGuaranteed().GetVcores(); g > 0 {
		v = float64(q.GetUsed().GetVcores()) / float64(g)
	}
	return max(m, v)
}
