// Command memhog allocates and touches the given number of megabytes,
// then sleeps: a container that goes over its memory limit.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	mb := flag.Int("mb", 256, "megabytes to allocate")
	hold := flag.Duration("hold", time.Minute, "how long to hold them")
	flag.Parse()
	var blocks [][]byte
	for i := 0; i < *mb; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		blocks = append(blocks, b)
	}
	fmt.Fprintf(os.Stdout, "holding %d MB\n", len(blocks))
	time.Sleep(*hold)
}
