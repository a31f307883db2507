package jobmanager

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
)

// rpcLogs reads a TaskManager's log files from the TaskManager itself
// (TaskExecutor.ListLogs, ReadLog), as a standalone deployment's driver,
// which knows of no NodeManager, must.
type rpcLogs struct{ jm *JobManager }

func (l rpcLogs) TaskManagerLog(ctx context.Context, tmID, name string, head bool) (*http.Response, bool, error) {
	addr := ""
	for _, tm := range l.jm.rm.TaskManagers() {
		if tm.ID == tmID {
			addr = tm.Address
		}
	}
	if addr == "" {
		return nil, false, nil
	}
	cc, release, err := l.jm.conns.Get(addr)
	if err != nil {
		return nil, true, err
	}
	te := flinkpb.NewTaskExecutorClient(cc)
	if head {
		defer release()
		resp, err := te.ListLogs(ctx, &flinkpb.ListLogsRequest{})
		if err != nil {
			return nil, true, errors.New(status.Convert(err).Message())
		}
		for _, f := range resp.Files {
			if f.Name == name {
				return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", ContentLength: f.Size, Body: http.NoBody}, true, nil
			}
		}
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: http.NoBody}, true, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := te.ReadLog(ctx, &flinkpb.ReadLogRequest{Name: name})
	if err != nil {
		cancel()
		release()
		return nil, true, err
	}
	// The first message says whether the file is there.
	first, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		cancel()
		release()
		code := http.StatusBadGateway
		if status.Code(err) == codes.NotFound {
			code = http.StatusNotFound
		}
		return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader(status.Convert(err).Message()))}, true, nil
	}
	pr, pw := io.Pipe()
	go func() {
		defer release()
		defer cancel()
		if first != nil {
			if _, err := pw.Write(first.Data); err != nil {
				return
			}
		}
		for err == nil {
			var m *flinkpb.LogData
			if m, err = stream.Recv(); err == nil {
				_, err = pw.Write(m.Data)
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", ContentLength: -1, Body: pr}, true, nil
}
