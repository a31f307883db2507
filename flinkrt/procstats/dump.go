package procstats

import (
	"os"
	"runtime"

	"github.com/loom-project/loom/proto/flinkpb"
)

// MaxDump bounds one process's goroutine dump.
const MaxDump = 1 << 20

// Dump is this process's goroutines, as runtime.Stack writes them, cut
// at MaxDump.
func Dump(name string) *flinkpb.ProcessDump {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return &flinkpb.ProcessDump{Name: name, Pid: int32(os.Getpid()), Goroutines: string(buf[:n])}
		}
		if len(buf) >= MaxDump {
			return &flinkpb.ProcessDump{Name: name, Pid: int32(os.Getpid()), Goroutines: string(buf[:n]), Truncated: true}
		}
		buf = make([]byte, min(2*len(buf), MaxDump))
	}
}
