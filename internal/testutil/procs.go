package testutil

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Processes lists the PIDs whose command line holds every one of words, zombies left out.
func Processes(words ...string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, w := range words {
			all = all && strings.Contains(cmd, w)
		}
		if all && !IsZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// IsZombie says whether pid has exited and not been reaped (or is gone).
func IsZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// BuildBinaries builds every command of the module at root into dir, with ldflags, and
// the sandbox helper (C) as make does.
func BuildBinaries(root, dir, ldflags string) error {
	build := exec.Command("go", "build", "-ldflags", ldflags, "-o", dir+"/", "./cmd/...")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build binaries: %w", err)
	}
	return BuildSandboxHelper(root, dir)
}

// BuildSandboxHelper builds nex-sandbox (C) into dir with scripts/build-sandbox.sh: without
// a C compiler it builds none (and fails with CI set).
func BuildSandboxHelper(root, dir string) error {
	build := exec.Command(filepath.Join(root, "scripts", "build-sandbox.sh"), dir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build nex-sandbox: %w", err)
	}
	return nil
}

// TCPOwner is the UID that owns the TCP socket from local port local to remote port
// remote, as /proc/net/tcp says (what a firewall's owner match reads), or -1 when none
// is. Both ports are matched: Linux gives one ephemeral port to connections to different
// destinations, and a root socket to the NATS server may share a fetch's local port.
func TCPOwner(local, remote int) int {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return -1
	}
	defer f.Close()
	port := func(addr string) int {
		p, err := strconv.ParseInt(addr[strings.LastIndex(addr, ":")+1:], 16, 32)
		if err != nil {
			return -1
		}
		return int(p)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !strings.Contains(fields[1], ":") || !strings.Contains(fields[2], ":") {
			continue
		}
		if port(fields[1]) == local && port(fields[2]) == remote {
			if uid, err := strconv.Atoi(fields[7]); err == nil {
				return uid
			}
		}
	}
	return -1
}

// RequestOwner is the UID that owns the client's socket of an HTTP request to a server
// on this machine, or -1 when it cannot be told.
func RequestOwner(r *http.Request) int {
	_, remote, _ := net.SplitHostPort(r.RemoteAddr)
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return -1
	}
	_, local, _ := net.SplitHostPort(addr.String())
	rp, err1 := strconv.Atoi(remote)
	lp, err2 := strconv.Atoi(local)
	if err1 != nil || err2 != nil {
		return -1
	}
	return TCPOwner(rp, lp)
}
