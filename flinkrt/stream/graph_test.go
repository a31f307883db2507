package stream_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/proto/flinkpb"
)

func vertexNames(jg *flinkpb.JobGraph) []string {
	var names []string
	for _, v := range jg.Vertices {
		names = append(names, v.Name)
	}
	return names
}

func ident[T any](v T) T { return v }

func TestChainingAndSlots(t *testing.T) {
	cases := []struct {
		name     string
		build    func(env *stream.Env)
		vertices []string
		slots    int
	}{{
		// Flink's "Tasks and Operator Chains": source and map chain; the
		// keyed window does not (hash edge); the sink at parallelism 1 does not.
		name: "flink docs example",
		build: func(env *stream.Env) {
			env.SetParallelism(2)
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src, "map", ident[int64])
			r := stream.Reduce(stream.KeyBy(m, ident[int64]), "window", func(a, b int64) int64 { return a + b })
			stream.Sink(r, "sink", sink.Discard[int64]()).SetParallelism(1)
		},
		vertices: []string{"Source: src -> map", "window", "Sink: sink"},
		slots:    2,
	}, {
		name: "same parallelism forward chains all",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			f := src.Filter("filter", func(int64) bool { return true })
			stream.Sink(stream.Map(f, "map", ident[int64]), "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: src -> filter -> map -> Sink: out"},
		slots:    4,
	}, {
		name: "parallelism change breaks the chain with rebalance",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src, "map", ident[int64]).SetParallelism(2)
			stream.Sink(m, "out", sink.Discard[int64]()).SetParallelism(2)
		},
		vertices: []string{"Source: src", "map -> Sink: out"},
		slots:    4,
	}, {
		name: "disableChaining isolates the operator",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src, "map", ident[int64]).DisableChaining()
			stream.Sink(stream.Map(m, "map2", ident[int64]), "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: src", "map", "map2 -> Sink: out"},
		slots:    4,
	}, {
		name: "startNewChain starts a chain that the next operators join",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src, "map", ident[int64]).StartNewChain()
			stream.Sink(stream.Map(m, "map2", ident[int64]), "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: src", "map -> map2 -> Sink: out"},
		slots:    4,
	}, {
		name: "an operator with two inputs is a chain head",
		build: func(env *stream.Env) {
			a := stream.FromSource(env, "a", source.Sequence(1, 10))
			b := stream.FromSource(env, "b", source.Sequence(1, 10))
			stream.Sink(stream.Map(stream.Union(a, b), "map", ident[int64]), "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: a", "Source: b", "map -> Sink: out"},
		slots:    4,
	}, {
		name: "slot sharing groups add up",
		build: func(env *stream.Env) {
			env.SetParallelism(2)
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src.Rebalance(), "map", ident[int64]).SetParallelism(3).SlotSharingGroup("heavy")
			stream.Sink(m, "out", sink.Discard[int64]()) // inherits "heavy", parallelism 2
		},
		vertices: []string{"Source: src", "map", "Sink: out"},
		slots:    2 + 3,
	}, {
		name: "different slot sharing groups never chain",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			m := stream.Map(src, "map", ident[int64]).SlotSharingGroup("other")
			stream.Sink(m, "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: src", "map -> Sink: out"},
		slots:    8,
	}, {
		name: "chaining disabled for the job",
		build: func(env *stream.Env) {
			env.DisableOperatorChaining()
			src := stream.FromSource(env, "src", source.Sequence(1, 10))
			stream.Sink(stream.Map(src, "map", ident[int64]), "out", sink.Discard[int64]())
		},
		vertices: []string{"Source: src", "map", "Sink: out"},
		slots:    4,
	}, {
		name: "a non-splittable source runs once and rebalances",
		build: func(env *stream.Env) {
			src := stream.FromSource(env, "socket", source.Socket("127.0.0.1:1"))
			stream.Sink(stream.Map(src, "map", ident[string]), "out", sink.Discard[string]())
		},
		vertices: []string{"Source: socket", "map -> Sink: out"},
		slots:    4,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := stream.NewEnv().SetParallelism(4)
			tc.build(env)
			_, jg, err := env.Plan("job")
			if err != nil {
				t.Fatal(err)
			}
			if got := vertexNames(jg); strings.Join(got, " | ") != strings.Join(tc.vertices, " | ") {
				t.Fatalf("vertices\n got %q\nwant %q", got, tc.vertices)
			}
			if int(jg.Slots) != tc.slots {
				t.Fatalf("slots = %d, want %d", jg.Slots, tc.slots)
			}
			if err := graph.Validate(jg); err != nil {
				t.Fatalf("a built graph does not validate: %v", err)
			}
		})
	}
}

