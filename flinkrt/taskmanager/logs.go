package taskmanager

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
)

// logFile is the file a log name means: "stderr" the TaskManager's log,
// "stdout" its workers' output (as in a container), or a file of the log
// directory by its own name.
func (tm *TaskManager) logFile(name string) (string, error) {
	if tm.cfg.LogDir == "" {
		return "", status.Error(codes.NotFound, "this TaskManager keeps no log files: it logs to the standard error of the process that runs it (start it with --log-dir)")
	}
	switch name {
	case "stderr":
		name = tm.cfg.LogName
	case "stdout":
		name = tm.cfg.OutName
	}
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return "", status.Errorf(codes.InvalidArgument, "log name %q is not a plain file name", name)
	}
	return filepath.Join(tm.cfg.LogDir, name), nil
}

// ListLogs implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) ListLogs(context.Context, *flinkpb.ListLogsRequest) (*flinkpb.ListLogsResponse, error) {
	resp := &flinkpb.ListLogsResponse{}
	if tm.cfg.LogDir == "" {
		return resp, nil
	}
	entries, err := os.ReadDir(tm.cfg.LogDir)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			name := e.Name()
			switch name {
			case tm.cfg.LogName:
				name = "stderr"
			case tm.cfg.OutName:
				name = "stdout"
			}
			resp.Files = append(resp.Files, &flinkpb.LogFileInfo{Name: name, Size: info.Size(), MtimeMs: info.ModTime().UnixMilli()})
		}
	}
	return resp, nil
}

// ReadLog implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) ReadLog(req *flinkpb.ReadLogRequest, s flinkpb.TaskExecutor_ReadLogServer) error {
	path, err := tm.logFile(req.Name)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return status.Errorf(codes.NotFound, "TaskManager %s has no log %q", tm.id, req.Name)
		}
		return status.Error(codes.Unavailable, err.Error())
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := s.Send(&flinkpb.LogData{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
	}
}
