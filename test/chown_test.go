package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
)

// swapper fills its workdir with 200 directories and 200 symlinks to argv[1], then
// leaves a process behind that swaps each directory with its symlink, again and again,
// for two minutes. That process outlives the nexlet: it leads a session of its own, its
// environment lacks the tags a new nexlet finds a dead one's processes by, a run-as
// user's processes are not swept, and without the sandbox or cgroups nothing else ends
// them.
const swapper = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#define N 200
int main(int argc, char **argv) {
	char p[64], q[64];
	if (argc > 2 && strcmp(argv[2], "race") == 0) {
		for (time_t end = time(NULL) + 120; time(NULL) < end;)
			for (int i = 0; i < N; i++) {
				snprintf(p, sizeof p, "s/d%d", i);
				snprintf(q, sizeof q, "s/l%d", i);
				syscall(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE);
			}
		return 0;
	}
	mkdir("s", 0777);
	for (int i = 0; i < N; i++) {
		snprintf(p, sizeof p, "s/d%d", i);
		mkdir(p, 0755);
		snprintf(q, sizeof q, "s/d%d/f", i);
		close(open(q, O_CREAT | O_WRONLY | O_NOFOLLOW, 0644));
		snprintf(q, sizeof q, "s/l%d", i);
		symlink(argv[1], q);
	}
	if (fork() == 0) { /* its own session, and an environment without the nexlet's tags */
		char *args[] = {argv[0], argv[1], "race", NULL}, *env[] = {NULL};
		setsid();
		execve("/proc/self/exe", args, env);
		return 1;
	}
	printf("swapping\n");
	fflush(stdout);
	pause();
}
`

// A tenant whose workload runs as a user the operator lent it (--run-as) cannot have the
// root nexlet give a file of root's to that user. Its workload leaves behind a process
// that swaps the directories of its workdir for symlinks to a directory of root's; when
// the nexlet starts the workload again (here: after the nexlet was killed), it gives the
// workdir to the workload's user again. That walk went by path, through the swapped
// symlinks, and chowned root's file. Run as the tenant, with the documented tenant
// rights, on an operator-mode server, on a node without the sandbox or cgroups (where
// nothing ends the swapping process).
func TestTenantCannotHaveRootChownOutsideItsWorkdir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run-as users need a root nexlet: run as root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run nexd without CAP_SYS_ADMIN")
	}
	bin := testutil.BuildC(t, "swapper", swapper)
	op, u, url, nodeCreds := issuerSetup(t)
	closed := filepath.Join(u.home, "closed")
	shadow := filepath.Join(closed, "shadow")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shadow, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range testutil.Processes(bin) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	u.wrap = map[string][]string{"nexd": {setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"}}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--cgroups", "none", "--run-as", "a=nobody")
	a := op.tenant(t, u, url, "a", "alice")
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "swapper",
		"--start-request", `{"uri":"file://`+bin+`","argv":["`+closed+`"],"user":"nobody"}`)...))
	starts := func() int {
		out, _, _ := u.nex(append(a, "workload", "logs", id)...)
		return strings.Count(out, "swapping")
	}
	testutil.Eventually(t, 15*time.Second, "the swapper to start", func() bool { return starts() == 1 })
	for round := 1; round <= 2; round++ { // the supervisor gives up on a third death within a minute
		nexlets := testutil.Processes("nexlet-native", filepath.Join(u.home, "data"))
		if len(nexlets) != 1 {
			t.Fatalf("round %d: %d nexlet-native processes of this node", round, len(nexlets))
		}
		if err := syscall.Kill(nexlets[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the workload started again by the next nexlet", func() bool { return starts() > round })
		var st syscall.Stat_t
		if err := syscall.Stat(shadow, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 {
			t.Fatalf("after %d starts of the workload again, root's %s belongs to UID %d", round, shadow, st.Uid)
		}
	}
}

// A tenant's workload on a node without the sandbox leaves a file of its UID's, mode
// 0600, in /run/lock, a directory any user may write: it stayed after the workload was
// removed, for the tenant whose workload gets the UID next to read (a review's walk). A
// released UID's files go from /run/lock too, as from /tmp, /var/tmp and /dev/shm.
func TestTenantLeavesNothingInRunLock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads get users of their own only as root: run as root")
	}
	if st, err := os.Stat("/run/lock"); err != nil || st.Mode().Perm()&0o002 == 0 {
		t.Skip("no world-writable /run/lock here")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run nexd without CAP_SYS_ADMIN")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	u.wrap = map[string][]string{"nexd": {setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"}}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--cgroups", "none")
	a := op.tenant(t, u, url, "a", "alice")
	left := "/run/lock/nex-left-" + strconv.Itoa(os.Getpid())
	defer os.Remove(left)
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "leaver", "--start-request",
		`{"uri":"file:///bin/sh","argv":["-c","echo secret-of-a > `+left+`; chmod 600 `+left+`; echo left"]}`)...))
	testutil.Eventually(t, 15*time.Second, "the job to leave its file", func() bool {
		out, _, _ := u.nex(append(a, "workload", "logs", id)...)
		return strings.Contains(out, "left")
	})
	st, err := os.Stat(left)
	if err != nil || st.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Fatalf("the job's file: %v (it ran as a user of its own?)", err)
	}
	u.mustNex(append(a, "workload", "rm", id)...)
	testutil.Eventually(t, 15*time.Second, "the released UID's file in /run/lock to go", func() bool {
		_, err := os.Stat(left)
		return os.IsNotExist(err)
	})
}
