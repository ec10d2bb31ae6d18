// Package uids owns the workload UID pool of the native runtime: when the nexlet runs
// as root, every workload runs as an unprivileged UID (and a GID of the same number)
// taken from a range, so one workload cannot read another's files, credentials or
// /proc/<pid>/environ, nor the node's keys. A UID is held through a lock file in a
// machine-wide directory, so two nexlets on one machine (two nodes) never hand out the
// same one; it is given back only once every process of that UID is gone and the files it
// left in the shared temporary directories are removed, so the next workload to get it
// finds nothing of the last one's. The pool's lock guards the UIDs held here; it also
// says which capabilities running workloads as users of their own needs.
package uids

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostusers"
)

// DefaultLockDir holds one lock file per UID in use on the machine.
const DefaultLockDir = "/run/nex/uids"

// Pool hands out the UIDs of a range, round robin, so a UID comes back into use as
// late as possible.
type Pool struct {
	r       hostusers.UIDRange
	lockDir string
	log     *zap.Logger
	// tmpDirs are swept of a UID's files before it is reused.
	tmpDirs []string

	mu    sync.Mutex
	next  uint32
	held  map[uint32]*os.File // lock files of UIDs in use here (or being released); nil while acquired
	sweep sync.WaitGroup
	// released are the UIDs given back and not swept yet. One sweeper at a time sweeps
	// all of them at once: a sweep reads the status of every process of the machine and
	// the temporary directories, whatever the number of UIDs it looks for (a sweep for
	// each release was half the CPU of a node starting 140 sandboxed jobs a second).
	released []uint32
	sweeping bool
	// killer is the pool's own UID, held for its life, that no process runs as: the real
	// UID of the thread that kills a UID's processes (killByUID). 0: none (not root), and
	// processes are killed by PID.
	killer uint32
}

// NewPool hands out r, locking in lockDir (default DefaultLockDir) and sweeping
// tmpDirs (default: the machine's temporary directories).
func NewPool(r hostusers.UIDRange, lockDir string, tmpDirs []string, log *zap.Logger) (*Pool, error) {
	if lockDir == "" {
		lockDir = DefaultLockDir
	}
	if tmpDirs == nil {
		// every directory of the machine any user may write (/run/lock too: a workload's
		// 0600 file there waited for the UID's next holder), and the POSIX message queues
		// where their file system is mounted
		tmpDirs = []string{os.TempDir(), "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue"}
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("workload UID locks: %w", err)
	}
	p := &Pool{r: r, lockDir: lockDir, log: log, held: map[uint32]*os.File{}, tmpDirs: tmpDirs}
	// start somewhere else than the last nexlet did: less contention for the same locks
	p.next = r.First + uint32(time.Now().UnixNano()%int64(r.Last-r.First+1))
	if os.Geteuid() == 0 && p.takeKiller() != nil {
		// every UID of the range is held, or a dead workload's: end what the dead left
		// first (by PID: there is no UID to kill with yet), and take one of theirs
		p.reclaimDead()
		if err := p.takeKiller(); err != nil {
			return nil, err
		}
	}
	p.reclaimDead()
	return p, nil
}

// reclaimDead ends what the workloads of a nexlet that died (kill -9) left running under
// their UIDs: processes that left their process group, and so the environment-tagged
// search of killOrphans (which cannot read another user's environment without
// CAP_SYS_PTRACE), and files in the temporary directories. A UID whose lock nobody holds
// but whose file still says "in use" is such a one; all of them are swept at once.
func (p *Pool) reclaimDead() {
	entries, err := os.ReadDir(p.lockDir)
	if err != nil {
		return
	}
	var reclaimed []uint32 // told once, not in a line per UID (50 at a start were noise)
	var locks []*os.File
	for _, e := range entries {
		uid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || uint32(uid) < p.r.First || uint32(uid) > p.r.Last {
			continue
		}
		f, err := lockFile(filepath.Join(p.lockDir, e.Name()))
		if err != nil || f == nil {
			continue
		}
		if b := lockContent(f); len(b) > 0 && !isKiller(b) { // a dead nexlet's own UID ran no workload: nothing to end
			reclaimed = append(reclaimed, uint32(uid))
			locks = append(locks, f)
			continue
		}
		_ = os.Remove(f.Name())
		f.Close()
	}
	stuck := p.killAndSweep(reclaimed...)
	for i, f := range locks {
		p.reclaimDirs(f, reclaimed[i])
		p.letGo(reclaimed[i], f, stuck)
	}
	if len(reclaimed) > 0 {
		p.log.Warn("ended what the workloads of a dead nexlet left behind under their UIDs", zap.Int("uids", len(reclaimed)), zap.Uint32s("which", reclaimed[:min(len(reclaimed), 20)]))
	}
}

// ErrNoUIDs is returned when every UID of the range is in use.
var ErrNoUIDs = errors.New("every workload UID of the range is in use")

// Acquire takes a free UID and holds it until Release. The pool's lock is held only to
// choose the UID; its lock file is taken and written without it, so that starts do not
// queue behind each other's file operations (they did: two thirds of what 16 concurrent
// sandboxed starts waited for).
func (p *Pool) Acquire() (uint32, error) {
	size := uint64(p.r.Last-p.r.First) + 1
	for range size {
		uid, f, err := p.lockNext()
		if err != nil {
			return 0, err
		}
		if f == nil {
			continue
		}
		// the lock file says "in use" from acquire until the sweep of release is done: a
		// holder that died in between (kill -9) may have left processes and files
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			stuck := p.killAndSweep(uid)
			p.reclaimDirs(f, uid)
			if len(stuck) > 0 {
				p.letGo(uid, f, stuck)
				continue
			}
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		p.mu.Lock()
		p.held[uid] = f
		p.mu.Unlock()
		return uid, nil
	}
	if own := p.own(); own != 0 {
		return 0, fmt.Errorf("%w (%s; UID %d of it is nexlet-native's own)", ErrNoUIDs, p.r, own)
	}
	return 0, fmt.Errorf("%w (%s)", ErrNoUIDs, p.r)
}

