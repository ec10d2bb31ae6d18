package native

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostusers"
)

// Workloads as users of their own: when the nexlet runs as root, every workload runs as
// an unprivileged UID (and a GID of the same number) taken from a range, so one workload
// cannot read another's files, credentials or /proc/<pid>/environ, nor the node's keys.
// A UID is held through a lock file in a machine-wide directory, so two nexlets on one
// machine (two nodes) never hand out the same one; it is given back only once every
// process of that UID is gone and the files it left in the shared temporary directories
// are removed, so the next workload to get it finds nothing of the last one's.

// DefaultUIDs is the range --workload-uids takes by default (hostusers.DefaultUIDs).
const DefaultUIDs = hostusers.DefaultUIDs

// UIDRange is the first and last UID workloads may run as.
type UIDRange = hostusers.UIDRange

// ParseUIDRange reads "FIRST-LAST" (e.g. 200000-265535).
func ParseUIDRange(s string) (UIDRange, error) { return hostusers.ParseUIDRange(s) }

// DefaultUIDLockDir holds one lock file per UID in use on the machine.
const DefaultUIDLockDir = "/run/nex/uids"

// RequiredCapabilities are what running workloads as users of their own needs: switch to
// the UID (SETUID, SETGID), give it its files (CHOWN), end its processes (KILL), remove
// what it leaves (DAC_OVERRIDE, FOWNER: its files in the sticky /tmp). The bit is the
// capability's number (capability.h).
var RequiredCapabilities = []struct {
	Bit  uint
	Name string
}{{0, "CAP_CHOWN"}, {1, "CAP_DAC_OVERRIDE"}, {3, "CAP_FOWNER"}, {5, "CAP_KILL"}, {6, "CAP_SETGID"}, {7, "CAP_SETUID"}}

// SandboxCapabilities are what the sandbox of each workload needs besides: its mount and
// IPC namespaces and its mounts (sandbox.go). Without them workloads run unsandboxed, and
// the node says so (nex.sandbox=none).
var SandboxCapabilities = []struct {
	Bit  uint
	Name string
}{{21, "CAP_SYS_ADMIN"}}

// CanSwitchUsers says whether this process can run workloads as other users, and if not,
// why: it must be root with the RequiredCapabilities (a root whose capabilities a
// systemd unit bounds keeps these).
func CanSwitchUsers() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("nexlet-native runs as UID %d, not root", os.Geteuid())
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("read capabilities: %w", err)
		}
		for _, c := range RequiredCapabilities {
			if eff&(1<<c.Bit) == 0 {
				return fmt.Errorf("nexlet-native lacks %s", c.Name)
			}
		}
		return nil
	}
	return errors.New("no CapEff line in /proc/self/status")
}

// uidPool hands out the UIDs of a range, round robin, so a UID comes back into use as
// late as possible.
type uidPool struct {
	r       UIDRange
	lockDir string
	log     *zap.Logger
	// tmpDirs are swept of a UID's files before it is reused.
	tmpDirs []string

	mu    sync.Mutex
	next  uint32
	held  map[uint32]*os.File // lock files of UIDs in use here (or being released)
	sweep sync.WaitGroup
}

// newUIDPool hands out r, locking in lockDir (default DefaultUIDLockDir) and sweeping
// tmpDirs (default: the machine's temporary directories).
func newUIDPool(r UIDRange, lockDir string, tmpDirs []string, log *zap.Logger) (*uidPool, error) {
	if lockDir == "" {
		lockDir = DefaultUIDLockDir
	}
	if tmpDirs == nil {
		tmpDirs = []string{os.TempDir(), "/var/tmp", "/dev/shm"}
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("workload UID locks: %w", err)
	}
	p := &uidPool{r: r, lockDir: lockDir, log: log, held: map[uint32]*os.File{}, tmpDirs: tmpDirs}
	// start somewhere else than the last nexlet did: less contention for the same locks
	p.next = r.First + uint32(time.Now().UnixNano()%int64(r.Last-r.First+1))
	p.reclaimDead()
	return p, nil
}

// reclaimDead ends what the workloads of a nexlet that died (kill -9) left running under
// their UIDs: processes that left their process group, and so the environment-tagged
// search of killOrphans (which cannot read another user's environment without
// CAP_SYS_PTRACE), and files in the temporary directories. A UID whose lock nobody holds
// but whose file still says "in use" is such a one.
func (p *uidPool) reclaimDead() {
	entries, err := os.ReadDir(p.lockDir)
	if err != nil {
		return
	}
	var reclaimed []uint64 // told once, not in a line per UID (50 at a start were noise)
	for _, e := range entries {
		uid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || uint32(uid) < p.r.First || uint32(uid) > p.r.Last {
			continue
		}
		f, err := lockFile(filepath.Join(p.lockDir, e.Name()))
		if err != nil || f == nil {
			continue
		}
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			reclaimed = append(reclaimed, uid)
			p.reclaim(f, uint32(uid))
		}
		_ = os.Remove(f.Name())
		f.Close()
	}
	if len(reclaimed) > 0 {
		p.log.Warn("ended what the workloads of a dead nexlet left behind under their UIDs", zap.Int("uids", len(reclaimed)), zap.Uint64s("which", reclaimed[:min(len(reclaimed), 20)]))
	}
}

