package nexmark_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/loom-project/loom/flinkrt/nexmark"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
)

// small is a seeded stream of 20,000 events over 20 s of event time.
func small() nexmark.Config {
	c := nexmark.DefaultConfig(20_000)
	c.Rate = 1000
	c.BaseTime = 1_700_000_000_000
	c.Seed = 7
	return c
}

// all is the stream's events, one after the other.
func all(c nexmark.Config) []nexmark.Event {
	var evs []nexmark.Event
	for i := range c.Events {
		evs = append(evs, c.Event(i))
	}
	return evs
}

// runQuery runs a query in-process at parallelism 4 and returns its
// results as sorted strings.
func runQuery[T any](t *testing.T, c nexmark.Config, q func(stream.DataStream[nexmark.Event]) stream.DataStream[T]) []string {
	t.Helper()
	env := stream.NewEnv().SetParallelism(4)
	out := sink.Collect[T]()
	stream.Sink(q(nexmark.Events(env, c)), "collect", out)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	return sorted(out.Values())
}

func sorted[T any](vs []T) []string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	slices.Sort(s)
	return s
}

func check(t *testing.T, got, want []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the expected result is empty: the seeded stream is too small for the query")
	}
	if !slices.Equal(got, want) {
		n := 0
		for i := 0; i < max(len(got), len(want)) && n < 5; i++ {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("result %d: got %q, want %q", i, g, w)
				n++
			}
		}
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
}

func TestGeneratorIsDeterministicAndInProportion(t *testing.T) {
	c := small()
	a, b := all(c), all(c)
	if !slices.Equal(sorted(a), sorted(b)) {
		t.Fatal("the same seed made different events")
	}
	kinds := map[int8]int{}
	last := int64(0)
	for i, e := range a {
		kinds[e.Kind]++
		if e.Time() < last {
			t.Fatalf("event %d goes back in time", i)
		}
		last = e.Time()
	}
	if kinds[nexmark.KindPerson] != 400 || kinds[nexmark.KindAuction] != 1200 || kinds[nexmark.KindBid] != 18400 {
		t.Errorf("kinds %v, want Nexmark's 1:3:46", kinds)
	}
	if other := small(); func() bool { other.Seed = 8; return other.Event(123) == c.Event(123) }() {
		t.Error("another seed made the same event")
	}
}

func bids(evs []nexmark.Event) []nexmark.Bid {
	var out []nexmark.Bid
	for _, e := range evs {
		if e.Kind == nexmark.KindBid {
			out = append(out, e.Bid)
		}
	}
	return out
}

func TestQ0Q1Q2(t *testing.T) {
	c := small()
	evs := all(c)
	check(t, runQuery(t, c, nexmark.Q0), sorted(bids(evs)))

	var q1 []nexmark.Q1Result
	var q2 []nexmark.Q2Result
	for _, b := range bids(evs) {
		q1 = append(q1, nexmark.Q1Result{Auction: b.Auction, Bidder: b.Bidder, Price: 0.908 * float64(b.Price), DateTime: b.DateTime})
		if b.Auction%123 == 0 {
			q2 = append(q2, nexmark.Q2Result{Auction: b.Auction, Price: b.Price})
		}
	}
	check(t, runQuery(t, c, nexmark.Q1), sorted(q1))
	check(t, runQuery(t, c, nexmark.Q2), sorted(q2))
}

func TestQ3(t *testing.T) {
	c := small()
	persons := map[int64]nexmark.Person{}
	var auctions []nexmark.Auction
	for _, e := range all(c) {
		switch e.Kind {
		case nexmark.KindPerson:
			persons[e.Person.ID] = e.Person
		case nexmark.KindAuction:
			auctions = append(auctions, e.Auction)
		}
	}
	var want []nexmark.Q3Result
	for _, a := range auctions {
		p, ok := persons[a.Seller]
		if ok && a.Category == 10 && (p.State == "OR" || p.State == "ID" || p.State == "CA") {
			want = append(want, nexmark.Q3Result{Name: p.Name, City: p.City, State: p.State, Auction: a.ID})
		}
	}
	check(t, runQuery(t, c, nexmark.Q3), sorted(want))
}

