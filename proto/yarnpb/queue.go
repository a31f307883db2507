package yarnpb

// UsedShare is what a queue holds as a share of its capacity (YARN's used
// capacity): the larger of its memory and vcores shares. Past 1 it uses
// idle capacity.
func (q *QueueInfo) UsedShare() float64 { return usedShare(q.GetUsed(), q.GetGuaranteed()) }

// UsedShare is what the queue holds in the partition as a share of its
// guarantee there, by its dominant resource; 0 when it is guaranteed
// nothing.
func (p *QueuePartition) UsedShare() float64 { return usedShare(p.GetUsed(), p.GetGuaranteed()) }

func usedShare(used, guar *Resource) float64 {
	var m, v float64
	if g := guar.GetMemoryMb(); g > 0 {
		m = float64(used.GetMemoryMb()) / float64(g)
	}
	if g := guar.GetVcores(); g > 0 {
		v = float64(used.GetVcores()) / float64(g)
	}
	return max(m, v)
}
