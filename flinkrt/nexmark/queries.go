package nexmark

import (
	"math"
	"slices"
	"time"

	"github.com/loom-project/loom/flinkrt/state"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
)

// Events is the generator's stream with event times and watermarks: each
// subtask's times increase, so the watermark follows them.
func Events(env *stream.Env, c Config) stream.DataStream[Event] {
	src := stream.FromSource(env, "nexmark", Source(c)).UID("nexmark")
	return stream.AssignTimestampsAndWatermarks(src, stream.ForMonotonousTimestamps(Event.Time))
}

// Bids, Persons and Auctions are the events of one kind.
func Bids(events stream.DataStream[Event]) stream.DataStream[Bid] {
	return stream.Map(events.Filter("bids", func(e Event) bool { return e.Kind == KindBid }), "bid", func(e Event) Bid { return e.Bid })
}

func Persons(events stream.DataStream[Event]) stream.DataStream[Person] {
	return stream.Map(events.Filter("persons", func(e Event) bool { return e.Kind == KindPerson }), "person", func(e Event) Person { return e.Person })
}

func Auctions(events stream.DataStream[Event]) stream.DataStream[Auction] {
	return stream.Map(events.Filter("auctions", func(e Event) bool { return e.Kind == KindAuction }), "auction", func(e Event) Auction { return e.Auction })
}

// Q0 passes every bid through: the cost of reading and writing.
func Q0(events stream.DataStream[Event]) stream.DataStream[Bid] { return Bids(events) }

// Q1Result is a bid with its price in euros.
type Q1Result struct {
	Auction, Bidder int64
	Price           float64
	DateTime        int64
}

// Q1 converts every bid's price from dollars to euros (0.908).
func Q1(events stream.DataStream[Event]) stream.DataStream[Q1Result] {
	return stream.Map(Bids(events), "q1 euros", func(b Bid) Q1Result {
		return Q1Result{b.Auction, b.Bidder, 0.908 * float64(b.Price), b.DateTime}
	})
}

// Q2Result is a bid's auction and price.
type Q2Result struct{ Auction, Price int64 }

// Q2 selects the bids on auctions whose id is a multiple of 123.
func Q2(events stream.DataStream[Event]) stream.DataStream[Q2Result] {
	sel := Bids(events).Filter("q2 auction % 123", func(b Bid) bool { return b.Auction%123 == 0 })
	return stream.Map(sel, "q2", func(b Bid) Q2Result { return Q2Result{b.Auction, b.Price} })
}

// Q3Result is a seller of category 10 in Oregon, Idaho or California,
// and one of their auctions.
type Q3Result struct {
	Name, City, State string
	Auction           int64
}

// Q3 joins, as they come, the auctions of category 10 with their sellers
// from OR, ID or CA (an incremental join on seller = person id).
func Q3(events stream.DataStream[Event]) stream.DataStream[Q3Result] {
	persons := Persons(events).Filter("q3 states", func(p Person) bool { return p.State == "OR" || p.State == "ID" || p.State == "CA" })
	auctions := Auctions(events).Filter("q3 category 10", func(a Auction) bool { return a.Category == 10 })
	c := stream.KeyByConnected(stream.Connect(auctions, persons), func(a Auction) int64 { return a.Seller }, func(p Person) int64 { return p.ID })
	return stream.CoProcess(c, "q3 join", func() stream.KeyedCoProcessFunction[int64, Auction, Person, Q3Result] { return &q3Join{} })
}

type q3Join struct {
	seller  *state.Value[int64, Person]
	pending *state.List[int64, Auction]
}

func (j *q3Join) Open(ctx *stream.KeyedContext[int64]) error {
	j.seller = stream.ValueState[Person](ctx, "seller")
	j.pending = stream.ListState[Auction](ctx, "auctions")
	return nil
}

func (j *q3Join) ProcessElement1(_ *stream.KeyedContext[int64], a Auction, out stream.Collector[Q3Result]) error {
	if p, ok := j.seller.Get(); ok {
		out.Collect(Q3Result{p.Name, p.City, p.State, a.ID})
		return nil
	}
	j.pending.Add(a)
	return nil
}

func (j *q3Join) ProcessElement2(_ *stream.KeyedContext[int64], p Person, out stream.Collector[Q3Result]) error {
	j.seller.Update(p)
	for _, a := range j.pending.Get() {
		out.Collect(Q3Result{p.Name, p.City, p.State, a.ID})
	}
	j.pending.Clear()
	return nil
}

