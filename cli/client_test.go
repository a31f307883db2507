package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
)

// -o json of a cluster object gives 64-bit integers as numbers, enums by
// name, nested messages as objects and unset ones as null, in the
// objects' camelCase names.
func TestProtoJSONKeepsNumbersNumbers(t *testing.T) {
	var b bytes.Buffer
	st := &yarnpb.ServiceStateResponse{State: "leader", Epoch: 1 << 40, LastIndex: 1<<63 + 5, AppliedIndex: 7,
		Peers: []*yarnpb.RaftPeer{{Id: "rm-1:8032", Leader: true}}}
	if err := printProtoJSON(&b, st); err != nil {
		t.Fatal(err)
	}
	var got struct {
		State     string `json:"state"`
		Epoch     int64  `json:"epoch"`
		LastIndex uint64 `json:"lastIndex"`
		Peers     []struct {
			ID     string `json:"id"`
			Leader bool   `json:"leader"`
		} `json:"peers"`
		StagingURL *string `json:"stagingUrl"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if got.State != "leader" || got.Epoch != 1<<40 || got.LastIndex != 1<<63+5 || len(got.Peers) != 1 || !got.Peers[0].Leader || got.StagingURL == nil {
		t.Fatalf("decoded %+v from:\n%s", got, b.String())
	}

	b.Reset()
	if err := printProtoJSON(&b, &yarnpb.NodeReport{Id: "n:1", State: yarnpb.NodeState_NODE_RUNNING, Total: &yarnpb.Resource{MemoryMb: 1 << 34, Vcores: 8}}); err != nil {
		t.Fatal(err)
	}
	var node map[string]any
	d := json.NewDecoder(&b)
	d.UseNumber()
	if err := d.Decode(&node); err != nil {
		t.Fatal(err)
	}
	total, _ := node["total"].(map[string]any)
	if node["state"] != "NODE_RUNNING" || total == nil || total["memoryMb"] != json.Number("17179869184") || node["used"] != nil {
		t.Fatalf("a node report: %v", node)
	}
}
