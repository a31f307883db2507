// Package state holds the ResourceManager's replicated state:
// applications, attempts and meta in go-memdb tables, nodes and
// containers in persistent B-trees, read together as one snapshot. The
// FSM is the only writer; every other reader takes a consistent snapshot.
package state

import (
	"maps"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Resource is a vector of countable resources.
type Resource struct {
	MemoryMB int64 `json:"m,omitempty"`
	VCores   int32 `json:"v,omitempty"`
}

// Add returns r + o.
func (r Resource) Add(o Resource) Resource {
	return Resource{MemoryMB: r.MemoryMB + o.MemoryMB, VCores: r.VCores + o.VCores}
}

// Sub returns r - o.
func (r Resource) Sub(o Resource) Resource {
	return Resource{MemoryMB: r.MemoryMB - o.MemoryMB, VCores: r.VCores - o.VCores}
}

// Fits reports whether o fits in r.
func (r Resource) Fits(o Resource) bool {
	return o.MemoryMB <= r.MemoryMB && o.VCores <= r.VCores
}

// Proto converts r for the wire.
func (r Resource) Proto() *yarnpb.Resource {
	return &yarnpb.Resource{MemoryMb: r.MemoryMB, Vcores: r.VCores}
}

// ResourceFrom converts a wire resource; nil is zero.
func ResourceFrom(p *yarnpb.Resource) Resource {
	if p == nil {
		return Resource{}
	}
	return Resource{MemoryMB: p.MemoryMb, VCores: p.Vcores}
}

// Node is a NodeManager known to the cluster.
type Node struct {
	ID                   string           `json:"id"`
	HTTPAddress          string           `json:"http,omitempty"`
	Rack                 string           `json:"rack,omitempty"`
	State                yarnpb.NodeState `json:"state"`
	Total                Resource         `json:"total"`
	Used                 Resource         `json:"used"`
	NumContainers        int32            `json:"n,omitempty"`
	HealthReport         string           `json:"health,omitempty"`
	Labels               []string         `json:"labels,omitempty"`
	RegisteredAt         int64            `json:"reg,omitempty"`
	StateChangedAt       int64            `json:"changed,omitempty"`
	DecommissionDeadline int64            `json:"decom_deadline,omitempty"`
	// Identity is the name in the node certificate it registered with;
	// only that certificate may heartbeat for it while it is live.
	Identity    string `json:"identity,omitempty"`
	ModifyIndex uint64 `json:"mi,omitempty"`
}

// Schedulable reports whether new containers may be placed on n.
func (n *Node) Schedulable() bool { return n.State == yarnpb.NodeState_NODE_RUNNING }

// Live reports whether n is still part of the cluster.
func (n *Node) Live() bool {
	switch n.State {
	case yarnpb.NodeState_NODE_RUNNING, yarnpb.NodeState_NODE_UNHEALTHY, yarnpb.NodeState_NODE_DECOMMISSIONING, yarnpb.NodeState_NODE_NEW:
		return true
	}
	return false
}

// Application is a submitted application.
type Application struct {
	ID             string             `json:"id"`
	Seq            uint64             `json:"seq"` // submission order, for FIFO
	Name           string             `json:"name"`
	User           string             `json:"user"`
	Queue          string             `json:"queue"`
	Type           string             `json:"type,omitempty"`
	Priority       int32              `json:"prio,omitempty"`
	Tags           []string           `json:"tags,omitempty"`
	State          yarnpb.AppState    `json:"state"`
	FinalStatus    yarnpb.FinalStatus `json:"final,omitempty"`
	Diagnostics    string             `json:"diag,omitempty"`
	TrackingURL    string             `json:"url,omitempty"`
	Host           string             `json:"host,omitempty"`
	RPCPort        int32              `json:"port,omitempty"`
	SubmitTime     int64              `json:"submit"`
	StartTime      int64              `json:"start,omitempty"`
	FinishTime     int64              `json:"finish,omitempty"`
	Progress       float32            `json:"progress,omitempty"`
	AMLaunch       []byte             `json:"am_launch"` // marshaled yarnpb.ContainerLaunchContext
	AMResource     Resource           `json:"am_res"`
	MaxAttempts    int32              `json:"max_attempts"`
	NumAttempts    int32              `json:"attempts"`
	CurrentAttempt string             `json:"cur_attempt,omitempty"`
	KeepContainers bool               `json:"keep,omitempty"`
	// Used is what its live containers hold, AMUsed its AM containers'
	// part of it, LabeledUsed the part on nodes with labels and
	// UsedByLabel that part by the partition each container was placed
	// in; NumContainers counts them. The FSM keeps them as containers
	// are placed and complete, so the scheduler reads an application's
	// use without reading its containers. A record is never changed
	// once committed: UsedByLabel is copied before it is written.
	Used          Resource            `json:"used,omitempty"`
	AMUsed        Resource            `json:"am_used,omitempty"`
	LabeledUsed   Resource            `json:"labeled_used,omitempty"`
	UsedByLabel   map[string]Resource `json:"used_by_label,omitempty"`
	NumContainers int32               `json:"n_containers,omitempty"`
	ModifyIndex   uint64              `json:"mi,omitempty"`
}

// charge adds (sign 1) or removes (sign -1) a container's resources to
// what the application holds.
func (a *Application) charge(c *Container, sign int64) {
	r := Resource{MemoryMB: sign * c.Resource.MemoryMB, VCores: int32(sign) * c.Resource.VCores}
	a.Used = a.Used.Add(r)
	if c.IsAM {
		a.AMUsed = a.AMUsed.Add(r)
	}
	if c.Labeled {
		a.LabeledUsed = a.LabeledUsed.Add(r)
	}
	if c.Label != "" {
		byLabel := maps.Clone(a.UsedByLabel)
		if byLabel == nil {
			byLabel = map[string]Resource{}
		}
		if u := byLabel[c.Label].Add(r); u.MemoryMB > 0 || u.VCores > 0 {
			byLabel[c.Label] = u
		} else {
			delete(byLabel, c.Label)
		}
		a.UsedByLabel = byLabel
		if len(byLabel) == 0 {
			a.UsedByLabel = nil
		}
	}
	a.NumContainers += int32(sign)
	if a.NumContainers <= 0 {
		a.NumContainers, a.Used, a.AMUsed, a.LabeledUsed, a.UsedByLabel = 0, Resource{}, Resource{}, Resource{}, nil
	}
}

// Terminal reports whether the application has ended.
func (a *Application) Terminal() bool { return AppTerminal(a.State) }

// AppTerminal reports whether s is an end state.
func AppTerminal(s yarnpb.AppState) bool {
	return s == yarnpb.AppState_APP_FINISHED || s == yarnpb.AppState_APP_FAILED || s == yarnpb.AppState_APP_KILLED
}

// Attempt is one run of an application's ApplicationMaster.
type Attempt struct {
	ID               string              `json:"id"`
	AppID            string              `json:"app"`
	Num              int32               `json:"num"`
	State            yarnpb.AttemptState `json:"state"`
	AMContainerID    string              `json:"am,omitempty"`
	Host             string              `json:"host,omitempty"`
	RPCPort          int32               `json:"port,omitempty"`
	TrackingURL      string              `json:"url,omitempty"`
	Registered       bool                `json:"registered,omitempty"`
	Unregistered     bool                `json:"unregistered,omitempty"`
	FinalStatus      yarnpb.FinalStatus  `json:"final,omitempty"`
	Diagnostics      string              `json:"diag,omitempty"`
	StartTime        int64               `json:"start"`
	FinishTime       int64               `json:"finish,omitempty"`
	NextContainerSeq int64               `json:"next_seq"`
	ModifyIndex      uint64              `json:"mi,omitempty"`
}

// Terminal reports whether the attempt has ended.
func (a *Attempt) Terminal() bool {
	return a.State == yarnpb.AttemptState_ATTEMPT_FINISHED || a.State == yarnpb.AttemptState_ATTEMPT_FAILED || a.State == yarnpb.AttemptState_ATTEMPT_KILLED
}

// Container is an allocation on a node.
type Container struct {
	ID                  string   `json:"id"`
	AppID               string   `json:"app"`
	AttemptID           string   `json:"attempt"`
	NodeID              string   `json:"node"`
	NodeHTTP            string   `json:"node_http,omitempty"`
	Resource            Resource `json:"res"`
	Priority            int32    `json:"prio,omitempty"`
	AllocationRequestID int64    `json:"arid,omitempty"`
	IsAM                bool     `json:"am,omitempty"`
	// Labeled is set when its node had labels at placement: it counts
	// toward a labeled partition, not the default one. Label is the
	// partition it was placed in, one of its node's labels.
	Labeled     bool                  `json:"labeled,omitempty"`
	Label       string                `json:"label,omitempty"`
	State       yarnpb.ContainerState `json:"state"`
	ExitStatus  int32                 `json:"exit,omitempty"`
	Diagnostics string                `json:"diag,omitempty"`
	AllocatedAt int64                 `json:"alloc_at"`
	// HandedIn is the Allocate response that handed the container to its
	// AM (ACQUIRED): an AM whose next call says it never got that
	// response, because the leader that sent it went, is sent it again.
	HandedIn   int32 `json:"handed,omitempty"`
	StartTime  int64 `json:"start,omitempty"`
	FinishTime int64 `json:"finish,omitempty"`
	// CompletedIndex is the raft index at which the container completed;
	// the AM service uses it to hand each completion to the AM once.
	CompletedIndex uint64 `json:"ci,omitempty"`
	ModifyIndex    uint64 `json:"mi,omitempty"`
}

// Completed reports whether the container has ended.
func (c *Container) Completed() bool { return c.State == yarnpb.ContainerState_CONTAINER_COMPLETED }

// Proto converts c for the wire.
func (c *Container) Proto() *yarnpb.Container {
	return &yarnpb.Container{
		Id:                   c.ID,
		ApplicationAttemptId: c.AttemptID,
		NodeId:               c.NodeID,
		NodeHttpAddress:      c.NodeHTTP,
		Resource:             c.Resource.Proto(),
		Priority:             c.Priority,
		AllocationRequestId:  c.AllocationRequestID,
		State:                c.State,
		ExitStatus:           c.ExitStatus,
		Diagnostics:          c.Diagnostics,
		StartTime:            c.StartTime,
		FinishTime:           c.FinishTime,
		IsAm:                 c.IsAM,
	}
}

// Status converts c to a container status.
func (c *Container) Status() *yarnpb.ContainerStatus {
	return &yarnpb.ContainerStatus{ContainerId: c.ID, State: c.State, ExitStatus: c.ExitStatus, Diagnostics: c.Diagnostics}
}

// Meta is the cluster-wide record: the RM epoch and counters.
// MaxEarlierLeaderships bounds Meta.Earlier.
const MaxEarlierLeaderships = 8

type Meta struct {
	Epoch   int64  `json:"epoch"`
	AppSeq  uint64 `json:"app_seq"`
	Cluster int64  `json:"cluster_ts"`
	// Earlier are the cluster timestamps of the leaderships before this
	// one, newest first (at most MaxEarlierLeaderships): an application
	// id a leader handed out stays good for submitting to the next.
	Earlier []int64 `json:"earlier_cluster_ts,omitempty"`
	// Keys are the master keys of the tokens the leader signs, newest
	// first.
	Keys []*yarnpb.MasterKey `json:"keys,omitempty"`
	// QueueFile and QueueSource are the queue file the scheduler follows
	// (its name, and its text as the leader read it); none is the
	// built-in root.default.
	QueueFile   string `json:"queue_file,omitempty"`
	QueueSource []byte `json:"queue_src,omitempty"`
}
