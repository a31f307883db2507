package rm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/loom-project/loom/errdefs"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/webui"
	"github.com/loom-project/loom/tlsutil"
)

// httpHandler serves the RM's web API: a read-only subset of YARN's
// /ws/v1/cluster REST API, with YARN's field names.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	ce := &clientEndpoint{s: s}
	if s.staging != nil {
		s.staging.routes(mux)
	}
	// The pages for people, at / and under /ui/.
	webui.New(&webCluster{s: s, ce: ce}, s.logger.Named("webui")).Routes(mux)
	// Prometheus's scrape, in its text format; like every route here it
	// takes only certificates of the cluster's CA.
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /ws/v1/cluster/info", func(w http.ResponseWriter, r *http.Request) {
		st, _ := (&adminEndpoint{s: s}).ServiceState(r.Context(), &yarnpb.ServiceStateRequest{})
		rows := s.State().Snapshot().Counts()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, http.StatusOK, map[string]any{"clusterInfo": map[string]any{
			"id": s.clusterTS.Load(), "startedOn": s.clusterTS.Load(), "haState": st.GetState(), "rmStateStoreName": "raft",
			"leader": st.GetLeaderAddress(), "epoch": st.GetEpoch(),
			// What the state holds, which retention bounds.
			"stateRows": map[string]int{"applications": rows.Apps, "attempts": rows.Attempts, "containers": rows.Containers, "nodes": rows.Nodes},
			// How the RM process itself is doing.
			"runtime": map[string]uint64{"heapAllocBytes": ms.HeapAlloc, "heapSysBytes": ms.HeapSys, "goroutines": uint64(runtime.NumGoroutine())},
		}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/metrics", func(w http.ResponseWriter, r *http.Request) {
		m, err := ce.ClusterMetrics(r.Context(), &yarnpb.ClusterMetricsRequest{})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"clusterMetrics": map[string]any{
			"appsRunning": m.AppsRunning, "appsPending": m.AppsPending, "appsCompleted": m.AppsCompleted,
			"activeNodes": m.ActiveNodes, "lostNodes": m.LostNodes, "unhealthyNodes": m.UnhealthyNodes,
			"decommissionedNodes": m.DecommissionedNodes, "containersAllocated": m.ContainersAllocated,
			"totalMB": m.Total.GetMemoryMb(), "allocatedMB": m.Used.GetMemoryMb(),
			"totalVirtualCores": m.Total.GetVcores(), "allocatedVirtualCores": m.Used.GetVcores(),
		}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/scheduler", func(w http.ResponseWriter, r *http.Request) {
		info, err := s.schedulerInfo(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("GET /ws/v1/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		resp, err := ce.ListNodes(r.Context(), &yarnpb.ListNodesRequest{All: true})
		if err != nil {
			writeError(w, err)
			return
		}
		nodes := []yarnpb.NodeJSON{}
		for _, n := range resp.Nodes {
			nodes = append(nodes, yarnpb.NodeToJSON(n))
		}
		writeJSON(w, http.StatusOK, map[string]any{"nodes": map[string]any{"node": nodes}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/apps", func(w http.ResponseWriter, r *http.Request) {
		resp, err := ce.ListApplications(r.Context(), &yarnpb.ListApplicationsRequest{All: true})
		if err != nil {
			writeError(w, err)
			return
		}
		apps := []yarnpb.AppJSON{}
		for _, a := range resp.Applications {
			apps = append(apps, yarnpb.AppToJSON(a))
		}
		writeJSON(w, http.StatusOK, map[string]any{"apps": map[string]any{"app": apps}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/apps/{id}", func(w http.ResponseWriter, r *http.Request) {
		resp, err := ce.GetApplicationReport(context.WithoutCancel(r.Context()), &yarnpb.GetApplicationReportRequest{ApplicationId: r.PathValue("id"), IncludeContainers: true})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"app": yarnpb.AppToJSON(resp.Report)})
	})
	if s.cfg.EnableDebug {
		// Go's profiles, for the cluster's admins alone (Nomad's
		// enable_debug).
		debug := http.NewServeMux()
		debug.HandleFunc("/debug/pprof/", pprof.Index)
		debug.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		debug.HandleFunc("/debug/pprof/profile", pprof.Profile)
		debug.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		debug.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, ok := tlsutil.FromRequest(r); !ok || !s.isAdmin(id) {
				writeJSON(w, http.StatusForbidden, map[string]any{"RemoteException": map[string]any{"exception": "ForbiddenException", "message": "profiles are for the cluster's admins"}})
				return
			}
			debug.ServeHTTP(w, r)
		}))
	}
	// Handlers read the caller's identity as gRPC handlers do.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := tlsutil.FromRequest(r); ok {
			r = r.WithContext(tlsutil.WithIdentity(r.Context(), id))
		}
		mux.ServeHTTP(w, r)
	})
}

// writeError answers with YARN's RemoteException body.
func writeError(w http.ResponseWriter, err error) {
	err = errdefs.FromGRPC(err)
	code, exc := http.StatusInternalServerError, "WebApplicationException"
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		code, exc = http.StatusNotFound, "NotFoundException"
	case errors.Is(err, errdefs.ErrInvalidArgument):
		code, exc = http.StatusBadRequest, "BadRequestException"
	case errors.Is(err, errdefs.ErrUnavailable), errors.Is(err, errdefs.ErrNotLeader):
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"RemoteException": map[string]any{"exception": exc, "message": err.Error()}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