// Q4Result is the average closing price of a category's auctions so far.
type Q4Result struct {
	Category int64
	Average  float64
	Auctions int64
}

// Q4 is the average winning price per category: each auction's highest
// bid made between its start and its end, taken when it closes, then
// averaged per category as auctions close.
func Q4(events stream.DataStream[Event]) stream.DataStream[Q4Result] {
	c := stream.KeyByConnected(stream.Connect(Auctions(events), Bids(events)), func(a Auction) int64 { return a.ID }, func(b Bid) int64 { return b.Auction })
	closed := stream.CoProcess(c, "q4 winning bids", func() stream.KeyedCoProcessFunction[int64, Auction, Bid, Q4Result] { return &q4Winning{} })
	return stream.Reduce(stream.KeyBy(closed, func(r Q4Result) int64 { return r.Category }), "q4 average", func(acc, r Q4Result) Q4Result {
		n := acc.Auctions + r.Auctions
		return Q4Result{acc.Category, (acc.Average*float64(acc.Auctions) + r.Average*float64(r.Auctions)) / float64(n), n}
	})
}

// q4Winning keeps, per auction, its highest bid in [start, expires], and
// emits it (as an average over one auction) when the watermark passes
// the auction's end. Bids that come before their auction wait for it
// until the watermark passes their own time: an auction made after a bid
// cannot take it.
type q4Winning struct {
	auction *state.Value[int64, Auction]
	best    *state.Value[int64, int64]
	early   *state.List[int64, Bid]
}

func (q *q4Winning) Open(ctx *stream.KeyedContext[int64]) error {
	q.auction = stream.ValueState[Auction](ctx, "auction")
	q.best = stream.ValueState[int64](ctx, "best")
	q.early = stream.ListState[Bid](ctx, "early bids")
	return nil
}

func (q *q4Winning) take(a Auction, b Bid) {
	if b.DateTime < a.DateTime || b.DateTime > a.Expires {
		return
	}
	if best, ok := q.best.Get(); !ok || b.Price > best {
		q.best.Update(b.Price)
	}
}

func (q *q4Winning) ProcessElement1(ctx *stream.KeyedContext[int64], a Auction, _ stream.Collector[Q4Result]) error {
	q.auction.Update(a)
	for _, b := range q.early.Get() {
		q.take(a, b)
	}
	q.early.Clear()
	ctx.RegisterEventTimeTimer(a.Expires)
	return nil
}

func (q *q4Winning) ProcessElement2(ctx *stream.KeyedContext[int64], b Bid, _ stream.Collector[Q4Result]) error {
	if a, ok := q.auction.Get(); ok {
		q.take(a, b)
		return nil
	}
	q.early.Add(b)
	ctx.RegisterEventTimeTimer(b.DateTime)
	return nil
}

func (q *q4Winning) OnTimer(_ *stream.KeyedContext[int64], ts int64, out stream.Collector[Q4Result]) error {
	a, ok := q.auction.Get()
	if !ok {
		// No auction came by the bids' times: they can join none.
		kept := slices.DeleteFunc(slices.Clone(q.early.Get()), func(b Bid) bool { return b.DateTime <= ts })
		q.early.Update(kept)
		return nil
	}
	if ts < a.Expires {
		return nil
	}
	if best, ok := q.best.Get(); ok {
		out.Collect(Q4Result{Category: a.Category, Average: float64(best), Auctions: 1})
	}
	q.auction.Clear()
	q.best.Clear()
	return nil
}

// Q5Result is an auction with the most bids of a sliding window.
type Q5Result struct {
	Auction, Bids int64
	WindowStart   int64
}

// Q5 finds the hot items: in every 10 s window sliding by 2 s, the
// auctions with the most bids.
func Q5(events stream.DataStream[Event]) stream.DataStream[Q5Result] {
	w := stream.Window(stream.KeyBy(Bids(events), func(b Bid) int64 { return b.Auction }), stream.SlidingEventTimeWindows(10*time.Second, 2*time.Second))
	counts := stream.AggregateWindow(w, "q5 bids per auction", stream.AggregateFunction[Bid, int64, int64]{
		Create: func() int64 { return 0 },
		Add:    func(n int64, _ Bid) int64 { return n + 1 },
		Result: func(n int64) int64 { return n },
		Merge:  func(a, b int64) int64 { return a + b },
	}, func(auction int64, win stream.TimeWindow, n int64, out stream.Collector[Q5Result]) {
		out.Collect(Q5Result{auction, n, win.Start})
	})
	return stream.Process(stream.KeyBy(counts, func(r Q5Result) int64 { return r.WindowStart }), "q5 hottest",
		func() stream.KeyedProcessFunction[int64, Q5Result, Q5Result] { return &q5Hottest{} })
}

