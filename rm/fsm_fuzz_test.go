package rm

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// FuzzFSMApply: no raft entry, however made, panics the FSM or leaves
// it unable to apply the next one.
func FuzzFSMApply(f *testing.F) {
	node := &state.Node{ID: "h:1", State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: 1024, VCores: 2}}
	app := &state.Application{ID: "application_1_0001", User: "u", Queue: "root.default", MaxAttempts: 2, AMResource: state.Resource{MemoryMB: 128, VCores: 1}}
	for _, seed := range []struct {
		t CommandType
		p any
	}{
		{CmdBumpEpoch, bumpEpochCmd{ClusterTS: 1}},
		{CmdRegisterNode, registerNodeCmd{Node: node}},
		{CmdSetNodeState, setNodeStateCmd{NodeID: "h:1", State: yarnpb.NodeState_NODE_DECOMMISSIONED}},
		{CmdSubmitApp, submitAppCmd{App: app}},
		{CmdPlacePlan, placePlanCmd{Epoch: 1, Nodes: []string{"h:1"}, Groups: []placement{{AttemptID: "appattempt_1_0001_000001", Resource: state.Resource{MemoryMB: 1, VCores: 1}, Seqs: []int64{1}, NodeIdx: []int32{0}}}}},
		{CmdAcquireContainers, acquireContainersCmd{IDs: []string{"container_e01_1_0001_01_000001"}}},
		{CmdContainerStatuses, containerStatusesCmd{NodeID: "h:1", Statuses: []*yarnpb.ContainerStatus{{ContainerId: "container_e01_1_0001_01_000001"}}}},
		{CmdRegisterAttempt, registerAttemptCmd{AttemptID: "appattempt_1_0001_000001"}},
		{CmdUnregisterAttempt, unregisterAttemptCmd{AttemptID: "appattempt_1_0001_000001"}},
		{CmdFailAttempt, failAttemptCmd{AttemptID: "appattempt_1_0001_000001"}},
		{CmdKillApp, killAppCmd{AppID: "application_1_0001"}},
		{CmdReleaseContainers, releaseContainersCmd{AttemptID: "appattempt_1_0001_000001", IDs: []string{"x"}}},
		{CmdAppProgress, appProgressCmd{AppID: "application_1_0001", Progress: 0.5}},
	} {
		b, err := encodeCommand(seed.t, seed.p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{byte(CmdRegisterNode), 'n', 'u', 'l', 'l'})
	f.Add([]byte{0xff})
	setup := []*raft.Log{}
	for i, c := range []struct {
		t CommandType
		p any
	}{{CmdBumpEpoch, bumpEpochCmd{ClusterTS: 1}}, {CmdRegisterNode, registerNodeCmd{Node: node}}, {CmdSubmitApp, submitAppCmd{App: app}}} {
		b, _ := encodeCommand(c.t, c.p)
		setup = append(setup, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm, err := NewFSM(hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range setup {
			fsm.Apply(l)
		}
		n := uint64(len(setup))
		fsm.Apply(&raft.Log{Index: n + 1, Type: raft.LogCommand, Data: data})
		if p := fsm.panics.Load(); p != 0 {
			t.Fatalf("applying %q panicked", data)
		}
		if fsm.AppliedIndex() != n+1 {
			t.Fatalf("applied index %d after entry %d", fsm.AppliedIndex(), n+1)
		}
		// The store still takes a valid command.
		b, _ := encodeCommand(CmdAppProgress, appProgressCmd{AppID: app.ID, Progress: 1})
		if r, ok := fsm.Apply(&raft.Log{Index: n + 2, Type: raft.LogCommand, Data: b}).(*fsmResult); !ok || r.Err != nil {
			t.Fatalf("a valid command after %q: %+v", data, r)
		}
	})
}