func TestQ4(t *testing.T) {
	c := small()
	evs := all(c)
	best := map[int64]int64{}
	category := map[int64]int64{}
	byAuction := map[int64][]nexmark.Bid{}
	for _, b := range bids(evs) {
		byAuction[b.Auction] = append(byAuction[b.Auction], b)
	}
	for _, e := range evs {
		if e.Kind != nexmark.KindAuction {
			continue
		}
		a := e.Auction
		category[a.ID] = a.Category
		for _, b := range byAuction[a.ID] {
			if b.DateTime >= a.DateTime && b.DateTime <= a.Expires {
				if cur, ok := best[a.ID]; !ok || b.Price > cur {
					best[a.ID] = b.Price
				}
			}
		}
	}
	sum, n := map[int64]float64{}, map[int64]int64{}
	for id, p := range best {
		sum[category[id]] += float64(p)
		n[category[id]]++
	}
	env := stream.NewEnv().SetParallelism(4)
	out := sink.Collect[nexmark.Q4Result]()
	stream.Sink(nexmark.Q4(nexmark.Events(env, c)), "collect", out)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	// The running averages end at each category's average over every
	// auction with a winning bid.
	final := map[int64]nexmark.Q4Result{}
	for _, r := range out.Values() {
		if r.Auctions > final[r.Category].Auctions {
			final[r.Category] = r
		}
	}
	if len(final) != len(n) || len(n) == 0 {
		t.Fatalf("categories %v, want %v", final, n)
	}
	for cat, count := range n {
		want := sum[cat] / float64(count)
		got := final[cat]
		if got.Auctions != count || math.Abs(got.Average-want) > 1e-6*want {
			t.Errorf("category %d: %d auctions, average %.3f; want %d, %.3f", cat, got.Auctions, got.Average, count, want)
		}
	}
}

func TestQ5(t *testing.T) {
	c := small()
	type win struct{ start, auction int64 }
	counts := map[win]int64{}
	for _, b := range bids(all(c)) {
		// Windows of 10 s sliding by 2 s: the five starting in (t-10 s, t].
		last := b.DateTime - b.DateTime%2000
		for s := last; s > b.DateTime-10_000; s -= 2000 {
			counts[win{s, b.Auction}]++
		}
	}
	most := map[int64]int64{}
	for w, n := range counts {
		most[w.start] = max(most[w.start], n)
	}
	var want []nexmark.Q5Result
	for w, n := range counts {
		if n == most[w.start] {
			want = append(want, nexmark.Q5Result{Auction: w.auction, Bids: n, WindowStart: w.start})
		}
	}
	check(t, runQuery(t, c, nexmark.Q5), sorted(want))
}

func TestQ7(t *testing.T) {
	c := small()
	top := map[int64]int64{}
	bs := bids(all(c))
	for _, b := range bs {
		w := b.DateTime / 10_000
		if p, ok := top[w]; !ok || b.Price > p {
			top[w] = b.Price
		}
	}
	var want []nexmark.Bid
	for _, b := range bs {
		if b.Price == top[b.DateTime/10_000] {
			want = append(want, b)
		}
	}
	check(t, runQuery(t, c, nexmark.Q7), sorted(want))
}

func TestQ8(t *testing.T) {
	c := small()
	joined := map[[2]int64]string{} // (person, window) -> name
	sold := map[[2]int64]bool{}     // (seller, window)
	for _, e := range all(c) {
		switch e.Kind {
		case nexmark.KindPerson:
			joined[[2]int64{e.Person.ID, e.Person.DateTime / 10_000}] = e.Person.Name
		case nexmark.KindAuction:
			sold[[2]int64{e.Auction.Seller, e.Auction.DateTime / 10_000}] = true
		}
	}
	var want []nexmark.Q8Result
	for k, name := range joined {
		if sold[k] {
			want = append(want, nexmark.Q8Result{ID: k[0], Name: name, WindowStart: k[1] * 10_000})
		}
	}
	check(t, runQuery(t, c, nexmark.Q8), sorted(want))
}
