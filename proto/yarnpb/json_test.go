package yarnpb

import "testing"

// A queue's shares, carried as float32, come out as the percentages the
// queue file gave, with its leaf name and users as YARN nests them.
func TestQueueToJSON(t *testing.T) {
	q := QueueToJSON(&QueueInfo{Name: "root.a.b", Capacity: 0.3, MaxCapacity: 0.7, MaxAmShare: 0.1, NumApplications: 3, NumPending: 1,
		Guaranteed: &Resource{MemoryMb: 1000, Vcores: 10}, Used: &Resource{MemoryMb: 500, Vcores: 2}, Pending: &Resource{MemoryMb: 700, Vcores: 1},
		UserUsage:  []*QueueUser{{User: "alice", Used: &Resource{MemoryMb: 500}, NumApplications: 3}},
		Partitions: []*QueuePartition{{Label: "gpu", Capacity: 0.25, MaxCapacity: 1, Guaranteed: &Resource{MemoryMb: 2000, Vcores: 2}, Used: &Resource{MemoryMb: 3000, Vcores: 3}, Pending: &Resource{MemoryMb: 800}}}})
	if q.QueueName != "b" || q.QueuePath != "root.a.b" || q.AbsoluteCapacity != 30 || q.AbsoluteMaxCapacity != 70 || q.MaxAMLimitPercentage != 10 {
		t.Fatalf("names and shares: %+v", q)
	}
	if q.UsedCapacity != 50 || q.NumActiveApplications != 2 || len(q.Users.User) != 1 || q.Users.User[0].ResourcesUsed.MemoryMB != 500 || q.NodeLabels == nil {
		t.Fatalf("use and users: %+v", q)
	}
	caps, uses := q.Capacities.QueueCapacitiesByPartition, q.Resources.ResourceUsagesByPartition
	if len(caps) != 2 || len(uses) != 2 || caps[0].PartitionName != "" || caps[0].AbsoluteCapacity != 30 || caps[0].UsedCapacity != 50 || uses[0].Used.MemoryMB != 500 || uses[0].Pending.MemoryMB != 700 {
		t.Fatalf("the default partition: %+v, %+v", caps, uses)
	}
	if g := caps[1]; g.PartitionName != "gpu" || g.AbsoluteCapacity != 25 || g.AbsoluteMaxCapacity != 100 || g.UsedCapacity != 150 || g.EffectiveMinResource.MemoryMB != 2000 || uses[1].Used.MemoryMB != 3000 || uses[1].Pending.MemoryMB != 800 {
		t.Fatalf("the gpu partition: %+v, %+v", g, uses[1])
	}
}
