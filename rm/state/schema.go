package state

import (
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
		"node":    {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
		"live":    liveIndex(func(o any) bool { return !o.(*Container).Completed() }),
		"allocated": {Name: "allocated", Indexer: &memdb.ConditionalIndex{Conditional: func(obj any) (bool, error) {
			return obj.(*Container).State == yarnpb.ContainerState_CONTAINER_ALLOCATED, nil
		}}},
	}}
}

type metaRow struct {
	ID string
	Meta
}

func metaTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableMeta, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}