// ErrNoUIDs is returned when every UID of the range is in use.
var ErrNoUIDs = errors.New("every workload UID of the range is in use")

// acquire takes a free UID and holds it until release.
func (p *uidPool) acquire() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := uint64(p.r.Last-p.r.First) + 1
	for range size {
		uid := p.next
		if p.next == p.r.Last {
			p.next = p.r.First
		} else {
			p.next++
		}
		if _, mine := p.held[uid]; mine {
			continue
		}
		f, err := lockFile(filepath.Join(p.lockDir, strconv.FormatUint(uint64(uid), 10)))
		if err != nil {
			return 0, fmt.Errorf("workload UID lock: %w", err)
		}
		if f == nil {
			continue // another nexlet on this machine has it
		}
		// the lock file says "in use" from acquire until the sweep of release is done: a
		// holder that died in between (kill -9) may have left processes and files
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			p.reclaim(f, uid)
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		p.held[uid] = f
		return uid, nil
	}
	return 0, fmt.Errorf("%w (%s)", ErrNoUIDs, p.r)
}

// record writes into uid's lock file the directory its workload owns (its workdir). A nexlet killed outright leaves finished
// workloads' directories behind, still the UID's; whoever takes the UID next gives that
// directory to root first (reclaim), so the UID's next workload cannot read them.
func (p *uidPool) record(uid uint32, dir string) {
	p.mu.Lock()
	f := p.held[uid]
	p.mu.Unlock()
	if f == nil {
		return
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+dir+"\n"), 0)
	}
}

// reclaim ends what a dead holder of uid left: its processes and its files in the
// temporary directories (killAndSweep), and the directory its lock file names, which goes
// to root (mode 0700) when uid still owns it: a workload of the dead nexlet started again
// gets it back with its new UID; a finished one's is removed with it.
func (p *uidPool) reclaim(lock *os.File, uid uint32) {
	p.killAndSweep(uid)
	b, _ := io.ReadAll(io.NewSectionReader(lock, 0, 1<<16))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, dir := range lines[1:] {
		if !filepath.IsAbs(dir) || !ownedBy(dir, uid) {
			continue
		}
		if err := chownTree(dir, 0, 0); err != nil {
			p.log.Warn("give a dead workload's directory to root", zap.String("dir", dir), zap.Error(err))
			continue
		}
		_ = os.Chmod(dir, 0o700)
	}
}

// release kills whatever still runs as uid, removes the files it left in the temporary
// directories, and only then lets the UID go, in the background.
func (p *uidPool) release(uid uint32) {
	p.sweep.Add(1)
	go func() {
		defer p.sweep.Done()
		p.killAndSweep(uid)
		p.mu.Lock()
		f := p.held[uid]
		delete(p.held, uid)
		p.mu.Unlock()
		if f != nil {
			_ = os.Remove(f.Name()) // swept: nothing of the last holder is left
			f.Close()               // drops the flock
		}
	}()
}

// lockFile opens and locks the lock file at path, or returns nil when another process
// holds it. A holder removes the file when it lets go; a lock taken on a file that was
// removed meanwhile is worthless, so the path is checked to be the file locked.
func lockFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			return nil, nil
		}
		locked, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(locked, now) {
			return f, nil
		}
		f.Close() // removed (or replaced) between open and lock: again
	}
}

// wait waits for the releases under way.
func (p *uidPool) wait() { p.sweep.Wait() }

// killAndSweep kills every process of uid (a daemon it double-forked out of its process
// group included) and removes the files uid owns at the top of the temporary directories.
func (p *uidPool) killAndSweep(uid uint32) {
	deadline := time.Now().Add(5 * time.Second)
	for pids := processesOf(uid); len(pids) > 0 && time.Now().Before(deadline); pids = processesOf(uid) {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dir := range p.tmpDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			if ownedBy(path, uid) {
				if err := os.RemoveAll(path); err != nil {
					p.log.Warn("remove a file a workload left", zap.String("path", path), zap.Error(err))
				}
			}
		}
	}
}

func ownedBy(path string, uid uint32) bool {
	var st syscall.Stat_t
	return syscall.Lstat(path, &st) == nil && st.Uid == uid
}

// processesOf lists the processes whose real or effective UID is uid.
func processesOf(uid uint32) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.FormatUint(uint64(uid), 10)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				f := strings.Fields(rest) // real, effective, saved, filesystem
				if len(f) >= 2 && (f[0] == want || f[1] == want) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// chownTree gives path and everything under it to uid:gid (links themselves, never what
// they point to).
func chownTree(path string, uid, gid uint32) error {
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
}