// lockNext reserves the next UID of the round and takes its lock file. f is nil, and the
// UID not reserved, when the UID is held here or another nexlet of the machine has it;
// the caller that does not keep f gives the UID back with unreserve.
func (p *Pool) lockNext() (uid uint32, f *os.File, err error) {
	uid, ok := p.reserveNext()
	if !ok {
		return 0, nil, nil
	}
	f, err = lockFile(filepath.Join(p.lockDir, strconv.FormatUint(uint64(uid), 10)))
	if err != nil || f == nil {
		p.unreserve(uid)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("workload UID lock: %w", err)
	}
	return uid, f, nil
}

func (p *Pool) unreserve(uid uint32) {
	p.mu.Lock()
	delete(p.held, uid)
	p.mu.Unlock()
}

// lockContent is what the lock file f says (the holder's PID, then its workload's
// directory or killerMark).
func lockContent(f *os.File) []byte {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	return b
}

// reserveNext takes the next UID of the round that is not held here, and marks it held
// (with no lock file yet) so that no other acquire takes it meanwhile.
func (p *Pool) reserveNext() (uint32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	uid := p.next
	if p.next == p.r.Last {
		p.next = p.r.First
	} else {
		p.next++
	}
	if _, mine := p.held[uid]; mine {
		return 0, false
	}
	p.held[uid] = nil
	return uid, true
}

// Record writes into uid's lock file the directory its workload owns (its workdir). A nexlet killed outright leaves finished
// workloads' directories behind, still the UID's; whoever takes the UID next gives that
// directory to root first (reclaim), so the UID's next workload cannot read them.
func (p *Pool) Record(uid uint32, dir string) {
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

// reclaimDirs deals with the directory the lock file of uid's dead holder names (once
// its processes and temporary files are gone: killAndSweep): it goes to root (mode 0700)
// when uid still owns it. A workload of the dead nexlet started again gets it back with
// its new UID; a finished one's is removed with it.
func (p *Pool) reclaimDirs(lock *os.File, uid uint32) {
	lines := strings.Split(strings.TrimSpace(string(lockContent(lock))), "\n")
	for _, dir := range lines[1:] {
		if !filepath.IsAbs(dir) || !ownedBy(dir, uid) {
			continue
		}
		if err := ChownTree(dir, 0, 0); err != nil {
			p.log.Warn("give a dead workload's directory to root", zap.String("dir", dir), zap.Error(err))
			continue
		}
		_ = os.Chmod(dir, 0o700)
	}
}

// Release kills whatever still runs as uid, removes the files it left in the temporary
// directories, and only then lets the UID go, in the background (see released).
func (p *Pool) Release(uid uint32) {
	p.sweep.Add(1)
	p.mu.Lock()
	p.released = append(p.released, uid)
	start := !p.sweeping
	p.sweeping = true
	p.mu.Unlock()
	if start {
		go p.sweepReleased()
	}
}

// sweepReleased sweeps the released UIDs, all that are waiting at once, and lets them go,
// until none is waiting.
func (p *Pool) sweepReleased() {
	for {
		p.mu.Lock()
		batch := p.released
		p.released = nil
		if len(batch) == 0 {
			p.sweeping = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		stuck := p.killAndSweep(batch...)
		p.mu.Lock()
		locks := make([]*os.File, len(batch))
		for i, uid := range batch {
			locks[i] = p.held[uid]
		}
		p.mu.Unlock()
		for i, f := range locks {
			p.letGo(batch[i], f, stuck)
		}
		for range batch {
			p.sweep.Done()
		}
	}
}

// letGo frees uid, swept, whose lock file is f (nil: none), unless it is one of stuck,
// whose processes outlived the sweep: that one is kept, held here and marked in use,
// and never handed out again by this pool (a nexlet started later sweeps it again).
func (p *Pool) letGo(uid uint32, f *os.File, stuck []uint32) {
	if slices.Contains(stuck, uid) {
		p.log.Error("a workload UID's processes outlived their kill for 5 s; the UID is not handed out again until the nexlet restarts", zap.Uint32("uid", uid))
		p.mu.Lock()
		p.held[uid] = f
		p.mu.Unlock()
		return
	}
	p.unreserve(uid)
	if f != nil {
		_ = os.Remove(f.Name()) // swept: nothing of the last holder is left
		f.Close()               // drops the flock
	}
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

// Wait waits for the releases under way.
func (p *Pool) Wait() { p.sweep.Wait() }

// own is the pool's own UID (killer), 0 when it has none.
func (p *Pool) own() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killer
}

// Close lets the pool's own UID go, once the nexlet has stopped its workloads and waited
// for their releases (Wait): a nexlet stopped cleanly leaves no lock file behind. Kills
// after it are by PID.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killer == 0 {
		return
	}
	if f := p.held[p.killer]; f != nil {
		_ = os.Remove(f.Name())
		f.Close()
	}
	delete(p.held, p.killer)
	p.killer = 0
}