func TestForwardAcrossParallelismIsRefused(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "src", source.Sequence(1, 10))
	stream.Sink(stream.Map(src.Forward(), "map", ident[int64]).SetParallelism(3), "out", sink.Discard[int64]())
	_, _, err := env.Plan("job")
	if err == nil || !strings.Contains(err.Error(), "forward partitioning does not allow change of parallelism") {
		t.Fatalf("err = %v", err)
	}
}

func buildJob(uid, name string) *flinkpb.JobGraph {
	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "src", source.Sequence(1, 10))
	m := stream.Map(src, name, ident[int64])
	if uid != "" {
		m = m.UID(uid)
	}
	stream.Sink(stream.Sum(stream.KeyBy(m, ident[int64]), ""), "out", sink.Discard[int64]())
	_, jg, err := env.Plan("job")
	if err != nil {
		panic(err)
	}
	return jg
}

func opIDs(jg *flinkpb.JobGraph) []string {
	var ids []string
	for _, v := range jg.Vertices {
		for _, op := range v.Operators {
			ids = append(ids, op.Id)
		}
	}
	return ids
}

func TestOperatorIDsAreStable(t *testing.T) {
	a, b := buildJob("", "map"), buildJob("", "map")
	if a.Fingerprint != b.Fingerprint || strings.Join(opIDs(a), ",") != strings.Join(opIDs(b), ",") {
		t.Fatal("the same program built twice gave different ids or fingerprints")
	}
	renamed := buildJob("", "renamed")
	if strings.Join(opIDs(a), ",") != strings.Join(opIDs(renamed), ",") {
		t.Fatal("renaming an operator changed operator ids")
	}
	if a.Fingerprint == renamed.Fingerprint {
		t.Fatal("renaming an operator kept the fingerprint")
	}
	u1, u2 := buildJob("mapper", "map"), buildJob("mapper", "other-name")
	if opIDs(u1)[1] != opIDs(u2)[1] || opIDs(u1)[1] == opIDs(a)[1] {
		t.Fatal("a UID does not fix the operator id")
	}
}

func TestDuplicateUIDIsRefused(t *testing.T) {
	env := stream.NewEnv()
	src := stream.FromSource(env, "src", source.Sequence(1, 10)).UID("x")
	stream.Sink(stream.Map(src, "map", ident[int64]).UID("x"), "out", sink.Discard[int64]())
	if _, _, err := env.Plan("job"); err == nil || !strings.Contains(err.Error(), `UID "x"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidateRefusesMalformedGraphs(t *testing.T) {
	good := buildJob("", "map")
	cases := map[string]func(jg *flinkpb.JobGraph){
		"changed after build":   func(jg *flinkpb.JobGraph) { jg.Vertices[0].Parallelism = 3 },
		"no vertices":           func(jg *flinkpb.JobGraph) { jg.Vertices = nil },
		"bad vertex id":         func(jg *flinkpb.JobGraph) { jg.Vertices[0].Id = "xyz" },
		"unknown edge vertex":   func(jg *flinkpb.JobGraph) { jg.Edges[0].TargetVertex = strings.Repeat("0", 32) },
		"unknown partitioner":   func(jg *flinkpb.JobGraph) { jg.Edges[0].Partitioner = "ROUND" },
		"wrong slot count":      func(jg *flinkpb.JobGraph) { jg.Slots = 99 },
		"parallelism above max": func(jg *flinkpb.JobGraph) { jg.Vertices[0].Parallelism = 1 << 20 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			jg := proto.Clone(good).(*flinkpb.JobGraph)
			mutate(jg)
			if name != "changed after build" && name != "no vertices" {
				jg.Fingerprint = graph.Fingerprint(jg)
			}
			if err := graph.Validate(jg); err == nil {
				t.Fatal("a malformed graph validated")
			}
		})
	}
}

func TestExecuteWithoutSinkIsRefused(t *testing.T) {
	env := stream.NewEnv()
	stream.Map(stream.FromSource(env, "src", source.Sequence(1, 10)), "map", ident[int64])
	if _, err := env.Execute("job"); err == nil || !strings.Contains(err.Error(), "no sink") {
		t.Fatalf("err = %v", err)
	}
}
