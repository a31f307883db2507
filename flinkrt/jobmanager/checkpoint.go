package jobmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Flink's configuration keys for checkpoints and savepoints.
const (
	ConfCheckpointInterval  = "execution.checkpointing.interval"
	ConfCheckpointTimeout   = "execution.checkpointing.timeout"
	ConfCheckpointMinPause  = "execution.checkpointing.min-pause"
	ConfCheckpointMaxConc   = "execution.checkpointing.max-concurrent-checkpoints"
	ConfCheckpointTolerable = "execution.checkpointing.tolerable-failed-checkpoints"
	ConfCheckpointRetained  = "state.checkpoints.num-retained"
	ConfCheckpointDir       = "state.checkpoints.dir"
	ConfSavepointDir        = "state.savepoints.dir"
	ConfSavepointPath       = "execution.savepoint.path"
	ConfAllowNonRestored    = "execution.savepoint.ignore-unclaimed-state"
	ConfRestartStrategy     = "restart-strategy.type"
)

// MetadataFile is the file a completed checkpoint or savepoint is known
// by; its state files sit beside it.
const MetadataFile = "_metadata"

// checkpointSettings are a job's checkpoint options.
type checkpointSettings struct {
	interval, timeout, minPause        time.Duration
	maxConcurrent, tolerable, retained int
	base                               string // state.checkpoints.dir
	dir                                string // base/<job id>
	savepointDir                       string
	restorePath                        string
	allowNonRestored                   bool
}

// DefaultCheckpointDir is where checkpoints go when the job names no
// directory. Every TaskManager writes there, so on a cluster of several
// hosts the job must name a shared filesystem or an object store.
func DefaultCheckpointDir() string { return filepath.Join(os.TempDir(), "loom-checkpoints") }

func checkpointSettingsOf(conf map[string]string, jobID string) (checkpointSettings, error) {
	s := checkpointSettings{}
	var err error
	get := func(key string, def time.Duration) time.Duration {
		d, e := configDuration(conf, key, def)
		if e != nil && err == nil {
			err = e
		}
		return d
	}
	num := func(key string, def int) int {
		n, e := configInt(conf, key, def)
		if e != nil && err == nil {
			err = e
		}
		return n
	}
	s.interval = get(ConfCheckpointInterval, 0)
	s.timeout = get(ConfCheckpointTimeout, 10*time.Minute)
	s.minPause = get(ConfCheckpointMinPause, 0)
	s.maxConcurrent = num(ConfCheckpointMaxConc, 1)
	s.tolerable = num(ConfCheckpointTolerable, 0)
	s.retained = num(ConfCheckpointRetained, 1)
	if err != nil {
		return s, err
	}
	if s.timeout <= 0 {
		return s, fmt.Errorf("%s: want a positive duration", ConfCheckpointTimeout)
	}
	s.maxConcurrent = max(s.maxConcurrent, 1)
	s.retained = max(s.retained, 1)
	base := conf[ConfCheckpointDir]
	if strings.TrimSpace(base) == "" {
		base = DefaultCheckpointDir()
	}
	if s.base, err = storage.Normalize(base); err != nil {
		return s, fmt.Errorf("%s: %w", ConfCheckpointDir, err)
	}
	s.dir = storage.Join(s.base, jobID)
	for _, o := range []struct {
		key string
		to  *string
	}{{ConfSavepointDir, &s.savepointDir}, {ConfSavepointPath, &s.restorePath}} {
		if v := conf[o.key]; strings.TrimSpace(v) != "" {
			if *o.to, err = storage.Normalize(v); err != nil {
				return s, fmt.Errorf("%s: %w", o.key, err)
			}
		}
	}
	s.allowNonRestored, _ = strconv.ParseBool(conf[ConfAllowNonRestored])
	return s, nil
}

// jobSettings reads a job's checkpoint and restart settings.
func jobSettings(jg *flinkpb.JobGraph, jobID string) (checkpointSettings, restartStrategy, error) {
	s, err := checkpointSettingsOf(jg.Config, jobID)
	if err != nil {
		return s, nil, err
	}
	r, err := newRestartStrategy(jg.Config, s.interval > 0)
	if err != nil {
		return s, nil, err
	}
	_, err = regionFailover(jg.Config)
	return s, r, err
}

