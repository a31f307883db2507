// Command loom is a YARN-style resource-negotiation platform with a
// Flink-style streaming runtime.
package main

import (
	"os"

	"loom/cli"
)

func main() { cli.Main(os.Args) }
