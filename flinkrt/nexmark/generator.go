package nexmark

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/loom-project/loom/flinkrt/stream/source"
)

// Config is the generator's configuration, with Nexmark's defaults
// (NexmarkConfiguration of Beam and Flink's nexmark).
type Config struct {
	// Events is how many events to make; -1 for no end.
	Events int64
	// Rate is the events per second of event time: event i happens at
	// BaseTime + i/Rate seconds.
	Rate float64
	// BaseTime is the time of the first event, epoch ms.
	BaseTime int64
	// Seed makes a run's events; the same seed makes the same events.
	Seed uint64
	// NumActivePeople, NumInFlightAuctions, HotAuctionRatio,
	// HotSellersRatio, HotBiddersRatio: Nexmark's skew settings.
	NumActivePeople     int64
	NumInFlightAuctions int64
	HotAuctionRatio     int
	HotSellersRatio     int
	HotBiddersRatio     int
	// AvgPersonByteSize, AvgAuctionByteSize, AvgBidByteSize pad each
	// event's Extra to about this size.
	AvgPersonByteSize, AvgAuctionByteSize, AvgBidByteSize int
}

// DefaultConfig is Nexmark's default generator configuration, with an
// end after events.
func DefaultConfig(events int64) Config {
	return Config{
		Events:              events,
		Rate:                10_000_000,
		BaseTime:            1_700_000_000_000,
		Seed:                1,
		NumActivePeople:     1000,
		NumInFlightAuctions: 100,
		HotAuctionRatio:     2,
		HotSellersRatio:     4,
		HotBiddersRatio:     4,
		AvgPersonByteSize:   200,
		AvgAuctionByteSize:  500,
		AvgBidByteSize:      100,
	}
}

// Nexmark's fixed proportions and id bases: of every 50 events, 1 is a
// new person, 3 are new auctions and 46 are bids.
const (
	personProportion  = 1
	auctionProportion = 3
	bidProportion     = 46
	totalProportion   = personProportion + auctionProportion + bidProportion

	firstPersonID   = 1000
	firstAuctionID  = 1000
	firstCategoryID = 10
	numCategories   = 5
	personIDLead    = 10
	auctionIDLead   = 10
)

var (
	usStates   = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	channels   = []string{"Google", "Facebook", "Baidu", "Apple"}
)

// Validate checks a configuration.
func (c Config) Validate() error {
	switch {
	case c.Rate <= 0:
		return fmt.Errorf("nexmark: rate %v: want a positive number of events per second", c.Rate)
	case c.Events < -1:
		return fmt.Errorf("nexmark: %d events: want -1 (no end) or more", c.Events)
	case c.NumActivePeople < 1 || c.NumInFlightAuctions < 1:
		return fmt.Errorf("nexmark: want at least one active person and one auction in flight")
	case c.HotAuctionRatio < 1 || c.HotSellersRatio < 1 || c.HotBiddersRatio < 1:
		return fmt.Errorf("nexmark: hot ratios must be at least 1")
	}
	return nil
}

// timeOf is the event time of event i.
func (c Config) timeOf(i int64) int64 {
	return c.BaseTime + int64(float64(i)*1000/c.Rate)
}

// Event makes event i of the configuration's stream: the same i and seed
// make the same event in every process.
func (c Config) Event(i int64) Event {
	r := rand.New(rand.NewPCG(c.Seed, uint64(i)))
	ts := c.timeOf(i)
	switch offset := i % totalProportion; {
	case offset < personProportion:
		return Event{Kind: KindPerson, Person: c.person(i, ts, r)}
	case offset < personProportion+auctionProportion:
		return Event{Kind: KindAuction, Auction: c.auction(i, ts, r)}
	default:
		return Event{Kind: KindBid, Bid: c.bid(i, ts, r)}
	}
}

func lastBase0PersonID(i int64) int64 {
	epoch, offset := i/totalProportion, i%totalProportion
	if offset >= personProportion {
		offset = personProportion - 1
	}
	return epoch*personProportion + offset
}

func lastBase0AuctionID(i int64) int64 {
	epoch, offset := i/totalProportion, i%totalProportion
	switch {
	case offset < personProportion:
		epoch--
		offset = auctionProportion - 1
	case offset >= personProportion+auctionProportion:
		offset = auctionProportion - 1
	default:
		offset -= personProportion
	}
	return epoch*auctionProportion + offset
}

func (c Config) nextBase0PersonID(i int64, r *rand.Rand) int64 {
	numPeople := lastBase0PersonID(i) + 1
	active := min(numPeople, c.NumActivePeople)
	return numPeople - active + r.Int64N(active+personIDLead)
}

func (c Config) nextBase0AuctionID(i int64, r *rand.Rand) int64 {
	maxAuction := lastBase0AuctionID(i)
	minAuction := max(maxAuction-c.NumInFlightAuctions, 0)
	return minAuction + r.Int64N(maxAuction-minAuction+1+auctionIDLead)
}

