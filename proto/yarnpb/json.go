package yarnpb

import (
	"math"
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

// QueueJSON is a leaf queue with the field names of a leaf queue of
// YARN's /ws/v1/cluster/scheduler. Capacities are percentages of the
// nodes without labels (YARN's absolute…), usedCapacity of the queue's
// own capacity.
type QueueJSON struct {
	QueueName               string         `json:"queueName"`
	QueuePath               string         `json:"queuePath"`
	AbsoluteCapacity        float64        `json:"absoluteCapacity"`
	AbsoluteMaxCapacity     float64        `json:"absoluteMaxCapacity"`
	UsedCapacity            float64        `json:"usedCapacity"`
	EffectiveMinResource    ResourceJSON   `json:"effectiveMinResource"`
	EffectiveMaxResource    ResourceJSON   `json:"effectiveMaxResource"`
	ResourcesUsed           ResourceJSON   `json:"resourcesUsed"`
	UsedAMResource          ResourceJSON   `json:"usedAMResource"`
	MaxAMLimitPercentage    float64        `json:"maxAMLimitPercentage"`
	PendingResources        ResourceJSON   `json:"pendingResources"`
	NumApplications         int32          `json:"numApplications"`
	NumActiveApplications   int32          `json:"numActiveApplications"`
	NumPendingApplications  int32          `json:"numPendingApplications"`
	MaxApplications         int32          `json:"maxApplications"`
	NumContainers           int32          `json:"numContainers"`
	NumContainersPreempting int32          `json:"numContainersPreempting"`
	UserLimit               float32        `json:"userLimit"`
	UserLimitFactor         float32        `json:"userLimitFactor"`
	OrderingPolicyInfo      string         `json:"orderingPolicyInfo"`
	NodeLabels              []string       `json:"nodeLabels"`
	Users                   QueueUsersJSON `json:"users"`
	// Capacities and Resources give the queue in each partition: the
	// nodes without labels ("") first, then each labeled one it may use.
	Capacities QueueCapacitiesJSON `json:"capacities"`
	Resources  QueueResourcesJSON  `json:"resources"`
}

// QueueCapacitiesJSON are a queue's capacities by partition, as YARN
// nests them.
type QueueCapacitiesJSON struct {
	QueueCapacitiesByPartition []PartitionCapacityJSON `json:"queueCapacitiesByPartition"`
}

// PartitionCapacityJSON is a queue's capacity in one partition:
// percentages of the partition (absolute…) and of its guarantee there
// (usedCapacity).
type PartitionCapacityJSON struct {
	PartitionName        string       `json:"partitionName"`
	AbsoluteCapacity     float64      `json:"absoluteCapacity"`
	AbsoluteMaxCapacity  float64      `json:"absoluteMaxCapacity"`
	UsedCapacity         float64      `json:"usedCapacity"`
	EffectiveMinResource ResourceJSON `json:"effectiveMinResource"`
	EffectiveMaxResource ResourceJSON `json:"effectiveMaxResource"`
}

// QueueResourcesJSON is what a queue holds by partition, as YARN nests
// it.
type QueueResourcesJSON struct {
	ResourceUsagesByPartition []PartitionUsageJSON `json:"resourceUsagesByPartition"`
}

// PartitionUsageJSON is what a queue holds in one partition, and what
// its applications ask for there.
type PartitionUsageJSON struct {
	PartitionName string       `json:"partitionName"`
	Used          ResourceJSON `json:"used"`
	Pending       ResourceJSON `json:"pending"`
}

// QueueUsersJSON holds a queue's users as YARN nests them.
type QueueUsersJSON struct {
	User []QueueUserJSON `json:"user"`
}

// QueueUserJSON is what one user holds in a queue.
type QueueUserJSON struct {
	Username              string       `json:"username"`
	ResourcesUsed         ResourceJSON `json:"resourcesUsed"`
	NumActiveApplications int32        `json:"numActiveApplications"`
}

// percent is a share the protocol carries as a float32, as a percentage
// rounded to what a float32 holds: 30, not 30.000001192092896.
func percent(share float32) float64 {
	return math.Round(float64(share)*1e6) / 1e4
}

// QueueToJSON converts a leaf queue's figures.
func QueueToJSON(q *QueueInfo) QueueJSON {
	leaf := q.Name
	if i := strings.LastIndexByte(leaf, '.'); i >= 0 {
		leaf = leaf[i+1:]
	}
	out := QueueJSON{
		QueueName:               leaf,
		QueuePath:               q.Name,
		AbsoluteCapacity:        percent(q.Capacity),
		AbsoluteMaxCapacity:     percent(q.MaxCapacity),
		UsedCapacity:            100 * q.UsedShare(),
		EffectiveMinResource:    resJSON(q.Guaranteed),
		EffectiveMaxResource:    resJSON(q.Maximum),
		ResourcesUsed:           resJSON(q.Used),
		UsedAMResource:          resJSON(q.AmUsed),
		MaxAMLimitPercentage:    percent(q.MaxAmShare),
		PendingResources:        resJSON(q.Pending),
		NumApplications:         q.NumApplications,
		NumActiveApplications:   q.NumApplications - q.NumPending,
		NumPendingApplications:  q.NumPending,
		MaxApplications:         q.MaxApplications,
		NumContainers:           q.NumContainers,
		NumContainersPreempting: q.Preempting,
		UserLimit:               q.MinimumUserLimitPercent,
		UserLimitFactor:         q.UserLimitFactor,
		OrderingPolicyInfo:      q.Ordering,
		NodeLabels:              q.NodeLabels,
		Users:                   QueueUsersJSON{User: []QueueUserJSON{}},
	}
	if out.NodeLabels == nil {
		out.NodeLabels = []string{}
	}
	for _, u := range q.UserUsage {
		out.Users.User = append(out.Users.User, QueueUserJSON{Username: u.User, ResourcesUsed: resJSON(u.Used), NumActiveApplications: u.NumApplications})
	}
	parts := append([]*QueuePartition{{Capacity: q.Capacity, MaxCapacity: q.MaxCapacity, Guaranteed: q.Guaranteed, Maximum: q.Maximum, Used: q.Used, Pending: q.Pending}}, q.Partitions...)
	for _, p := range parts {
		out.Capacities.QueueCapacitiesByPartition = append(out.Capacities.QueueCapacitiesByPartition, PartitionCapacityJSON{
			PartitionName: p.Label, AbsoluteCapacity: percent(p.Capacity), AbsoluteMaxCapacity: percent(p.MaxCapacity),
			UsedCapacity: 100 * p.UsedShare(), EffectiveMinResource: resJSON(p.Guaranteed), EffectiveMaxResource: resJSON(p.Maximum),
		})
		out.Resources.ResourceUsagesByPartition = append(out.Resources.ResourceUsagesByPartition, PartitionUsageJSON{PartitionName: p.Label, Used: resJSON(p.Used), Pending: resJSON(p.Pending)})
	}
	return out
}