// CheckConfig says what a JobMaster would refuse in a job's checkpoint,
// restart and restore settings, so that a client refuses the job before
// submitting it.
func CheckConfig(jg *flinkpb.JobGraph) error {
	s, _, err := jobSettings(jg, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An object store the submitter cannot reach (no credentials, no such
	// bucket) is one the job could not either: it takes the submitter's.
	if s.interval > 0 && storage.IsObjectStore(s.base) {
		if _, err := storage.List(ctx, s.base); err != nil {
			return fmt.Errorf("%s: %w", ConfCheckpointDir, err)
		}
	}
	if s.restorePath == "" {
		return nil
	}
	m, dir, err := readMeta(ctx, s.restorePath)
	if err != nil {
		return err
	}
	_, err = restoreFor(jg, m, dir, s.allowNonRestored)
	return err
}

// checkpointMeta is a completed checkpoint's metadata file: which state
// file holds each subtask's state of each operator.
type checkpointMeta struct {
	Version      int            `json:"version"`
	JobID        string         `json:"job_id"`
	JobName      string         `json:"job_name"`
	CheckpointID int64          `json:"checkpoint_id"`
	Timestamp    int64          `json:"timestamp"`
	Savepoint    bool           `json:"savepoint"`
	Operators    []operatorMeta `json:"operators"`
}

type operatorMeta struct {
	ID          string `json:"id"`
	UID         string `json:"uid,omitempty"`
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	// MaxParallelism is the number of key groups of a keyed operator's
	// state, which a restore at another parallelism keeps.
	MaxParallelism int  `json:"max_parallelism,omitempty"`
	KeyedState     bool `json:"keyed_state,omitempty"`
	// SplitState says the state is splits any subtask can take.
	SplitState bool `json:"split_state,omitempty"`
	// Files are the state files by subtask, relative to the metadata.
	Files map[int]string `json:"files"`
}

// readMeta reads the metadata of the checkpoint or savepoint at loc (its
// directory or its metadata file, normalized) and returns it with the
// directory.
func readMeta(ctx context.Context, loc string) (*checkpointMeta, string, error) {
	dir := loc
	if storage.Base(loc) == MetadataFile {
		dir = storage.Dir(loc)
	}
	file := storage.Join(dir, MetadataFile)
	b, err := storage.ReadFile(ctx, file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%s holds no completed checkpoint or savepoint (no %s file)", loc, MetadataFile)
		}
		return nil, "", err
	}
	var m checkpointMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", file, err)
	}
	return &m, dir, nil
}

// latestCheckpoint finds the newest completed checkpoint under a job's
// checkpoint directory; nil when there is none.
func latestCheckpoint(ctx context.Context, jobDir string) (*checkpointMeta, string, error) {
	names, err := storage.List(ctx, jobDir)
	if err != nil {
		return nil, "", err
	}
	var ids []int64
	for _, n := range names {
		if id, err := strconv.ParseInt(strings.TrimPrefix(n, "chk-"), 10, 64); err == nil && strings.HasPrefix(n, "chk-") {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] > ids[b] })
	for _, id := range ids {
		m, dir, err := readMeta(ctx, storage.Join(jobDir, fmt.Sprintf("chk-%d", id)))
		if err == nil {
			return m, dir, nil
		}
	}
	return nil, "", nil
}

// writeMeta writes a checkpoint's metadata file, which completes it: once
// it is stored, so is every state file it names (each subtask stored its
// own before acknowledging).
func writeMeta(ctx context.Context, dir string, m *checkpointMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFiles(ctx, dir, map[string][]byte{MetadataFile: b})
}

// restoreFor maps a checkpoint's operator state onto the job's operators
// by operator id (which a UID fixes across versions of a job).
func restoreFor(jg *flinkpb.JobGraph, m *checkpointMeta, dir string, allowNonRestored bool) (*flinkpb.RestoreState, error) {
	byID := map[string]operatorMeta{}
	for _, op := range m.Operators {
		byID[op.ID] = op
	}
	rs := &flinkpb.RestoreState{CheckpointId: m.CheckpointID, Path: dir}
	used := map[string]bool{}
	for vi, v := range jg.Vertices {
		subtasks := make([]*flinkpb.SubtaskState, v.Parallelism)
		for s := range subtasks {
			subtasks[s] = &flinkpb.SubtaskState{Vertex: int32(vi), Subtask: int32(s), Files: map[string]string{}}
		}
		for _, op := range v.Operators {
			st, ok := byID[op.Id]
			if !ok {
				continue
			}
			used[op.Id] = true
			if len(st.Files) == 0 {
				continue
			}
			if st.Parallelism != int(v.Parallelism) {
				paths, err := rescale(op, st, v, dir)
				if err != nil {
					return nil, err
				}
				for _, sub := range subtasks {
					if sub.Rescaled == nil {
						sub.Rescaled = map[string]*flinkpb.StateFiles{}
					}
					sub.Rescaled[op.Id] = &flinkpb.StateFiles{Paths: paths}
				}
				continue
			}
			for s, f := range st.Files {
				if s < 0 || s >= len(subtasks) {
					return nil, fmt.Errorf("the state of operator %q names subtask %d of %d", op.Name, s, v.Parallelism)
				}
				subtasks[s].Files[op.Id] = storage.Join(dir, f)
			}
		}
		for _, st := range subtasks {
			if len(st.Files) > 0 || len(st.Rescaled) > 0 {
				rs.Subtasks = append(rs.Subtasks, st)
			}
		}
	}
	if !allowNonRestored {
		for _, op := range m.Operators {
			if !used[op.ID] && len(op.Files) > 0 {
				name := op.Name
				if op.UID != "" {
					name += " (uid " + op.UID + ")"
				}
				return nil, fmt.Errorf("the state of operator %s in %s maps to no operator of the job; give the operator its UID again, or run with --allow-non-restored-state to drop it", name, dir)
			}
		}
	}
	return rs, nil
}

