package nm

import (
	"os"
	"strconv"
	"strings"
)

var pageSize = int64(os.Getpagesize())

// groupRSS returns the summed resident memory of the processes in a
// process group, read from /proc: the fallback monitor when the host has
// no writable memory cgroup.
func groupRSS(pgid int) (rss int64, pids []int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g != pgid {
			continue
		}
		pages, _ := strconv.ParseInt(f[21], 10, 64)
		rss += pages * pageSize
		pids = append(pids, pid)
	}
	return rss, pids
}

// startTime is when process pid started, in clock ticks since boot
// (/proc/PID/stat field 22), or 0 when there is no such process.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	t, _ := strconv.ParseUint(f[19], 10, 64)
	return t
}

// hostMemoryMB returns the host's total memory in MB.
func hostMemoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 4096
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb / 1024
		}
	}
	return 4096
}
