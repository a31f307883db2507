package state

import (
	memdb "github.com/hashicorp/go-memdb"
)

// Table names.
const (
	TableApps     = "applications"
	TableAttempts = "attempts"
)

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableApps:     appsTable(),
		TableAttempts: attemptsTable(),
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