// rescale checks that an operator's state may move to the operator's new
// parallelism, and returns every old subtask's state file, from which
// each new subtask keeps the keys of the key groups it owns, or takes its
// share of the splits. State by key moves if the key groups (the maximum
// parallelism) are the checkpoint's; splits move freely.
func rescale(op *flinkpb.Operator, st operatorMeta, v *flinkpb.JobVertex, dir string) ([]string, error) {
	switch {
	case op.SplitState && st.SplitState:
	case !op.KeyedState || !st.KeyedState:
		return nil, fmt.Errorf("operator %q has state from %d subtasks and now runs %d: only state by key (operators after KeyBy) and the splits of the sources and sinks loom ships can change parallelism; keep this operator's with SetParallelism(%d)", op.Name, st.Parallelism, v.Parallelism, st.Parallelism)
	case st.MaxParallelism != int(v.MaxParallelism):
		return nil, fmt.Errorf("operator %q has state in %d key groups (its maximum parallelism) and now has %d: the maximum parallelism of an operator with state cannot change; set it back with SetMaxParallelism(%d)", op.Name, st.MaxParallelism, v.MaxParallelism, st.MaxParallelism)
	}
	subtasks := make([]int, 0, len(st.Files))
	for s := range st.Files {
		if s < 0 || s >= st.Parallelism {
			return nil, fmt.Errorf("the state of operator %q names subtask %d of %d", op.Name, s, st.Parallelism)
		}
		subtasks = append(subtasks, s)
	}
	sort.Ints(subtasks)
	paths := make([]string, 0, len(subtasks))
	for _, s := range subtasks {
		paths = append(paths, storage.Join(dir, st.Files[s]))
	}
	return paths, nil
}

// Checkpoint statuses, as Flink's REST API names them.
const (
	CheckpointInProgress = "IN_PROGRESS"
	CheckpointCompleted  = "COMPLETED"
	CheckpointFailed     = "FAILED"
)

// checkpointStats is one checkpoint as the REST API reports it.
type checkpointStats struct {
	id          int64
	savepoint   bool
	status      string
	trigger     time.Time
	lastAck     time.Time
	size        int64
	acked       int
	subtasks    int
	path        string
	failure     string
	alignmentMs int64
	syncMs      int64
	asyncMs     int64
	end         time.Time
	// vertices are the acknowledgements of each vertex's subtasks, by
	// subtask: what a checkpoint's detail pages show.
	vertices []vertexCheckpoint
}

// vertexCheckpoint is one vertex's part of a checkpoint.
type vertexCheckpoint struct {
	id   string
	acks []*subtaskAck // by subtask; nil until it acknowledged
}

type subtaskAck struct {
	at                           time.Time
	size                         int64
	alignmentMs, syncMs, asyncMs int64
	startDelay                   time.Duration
}

// pendingCheckpoint is a checkpoint triggered and not yet complete.
type pendingCheckpoint struct {
	stats   *checkpointStats
	dir     string
	acks    map[[2]int]*flinkpb.CheckpointAck
	waiters []chan savepointResult
	// stop cancels the job once the savepoint completes (stop with
	// savepoint).
	stop bool
}

// savepointResult is where a savepoint went, or why it failed.
type savepointResult struct {
	path string
	err  error
}

// completedCheckpoint is a checkpoint whose metadata is written.
type completedCheckpoint struct {
	meta *checkpointMeta
	dir  string
}

// restoredInfo is the checkpoint or savepoint the job last started from.
type restoredInfo struct {
	id        int64
	at        time.Time
	savepoint bool
	path      string
}

// coordinator is a JobMaster's checkpoint coordinator; the JobMaster's
// lock guards it.
type coordinator struct {
	settings  checkpointSettings
	next      int64 // id of the next checkpoint
	pending   map[int64]*pendingCheckpoint
	completed []*completedCheckpoint // retained, oldest first
	history   []*checkpointStats     // newest last, bounded
	total     int
	succeeded int
	failed    int
	restores  int
	failures  int // consecutive failed checkpoints
	lastEnd   time.Time
	restored  *restoredInfo
	// restore is the state the next deployment starts from.
	restore *flinkpb.RestoreState
}

const historySize = 10

func (c *coordinator) record(s *checkpointStats) {
	c.history = append(c.history, s)
	if len(c.history) > historySize {
		c.history = c.history[len(c.history)-historySize:]
	}
}

// randomSuffix names a savepoint directory.
func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
