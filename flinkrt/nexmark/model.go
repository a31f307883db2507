// Package nexmark is the Nexmark streaming benchmark for loom: its event
// generator (persons, auctions and bids, with the rates, proportions and
// distributions of the Nexmark generator Beam and Flink use, deterministic
// by seed) as a loom source, and its queries q0 to q8 as loom jobs.
package nexmark

import "fmt"

// The kinds of Event.
const (
	KindPerson int8 = iota
	KindAuction
	KindBid
)

// Event is one Nexmark event: a new person, a new auction or a bid, as
// the Event of Flink's nexmark (one of the three is set, by Kind).
type Event struct {
	Kind    int8
	Person  Person
	Auction Auction
	Bid     Bid
}

// Time is the event's time in epoch milliseconds.
func (e Event) Time() int64 {
	switch e.Kind {
	case KindPerson:
		return e.Person.DateTime
	case KindAuction:
		return e.Auction.DateTime
	}
	return e.Bid.DateTime
}

// Person is someone who joined the auction site.
type Person struct {
	ID           int64
	Name         string
	EmailAddress string
	CreditCard   string
	City         string
	State        string
	DateTime     int64
	Extra        string
}

// Auction is an item put up for auction.
type Auction struct {
	ID          int64
	ItemName    string
	Description string
	InitialBid  int64
	Reserve     int64
	DateTime    int64
	Expires     int64
	Seller      int64
	Category    int64
	Extra       string
}

// Bid is a bid on an auction.
type Bid struct {
	Auction  int64
	Bidder   int64
	Price    int64
	Channel  string
	URL      string
	DateTime int64
	Extra    string
}

func (p Person) String() string {
	return fmt.Sprintf("Person{%d %s %s %s}", p.ID, p.Name, p.City, p.State)
}
func (a Auction) String() string {
	return fmt.Sprintf("Auction{%d seller %d category %d %d..%d}", a.ID, a.Seller, a.Category, a.DateTime, a.Expires)
}
func (b Bid) String() string {
	return fmt.Sprintf("Bid{auction %d bidder %d price %d at %d}", b.Auction, b.Bidder, b.Price, b.DateTime)
}
