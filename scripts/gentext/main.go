// gentext writes a text of the given size for the streaming benchmarks:
// lines of words drawn from a vocabulary of common words and numbered
// ones, and prints how many words it wrote.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
)

var common = []string{"the", "and", "to", "of", "i", "you", "a", "my", "it", "in", "that", "is", "not", "with", "me", "be", "his", "your", "this", "but"}

func main() {
	size := flag.Int64("size", 64<<20, "bytes to write")
	out := flag.String("out", "text.txt", "file to write")
	vocab := flag.Int("vocab", 5000, "numbered words in the vocabulary")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	var n, words int64
	for n < *size {
		for i := 0; i < 10; i++ {
			var k int
			if r.IntN(2) == 0 {
				k, _ = fmt.Fprintf(w, "%s ", common[r.IntN(len(common))])
			} else {
				k, _ = fmt.Fprintf(w, "Word%d ", r.IntN(*vocab))
			}
			n += int64(k)
			words++
		}
		_ = w.WriteByte('\n')
		n++
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f.Close()
	fmt.Println(words)
}
