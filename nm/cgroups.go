package nm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoot is where cgroup v1 controllers are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups places containers in cgroup v1 memory (and cpu) groups under
// loom/<nm name>/<container id>, when the host lets the NM write there.
type cgroups struct {
	memBase string // .../memory/loom/<nm>
	cpuBase string // .../cpu/loom/<nm>, "" when the cpu controller is not writable
}

// detectCgroups returns cgroups rooted at loom/<name>, or nil when cgroup
// v1 memory is not mounted or not writable.
func detectCgroups(name string) *cgroups {
	mem := filepath.Join(cgroupRoot, "memory")
	if _, err := os.Stat(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
		return nil
	}
	base := filepath.Join(mem, "loom", name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil
	}
	// Probe: a child group we can create, limit and remove.
	probe := filepath.Join(base, "probe")
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil
	}
	err := os.WriteFile(filepath.Join(probe, "memory.limit_in_bytes"), []byte("1073741824"), 0o644)
	_ = syscall.Rmdir(probe)
	if err != nil {
		return nil
	}
	cg := &cgroups{memBase: base}
	cpu := filepath.Join(cgroupRoot, "cpu", "loom", name)
	if err := os.MkdirAll(cpu, 0o755); err == nil {
		if _, err := os.Stat(filepath.Join(cpu, "cpu.shares")); err == nil {
			cg.cpuBase = cpu
		}
	}
	return cg
}

// containerGroup is one container's cgroups.
type containerGroup struct {
	mem string
	cpu string
}

// create makes a container's groups with its memory limit and CPU shares.
func (c *cgroups) create(id string, memBytes int64, vcores int32) (*containerGroup, error) {
	g := &containerGroup{mem: filepath.Join(c.memBase, id)}
	if err := os.Mkdir(g.mem, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating memory cgroup: %w", err)
	}
	limit := []byte(strconv.FormatInt(memBytes, 10))
	if err := os.WriteFile(filepath.Join(g.mem, "memory.limit_in_bytes"), limit, 0o644); err != nil {
		_ = syscall.Rmdir(g.mem)
		return nil, fmt.Errorf("setting the memory limit: %w", err)
	}
	// Without swap accounting this file is absent; the limit above holds.
	_ = os.WriteFile(filepath.Join(g.mem, "memory.memsw.limit_in_bytes"), limit, 0o644)
	_ = os.WriteFile(filepath.Join(g.mem, "memory.swappiness"), []byte("0"), 0o644)
	if c.cpuBase != "" && vcores > 0 {
		cpu := filepath.Join(c.cpuBase, id)
		if err := os.Mkdir(cpu, 0o755); err == nil || errors.Is(err, os.ErrExist) {
			if os.WriteFile(filepath.Join(cpu, "cpu.shares"), []byte(strconv.Itoa(int(vcores)*1024)), 0o644) == nil {
				g.cpu = cpu
			}
		}
	}
	return g, nil
}

// add moves a process into the groups.
func (g *containerGroup) add(pid int) error {
	p := []byte(strconv.Itoa(pid))
	if err := os.WriteFile(filepath.Join(g.mem, "cgroup.procs"), p, 0o644); err != nil {
		return fmt.Errorf("joining the memory cgroup: %w", err)
	}
	if g.cpu != "" {
		_ = os.WriteFile(filepath.Join(g.cpu, "cgroup.procs"), p, 0o644)
	}
	return nil
}

// pids lists the processes in the group.
func (g *containerGroup) pids() []int {
	return readPids(filepath.Join(g.mem, "cgroup.procs"))
}

func readPids(file string) []int {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// signal sends sig to every process in the group.
func (g *containerGroup) signal(sig syscall.Signal) {
	for _, pid := range g.pids() {
		_ = syscall.Kill(pid, sig)
	}
}

// usage returns the group's memory use, its peak and how many times the
// kernel OOM-killed a process in it.
func (g *containerGroup) usage() (cur, peak int64, oomKills int) {
	cur = readInt(filepath.Join(g.mem, "memory.usage_in_bytes"))
	peak = readInt(filepath.Join(g.mem, "memory.max_usage_in_bytes"))
	f, err := os.Open(filepath.Join(g.mem, "memory.oom_control"))
	if err != nil {
		return cur, peak, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			oomKills, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return cur, peak, oomKills
}

func readInt(file string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// remove kills what is left in the groups and removes them.
func (g *containerGroup) remove() {
	for i := 0; i < 50; i++ {
		g.signal(syscall.SIGKILL)
		if syscall.Rmdir(g.mem) == nil || errors.Is(syscall.Rmdir(g.mem), syscall.ENOENT) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.cpu != "" {
		_ = syscall.Rmdir(g.cpu)
	}
}

// sweep kills and removes groups left by an earlier NM with the same name
// that did not stop cleanly (kill -9): no container outlives its node.
func (c *cgroups) sweep() int {
	n := 0
	for _, base := range []string{c.memBase, c.cpuBase} {
		if base == "" {
			continue
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			g := &containerGroup{mem: filepath.Join(base, e.Name())}
			if len(g.pids()) > 0 {
				n++
			}
			g.remove()
		}
	}
	return n
}

// close removes this NM's (empty) cgroup subtrees.
func (c *cgroups) close() {
	for _, base := range []string{c.memBase, c.cpuBase} {
		if base != "" {
			_ = syscall.Rmdir(base)
		}
	}
}
