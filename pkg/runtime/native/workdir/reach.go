package workdir

import (
	"fmt"
	"os"
	"path/filepath"
)

// OpenWorkloadsRoot lets workloads of other users reach their workdirs under dataDir:
// the nexlet's own directories get o+x (enter, not list), and every directory above must
// already allow it. Everything else under dataDir stays the nexlet's (0600/0700).
func OpenWorkloadsRoot(dataDir string) error {
	if err := CanReach(dataDir); err != nil {
		return fmt.Errorf("workloads as users of their own: %w", err)
	}
	for _, dir := range []string{dataDir, filepath.Join(dataDir, "workloads")} {
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("workloads as users of their own: %w", err)
		}
	}
	return nil
}

// CanReach says whether a workload of another user can pass through every
// directory above dataDir to its workdir (o+x), and if not, which one stops it.
func CanReach(dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("workloads of their own users cannot reach their workdirs under %s: %s (mode %04o) does not let other users through; chmod o+x %s, or choose a data dir elsewhere", abs, dir, st.Mode().Perm(), dir)
		}
		if dir == "/" {
			return nil
		}
	}
}