// nextPrice is Nexmark's price distribution: 1 to 10^6 dollars, in
// cents, log-uniform.
func nextPrice(r *rand.Rand) int64 {
	return int64(math.Round(math.Pow(10, r.Float64()*6) * 100))
}

// auctionLength is how long an auction lasts: about as long as it takes
// NumInFlightAuctions auctions to be made, so that that many are open.
func (c Config) auctionLength(r *rand.Rand) int64 {
	avg := float64(c.NumInFlightAuctions) * totalProportion / auctionProportion * 1000 / c.Rate
	return int64(avg/2 + r.Float64()*avg)
}

func padding(r *rand.Rand, have, want int) string {
	if have >= want {
		return ""
	}
	var b strings.Builder
	for range want - have {
		b.WriteByte(byte('a' + r.IntN(26)))
	}
	return b.String()
}

func (c Config) person(i, ts int64, r *rand.Rand) Person {
	p := Person{
		ID:       lastBase0PersonID(i) + firstPersonID,
		Name:     firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))],
		City:     usCities[r.IntN(len(usCities))],
		State:    usStates[r.IntN(len(usStates))],
		DateTime: ts,
	}
	p.EmailAddress = fmt.Sprintf("%s@%s.com", strings.ToLower(strings.ReplaceAll(p.Name, " ", ".")), lastNames[r.IntN(len(lastNames))])
	p.CreditCard = fmt.Sprintf("%04d %04d %04d %04d", r.IntN(10000), r.IntN(10000), r.IntN(10000), r.IntN(10000))
	p.Extra = padding(r, len(p.Name)+len(p.EmailAddress)+len(p.CreditCard)+len(p.City)+len(p.State)+16, c.AvgPersonByteSize)
	return p
}

func (c Config) auction(i, ts int64, r *rand.Rand) Auction {
	seller := int64(0)
	if r.IntN(c.HotSellersRatio) > 0 {
		seller = lastBase0PersonID(i) / int64(c.HotSellersRatio) * int64(c.HotSellersRatio)
	} else {
		seller = c.nextBase0PersonID(i, r)
	}
	a := Auction{
		ID:       lastBase0AuctionID(i) + firstAuctionID,
		Seller:   seller + firstPersonID,
		Category: firstCategoryID + int64(r.IntN(numCategories)),
		DateTime: ts,
	}
	a.InitialBid = nextPrice(r)
	a.Reserve = a.InitialBid + nextPrice(r)
	a.Expires = ts + c.auctionLength(r)
	a.ItemName = fmt.Sprintf("item-%d", r.IntN(100000))
	a.Description = fmt.Sprintf("description of item %d", r.IntN(100000))
	a.Extra = padding(r, len(a.ItemName)+len(a.Description)+48, c.AvgAuctionByteSize)
	return a
}

func (c Config) bid(i, ts int64, r *rand.Rand) Bid {
	var auction, bidder int64
	if r.IntN(c.HotAuctionRatio) > 0 {
		auction = lastBase0AuctionID(i) / int64(c.HotAuctionRatio) * int64(c.HotAuctionRatio)
	} else {
		auction = c.nextBase0AuctionID(i, r)
	}
	if r.IntN(c.HotBiddersRatio) > 0 {
		bidder = lastBase0PersonID(i)/int64(c.HotBiddersRatio)*int64(c.HotBiddersRatio) + 1
	} else {
		bidder = c.nextBase0PersonID(i, r)
	}
	b := Bid{
		Auction:  auction + firstAuctionID,
		Bidder:   bidder + firstPersonID,
		Price:    nextPrice(r),
		Channel:  channels[r.IntN(len(channels))],
		DateTime: ts,
	}
	b.URL = fmt.Sprintf("https://www.nexmark.com/%s/item.htm?query=1&channel_id=%d", strings.ToLower(b.Channel), r.IntN(1000))
	b.Extra = padding(r, len(b.Channel)+len(b.URL)+32, c.AvgBidByteSize)
	return b
}

// Source is the generator as a loom source: subtask s of p makes events
// s, s+p, s+2p, … (each subtask's times increase), resumes after a
// restore from the next event it had to make, and stops after the
// configuration's events.
func Source(c Config) source.Source[Event] { return generator{c} }

type generator struct{ c Config }

func (g generator) Describe() string    { return "Nexmark" }
func (g generator) MaxParallelism() int { return 0 }

func (g generator) Run(ctx source.Context[Event]) error {
	if err := g.c.Validate(); err != nil {
		return err
	}
	p, s := int64(ctx.Parallelism()), int64(ctx.Subtask())
	next := s
	if b := ctx.Restored(); b != nil {
		v, n := binary.Varint(b)
		if n <= 0 || v < s || (v-s)%p != 0 {
			return fmt.Errorf("nexmark: the restored position %d is not one of this subtask's events", v)
		}
		next = v
	}
	ctx.Checkpointed(func() []byte { return binary.AppendVarint(nil, next) })
	for n := 0; g.c.Events < 0 || next < g.c.Events; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		e := g.c.Event(next)
		ctx.CollectWithTimestamp(e, e.Time())
		next += p
	}
	return nil
}
