package state

import (
	memdb "github.com/hashicorp/go-memdb"
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

func nodesTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}

func appsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableApps, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}

func attemptsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableAttempts, Indexes: map[string]*memdb.IndexSchema{
		"id":  idIndex(),
		"app": {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppID"}},
	}}
}

func containersTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableContainers, Indexes: map[string]*memdb.IndexSchema{
		"id":      idIndex(),
		"attempt": {Name: "attempt", Indexer: &memdb.StringFieldIndex{Field: "AttemptID"}},
		"node":    {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
	}}
}

type metaRow struct {
	ID string
	Meta
}

func metaTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableMeta, Indexes: map[string]*memdb.IndexSchema{"id": idIndex()}}
}
