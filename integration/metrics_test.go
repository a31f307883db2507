package integration

import (
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// scrape reads a daemon's /metrics as Prometheus does and parses it in
// Prometheus's text format.
func scrape(t *testing.T, hc *http.Client, url string) map[string][]map[string]string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s is not in Prometheus's text format: %v", url, err)
	}
	out := map[string][]map[string]string{}
	for name, f := range families {
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				labels["value"] = model.SampleValue(m.Gauge.GetValue()).String()
			case m.Counter != nil:
				labels["value"] = model.SampleValue(m.Counter.GetValue()).String()
			case m.Histogram != nil:
				labels["value"] = model.SampleValue(float64(m.Histogram.GetSampleCount())).String()
			}
			out[name] = append(out[name], labels)
		}
	}
	return out
}

func value(t *testing.T, series map[string][]map[string]string, name string, match map[string]string) string {
	t.Helper()
	for _, labels := range series[name] {
		ok := true
		for k, v := range match {
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			return labels["value"]
		}
	}
	t.Errorf("no series %s%v", name, match)
	return ""
}

// Every daemon of the cluster answers Prometheus at /metrics (with a
// certificate of the cluster's CA, as every port): the RM its state,
// allocations and raft; each NodeManager its containers, launches and
// localizations.
func TestDaemonsExportPrometheusMetrics(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	if out := c.mustLoom("dshell", "--num-containers", "3", "--memory-mb", "64", "--", "true"); !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("dshell:\n%s", out)
	}
	admin := c.signed(tlstest.User("root", "admins"))
	hc := rmclient.HTTPClient(admin)
	rm := scrape(t, hc, "https://"+c.httpAddr+"/metrics")
	if v := value(t, rm, "loom_rm_applications", map[string]string{"state": "APP_FINISHED"}); v != "1" {
		t.Errorf("loom_rm_applications{state=APP_FINISHED} = %s, want 1", v)
	}
	if v := value(t, rm, "loom_rm_nodes", map[string]string{"state": "NODE_RUNNING"}); v != "2" {
		t.Errorf("loom_rm_nodes{state=NODE_RUNNING} = %s, want 2", v)
	}
	if v := value(t, rm, "loom_rm_allocations_total", nil); v != "4" {
		t.Errorf("loom_rm_allocations_total = %s, want 4 (the AM and 3 shells)", v)
	}
	if v := value(t, rm, "loom_rm_raft_leader", nil); v != "1" {
		t.Errorf("loom_rm_raft_leader = %s, want 1", v)
	}
	for _, name := range []string{"loom_rm_raft_commit_seconds", "loom_rm_scheduler_plan_seconds", "loom_rm_containers", "loom_rm_resources", "go_goroutines", "process_resident_memory_bytes"} {
		if len(rm[name]) == 0 {
			t.Errorf("the RM exports no %s", name)
		}
	}
	launched := 0.0
	nodeHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: admin.ClientConfig(tlsutil.NodeName)}}
	for _, nd := range c.nodes(false) {
		nm := scrape(t, nodeHTTP, "https://"+nd.HTTPAddress+"/metrics")
		n, err := strconv.ParseFloat(value(t, nm, "loom_nm_container_launches_total", nil), 64)
		if err != nil {
			t.Fatal(err)
		}
		launched += n
		for _, name := range []string{"loom_nm_containers", "loom_nm_resources", "loom_nm_localization_seconds", "go_goroutines"} {
			if len(nm[name]) == 0 {
				t.Errorf("NodeManager %s exports no %s", nd.ID, name)
			}
		}
	}
	if launched != 4 {
		t.Errorf("the NodeManagers launched %v containers, want 4", launched)
	}
	// The sample Grafana dashboard asks for series the daemons export.
	var nmSeries map[string][]map[string]string
	for _, nd := range c.nodes(false) {
		nmSeries = scrape(t, nodeHTTP, "https://"+nd.HTTPAddress+"/metrics")
		break
	}
	board, err := os.ReadFile("../docs/grafana-loom.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`loom_(?:rm|nm)_[a-z_]+`).FindAllString(string(board), -1) {
		family := strings.TrimSuffix(name, "_bucket")
		if len(rm[family]) == 0 && len(nmSeries[family]) == 0 {
			t.Errorf("docs/grafana-loom.json asks for %s, which no daemon exports", name)
		}
	}

	// Without a certificate of the cluster's CA there is no scrape.
	if _, err := http.Get("https://" + c.httpAddr + "/metrics"); err == nil {
		t.Error("a client without the cluster's CA scraped the RM")
	}
}
