package yarnpb

import (
	"strings"
	"time"
)

// The JSON shapes of nodes and applications, with the field names of
// YARN's REST API so that scripts written for YARN read them unchanged.

// ResourceJSON is a resource vector.
type ResourceJSON struct {
	MemoryMB int64 `json:"memory"`
	VCores   int32 `json:"vCores"`
}

// NodeJSON is a node as YARN's /ws/v1/cluster/nodes shows it.
type NodeJSON struct {
	ID               string        `json:"id"`
	State            string        `json:"state"`
	Rack             string        `json:"rack"`
	NodeHostName     string        `json:"nodeHostName"`
	HTTPAddress      string        `json:"httpAddress"`
	TotalResource    ResourceJSON  `json:"totalResource"`
	UsedResource     ResourceJSON  `json:"usedResource"`
	AvailResource    ResourceJSON  `json:"availableResource"`
	NumContainers    int32         `json:"numContainers"`
	HealthReport     string        `json:"healthReport"`
	LastHealthUpdate int64         `json:"lastHealthUpdate"`
	Utilization      *ResourceJSON `json:"resourceUtilization,omitempty"`
	NodeLabels       []string      `json:"nodeLabels,omitempty"`
}

// ContainerJSON is a container of an application.
type ContainerJSON struct {
	ID          string       `json:"id"`
	NodeID      string       `json:"nodeId"`
	NodeHTTP    string       `json:"nodeHttpAddress"`
	State       string       `json:"state"`
	Resource    ResourceJSON `json:"allocatedResource"`
	Priority    int32        `json:"priority"`
	ExitStatus  int32        `json:"exitStatus"`
	Diagnostics string       `json:"diagnosticsInfo"`
	StartTime   int64        `json:"startedTime"`
	FinishTime  int64        `json:"finishedTime"`
	IsAM        bool         `json:"isAM,omitempty"`
}

// AttemptJSON is an application attempt.
type AttemptJSON struct {
	ID          string `json:"appAttemptId"`
	State       string `json:"appAttemptState"`
	ContainerID string `json:"containerId"`
	Diagnostics string `json:"diagnosticsInfo"`
	StartTime   int64  `json:"startTime"`
	FinishTime  int64  `json:"finishedTime"`
}

// AppJSON is an application as YARN's /ws/v1/cluster/apps shows it.
type AppJSON struct {
	ID                string          `json:"id"`
	Name              string          `json:"name"`
	User              string          `json:"user"`
	Queue             string          `json:"queue"`
	ApplicationType   string          `json:"applicationType"`
	Priority          int32           `json:"priority"`
	State             string          `json:"state"`
	FinalStatus       string          `json:"finalStatus"`
	Progress          float32         `json:"progress"`
	Diagnostics       string          `json:"diagnostics"`
	TrackingURL       string          `json:"trackingUrl"`
	AMHostHTTP        string          `json:"amHostHttpAddress,omitempty"`
	SubmittedTime     int64           `json:"submittedTime"`
	StartedTime       int64           `json:"startedTime"`
	FinishedTime      int64           `json:"finishedTime"`
	ElapsedTime       int64           `json:"elapsedTime"`
	AllocatedMB       int64           `json:"allocatedMB"`
	AllocatedVCores   int32           `json:"allocatedVCores"`
	RunningContainers int32           `json:"runningContainers"`
	CurrentAttempt    string          `json:"currentAppAttemptId,omitempty"`
	Attempts          []AttemptJSON   `json:"appAttempts,omitempty"`
	Containers        []ContainerJSON `json:"containers,omitempty"`
	Tags              string          `json:"applicationTags,omitempty"`
}

func resJSON(r *Resource) ResourceJSON {
	return ResourceJSON{MemoryMB: r.GetMemoryMb(), VCores: r.GetVcores()}
}

// NodeToJSON converts a node report.
func NodeToJSON(n *NodeReport) NodeJSON {
	host := n.Id
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	out := NodeJSON{
		ID:               n.Id,
		State:            StateName(n.State.String()),
		Rack:             n.Rack,
		NodeHostName:     host,
		HTTPAddress:      n.HttpAddress,
		TotalResource:    resJSON(n.Total),
		UsedResource:     resJSON(n.Used),
		AvailResource:    ResourceJSON{MemoryMB: n.Total.GetMemoryMb() - n.Used.GetMemoryMb(), VCores: n.Total.GetVcores() - n.Used.GetVcores()},
		NumContainers:    n.NumContainers,
		HealthReport:     n.HealthReport,
		LastHealthUpdate: n.LastHeartbeat,
		NodeLabels:       n.Labels,
	}
	if n.Utilization != nil {
		u := resJSON(n.Utilization)
		out.Utilization = &u
	}
	return out
}

// AppToJSON converts an application report.
func AppToJSON(a *ApplicationReport) AppJSON {
	out := AppJSON{
		ID:                a.Id,
		Name:              a.Name,
		User:              a.User,
		Queue:             a.Queue,
		ApplicationType:   a.Type,
		Priority:          a.Priority,
		State:             StateName(a.State.String()),
		FinalStatus:       a.FinalStatus.String(),
		Progress:          a.Progress * 100,
		Diagnostics:       a.Diagnostics,
		TrackingURL:       a.TrackingUrl,
		SubmittedTime:     a.SubmitTime,
		StartedTime:       a.StartTime,
		FinishedTime:      a.FinishTime,
		AllocatedMB:       a.Used.GetMemoryMb(),
		AllocatedVCores:   a.Used.GetVcores(),
		RunningContainers: a.NumContainers,
		CurrentAttempt:    a.CurrentAttemptId,
		Tags:              strings.Join(a.Tags, ","),
	}
	if a.StartTime > 0 {
		end := a.FinishTime
		if end == 0 {
			end = time.Now().UnixMilli()
		}
		out.ElapsedTime = end - a.StartTime
	}
	for _, at := range a.Attempts {
		out.Attempts = append(out.Attempts, AttemptJSON{
			ID: at.Id, State: StateName(at.State.String()), ContainerID: at.AmContainerId,
			Diagnostics: at.Diagnostics, StartTime: at.StartTime, FinishTime: at.FinishTime,
		})
	}
	for _, c := range a.Containers {
		out.Containers = append(out.Containers, ContainerToJSON(c))
	}
	return out
}

// ContainerToJSON converts a container.
func ContainerToJSON(c *Container) ContainerJSON {
	return ContainerJSON{
		ID: c.Id, NodeID: c.NodeId, NodeHTTP: c.NodeHttpAddress, State: StateName(c.State.String()),
		Resource: resJSON(c.Resource), Priority: c.Priority, ExitStatus: c.ExitStatus, Diagnostics: c.Diagnostics,
		StartTime: c.StartTime, FinishTime: c.FinishTime, IsAM: c.IsAm,
	}
}

// StateName strips an enum's prefix: NODE_RUNNING -> RUNNING.
func StateName(s string) string {
	for _, p := range []string{"NODE_", "APP_", "ATTEMPT_", "CONTAINER_"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			return rest
		}
	}
	return s
}
