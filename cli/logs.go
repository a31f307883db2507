package cli

import (
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/flinkrt/logfile"
)

var logDirFlag = &cli.StringFlag{Name: "log-dir", Usage: "also keep the log (ROLE.log) and standard output (ROLE.out) in this directory, each rolled over at 64 MiB, for the dashboard's log pages"}

// daemonLogs are where a standalone JobManager's or TaskManager's log and
// output go: the process's stderr and stdout, and with --log-dir files
// of bounded size beside them.
type daemonLogs struct {
	dir, logName, outName string
	stderr, stdout        io.Writer
	files                 []*logfile.File
}

func openLogs(dir, role string) (*daemonLogs, error) {
	l := &daemonLogs{stderr: os.Stderr, stdout: os.Stdout}
	if dir == "" {
		return l, nil
	}
	logF, err := logfile.Open(dir, role+".log", logfile.DefaultMax)
	if err != nil {
		return nil, err
	}
	outF, err := logfile.Open(dir, role+".out", logfile.DefaultMax)
	if err != nil {
		logF.Close()
		return nil, err
	}
	l.dir, l.logName, l.outName = dir, role+".log", role+".out"
	l.stderr, l.stdout = io.MultiWriter(os.Stderr, logF), io.MultiWriter(os.Stdout, outF)
	l.files = []*logfile.File{logF, outF}
	return l, nil
}

func (l *daemonLogs) Close() {
	for _, f := range l.files {
		f.Close()
	}
}
