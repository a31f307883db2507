package rm

import (
	"context"
	"encoding/json"
	"net/http"

	"loom/proto/yarnpb"
	"loom/rm/rmclient"
)

// httpHandler serves the RM's web API: a read-only subset of YARN's
// /ws/v1/cluster REST API, with YARN's field names.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	ce := &clientEndpoint{s: s}
	mux.HandleFunc("GET /ws/v1/cluster/info", func(w http.ResponseWriter, r *http.Request) {
		st, _ := (&adminEndpoint{s: s}).ServiceState(r.Context(), &yarnpb.ServiceStateRequest{})
		writeJSON(w, http.StatusOK, map[string]any{"clusterInfo": map[string]any{
			"id": s.clusterTS.Load(), "startedOn": s.clusterTS.Load(), "haState": st.GetState(), "rmStateStoreName": "raft",
			"leader": st.GetLeaderAddress(), "epoch": st.GetEpoch(),
		}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/metrics", func(w http.ResponseWriter, r *http.Request) {
		m, _ := ce.ClusterMetrics(r.Context(), nil)
		writeJSON(w, http.StatusOK, map[string]any{"clusterMetrics": map[string]any{
			"appsRunning": m.AppsRunning, "appsPending": m.AppsPending, "appsCompleted": m.AppsCompleted,
			"activeNodes": m.ActiveNodes, "lostNodes": m.LostNodes, "unhealthyNodes": m.UnhealthyNodes,
			"decommissionedNodes": m.DecommissionedNodes, "containersAllocated": m.ContainersAllocated,
			"totalMB": m.Total.GetMemoryMb(), "allocatedMB": m.Used.GetMemoryMb(),
			"totalVirtualCores": m.Total.GetVcores(), "allocatedVirtualCores": m.Used.GetVcores(),
		}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		resp, _ := ce.ListNodes(r.Context(), &yarnpb.ListNodesRequest{All: true})
		nodes := []rmclient.NodeJSON{}
		for _, n := range resp.Nodes {
			nodes = append(nodes, rmclient.NodeToJSON(n))
		}
		writeJSON(w, http.StatusOK, map[string]any{"nodes": map[string]any{"node": nodes}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/apps", func(w http.ResponseWriter, r *http.Request) {
		resp, _ := ce.ListApplications(r.Context(), &yarnpb.ListApplicationsRequest{All: true})
		apps := []rmclient.AppJSON{}
		for _, a := range resp.Applications {
			apps = append(apps, rmclient.AppToJSON(a))
		}
		writeJSON(w, http.StatusOK, map[string]any{"apps": map[string]any{"app": apps}})
	})
	mux.HandleFunc("GET /ws/v1/cluster/apps/{id}", func(w http.ResponseWriter, r *http.Request) {
		resp, err := ce.GetApplicationReport(context.WithoutCancel(r.Context()), &yarnpb.GetApplicationReportRequest{ApplicationId: r.PathValue("id"), IncludeContainers: true})
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"RemoteException": map[string]any{"exception": "NotFoundException", "message": err.Error()}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"app": rmclient.AppToJSON(resp.Report)})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
