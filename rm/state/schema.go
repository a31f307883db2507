package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Table names.
const (
	TableNodes      = "nodes"
	TableApps       = "applications"
	TableAttempts   = "attempts"
	TableContainers = "containers"
	TableMeta       = "meta"
)

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableNodes:      nodesTable(),
		TableApps:       appsTable(),
		TableAttempts:   attemptsTable(),
		TableContainers: containersTable(),
		TableMeta:       metaTable(),
	}}
}

func idIndex() *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}}
}

// liveIndex indexes objects by whether they are live, so that the hot
// paths read what is running in O(live), whatever the history.
func liveIndex(live func(obj any) bool) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "live", Indexer: &memdb.ConditionalIndex{Conditional: func(obj any) (bool, error) { return live(obj), nil }}}
}

// presentIndex indexes only the objects present holds for, which are
// read with the argument true. The rest are not in it at all: a
// container that has been handed out or has ended costs the index
// neither memory nor a tree insert on each write, where a ConditionalIndex
// holds every object under true or false.
func presentIndex(name string, present func(obj any) bool) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: presentIndexer(present)}
}

type presentIndexer func(obj any) bool

func (p presentIndexer) FromObject(obj any) (bool, []byte, error) {
	if !p(obj) {
		return false, nil, nil
	}
	return true, []byte{1}, nil
}

func (presentIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 || args[0] != true {
		return nil, fmt.Errorf("a present index is read with the one argument true, not %v", args)
	}
	return []byte{1}, nil
}

// liveByNode indexes the containers that have not completed by their
// node: what a node that leaves, returns or is drained still runs. Ended
// containers, most of a long-running cluster's, are not in it.
type liveByNode struct{}

func (liveByNode) FromObject(obj any) (bool, []byte, error) {
	c := obj.(*Container)
	if c.Completed() || c.NodeID == "" {
		return false, nil, nil
	}
	return true, append([]byte(c.NodeID), 0), nil
}

func (liveByNode) FromArgs(args ...any) ([]byte, error) {
	id, ok := "", len(args) == 1
	if ok {
		id, ok = args[0].(string)
	}
	if !ok {
		return nil, fmt.Errorf("the node index is read with one node id, not %v", args)
	}
	return append([]byte(id), 0), nil
}

func nodesTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}

func appsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableApps, Indexes: map[string]*memdb.IndexSchema{
		"id":   idIndex(),
		"live": liveIndex(func(o any) bool { return !o.(*Application).Terminal() }),
	}}
}

func attemptsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableAttempts, Indexes: map[string]*memdb.IndexSchema{
		"id":   idIndex(),
		"app":  {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppID"}},
		"live": liveIndex(func(o any) bool { return !o.(*Attempt).Terminal() }),
	}}
}

func containersTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableContainers, Indexes: map[string]*memdb.IndexSchema{
		"id":      idIndex(),
		"attempt": {Name: "attempt", Indexer: &memdb.StringFieldIndex{Field: "AttemptID"}},
		"node":    {Name: "node", AllowMissing: true, Indexer: liveByNode{}},
		"live":    presentIndex("live", func(o any) bool { return !o.(*Container).Completed() }),
		"allocated": presentIndex("allocated", func(o any) bool {
			return o.(*Container).State == yarnpb.ContainerState_CONTAINER_ALLOCATED
		}),
	}}
}

type metaRow struct {
	ID string
	Meta
}

func metaTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableMeta, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}
