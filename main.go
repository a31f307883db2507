// Command loom is a YARN-style resource-negotiation platform with a
// Flink-style streaming runtime.
package main

import (
	"os"

	"github.com/loom-project/loom/cli"
)

func main() { cli.Main(os.Args) }