// q5Hottest gathers a window's counts (they carry the window's last
// millisecond as their time) and, once the watermark passes it, emits
// the auctions with the highest.
type q5Hottest struct{ counts *state.List[int64, Q5Result] }

func (q *q5Hottest) Open(ctx *stream.KeyedContext[int64]) error {
	q.counts = stream.ListState[Q5Result](ctx, "counts")
	return nil
}

func (q *q5Hottest) ProcessElement(ctx *stream.KeyedContext[int64], r Q5Result, _ stream.Collector[Q5Result]) error {
	q.counts.Add(r)
	ctx.RegisterEventTimeTimer(ctx.Timestamp())
	return nil
}

func (q *q5Hottest) OnTimer(_ *stream.KeyedContext[int64], _ int64, out stream.Collector[Q5Result]) error {
	counts := q.counts.Get()
	most := int64(0)
	for _, r := range counts {
		most = max(most, r.Bids)
	}
	for _, r := range counts {
		if r.Bids == most {
			out.Collect(r)
		}
	}
	q.counts.Clear()
	return nil
}

// Q7 finds the highest bids: in every 10 s tumbling window, the bids
// with the window's highest price. Each window keeps only the bids at
// the highest price so far, not all its bids.
func Q7(events stream.DataStream[Event]) stream.DataStream[Bid] {
	const size = 10_000
	w := stream.Window(stream.KeyBy(Bids(events), func(b Bid) int64 { return b.DateTime / size }), stream.TumblingEventTimeWindows(size*time.Millisecond))
	return stream.AggregateWindow(w, "q7 highest bids", stream.AggregateFunction[Bid, topBids, []Bid]{
		Create: func() topBids { return topBids{Price: math.MinInt64} },
		Add: func(t topBids, b Bid) topBids {
			switch {
			case b.Price > t.Price:
				return topBids{Price: b.Price, Bids: append(t.Bids[:0], b)}
			case b.Price == t.Price:
				t.Bids = append(t.Bids, b)
			}
			return t
		},
		Result: func(t topBids) []Bid { return t.Bids },
	}, func(_ int64, _ stream.TimeWindow, top []Bid, out stream.Collector[Bid]) {
		for _, b := range top {
			out.Collect(b)
		}
	})
}

// topBids are the bids at the highest price of a window so far.
type topBids struct {
	Price int64
	Bids  []Bid
}

// Q8Result is a person who opened an auction in the 10 s window they
// joined in.
type Q8Result struct {
	ID          int64
	Name        string
	WindowStart int64
}

// Q8 monitors new users: the persons who opened an auction in the same
// 10 s tumbling window as they joined.
func Q8(events stream.DataStream[Event]) stream.DataStream[Q8Result] {
	j := stream.Join(Persons(events), Auctions(events), func(p Person) int64 { return p.ID }, func(a Auction) int64 { return a.Seller })
	w := j.Window(stream.TumblingEventTimeWindows(10 * time.Second))
	return stream.ProcessWindow(w, "q8 new sellers", func(id int64, win stream.TimeWindow, elems []stream.Either[Person, Auction], out stream.Collector[Q8Result]) {
		var person *Person
		sold := false
		for i := range elems {
			if elems[i].IsRight {
				sold = true
			} else if person == nil {
				person = &elems[i].Left
			}
		}
		if person != nil && sold {
			out.Collect(Q8Result{id, person.Name, win.Start})
		}
	})
}

// Queries are the queries by name. Each adds its query to the events
// and a sink for its results: dropped with discard, else written as text
// to the directory output, or printed when output is "".
var Queries = map[string]func(events stream.DataStream[Event], output string, discard bool){
	"q0": query(Q0),
	"q1": query(Q1),
	"q2": query(Q2),
	"q3": query(Q3),
	"q4": query(Q4),
	"q5": query(Q5),
	"q7": query(Q7),
	"q8": query(Q8),
}

func query[T any](q func(stream.DataStream[Event]) stream.DataStream[T]) func(stream.DataStream[Event], string, bool) {
	return func(e stream.DataStream[Event], output string, discard bool) {
		results := q(e)
		switch {
		case discard:
			stream.Sink(results, "discard", sink.Discard[T]())
		case output != "":
			stream.Sink(results, "results", sink.TextFile[T](output)).UID("results")
		default:
			stream.Print(results)
		}
	}
}
