/*
 * nex-sandbox is the helper nexlet-native starts each sandboxed workload through. It
 * takes the same steps as the Go helper in internal/sandbox, whose comment says what and
 * why; nexlet-native runs that one (itself) when this binary is not beside it. Started
 * in new mount, IPC and PID namespaces, as root, it mounts a private /tmp, /var/tmp,
 * /dev/shm and /run/lock and a /proc of the new PID namespace, drops to the workload's
 * user with no_new_privs, and stays as the namespace's init (PID 1): it starts the
 * workload, reaps what is orphaned inside, and exits with the workload's status.
 *
 * It is C, not Go, because every sandboxed start pays for its start and every sandboxed
 * workload for its init: a static C program starts in about 1.5 ms on the machine Go's
 * hello world takes 6.4 ms on, and its init is one thread of a few hundred KiB where a Go
 * init was 8 threads (which count against the workload's pids limit and the machine's
 * pid_max) and 3 MiB. docs/performance.md has the numbers.
 *
 * Its spec comes in $NEX_SANDBOX_SPEC (and $NEX_SANDBOX_SPEC_1 and on, past 128 KiB),
 * its whole environment: netstrings
 * ("<length>:<bytes>,"), in order: "nex-sandbox/1", flags ('p' probe, 'r' ready), uid,
 * gid, tmpfs size in bytes (0: the kernel's default), workdir, executable, the count of
 * argv then each, the count of env then each. internal/sandbox encodes it (Spec.Encode).
 * A spec it cannot read is refused before anything is mounted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARG0 "nex-sandbox"
#define SPEC_ENV "NEX_SANDBOX_SPEC"
#define SPEC_VERSION "nex-sandbox/1"
#define READY_FD 3 /* the nexlet's ready pipe: closed once the workload runs */

/* the directories private to each sandbox (internal/sandbox.Private) */
static const char *const private_dirs[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock"};

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_restrict_self 446
#endif

/* what a probe prints once everything is mounted (internal/sandbox.ProbeOK) */
#define PROBE_OK "nex-sandbox: probe ok"

/* the pseudo-terminals a sandbox may hold at once (internal/sandbox.PTYMax) */
#define PTY_MAX "64"

/* the signals the init passes on to a workload that left its process group */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

struct spec {
	int probe, ready;
	uid_t uid;
	gid_t gid;
	unsigned long long tmpsize;
	char *dir, *path;
	char **argv, **env;
};

/* errstr is strerror as Go spells errors: lower case ("permission denied") */
static const char *errstr(int e) {
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* the ready pipe while the workload does not run yet (-1: none, or closed), and the errno
 * of a failed exec: fail tells the nexlet why through it, "<errno> <message>", so that the
 * start fails saying so (a file with execute bits that is no program was "started", then
 * restarted with exit 127 for good) */
static int report_fd = -1, exec_errno;

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "nex sandbox: %s\n", msg);
	if (report_fd >= 0) {
		char report[1100];
		int n = snprintf(report, sizeof report, "%d %s", exec_errno, msg);
		ssize_t w = write(report_fd, report, n > 0 && n < (int)sizeof report ? (size_t)n : strlen(report));
		(void)w;
	}
	exit(127);
}

static void *xmalloc(size_t n) {
	void *p = malloc(n ? n : 1);
	if (!p)
		fail("out of memory");
	return p;
}

/* field reads the netstring at *p (before end) and returns a copy of its bytes. */
static char *field(const char **p, const char *end, const char *what) {
	const char *s = *p;
	size_t n = 0;
	if (s >= end || *s < '0' || *s > '9')
		fail("bad spec: %s", what);
	while (s < end && *s >= '0' && *s <= '9') {
		if (n > (size_t)(end - s)) /* longer than what is left: no overflow below */
			fail("bad spec: %s", what);
		n = n * 10 + (size_t)(*s - '0');
		s++;
	}
	if (s >= end || *s != ':')
		fail("bad spec: %s", what);
	s++;
	if ((size_t)(end - s) < n + 1 || s[n] != ',')
		fail("bad spec: %s", what);
	char *out = xmalloc(n + 1);
	memcpy(out, s, n);
	out[n] = 0;
	*p = s + n + 1;
	return out;
}

/* number reads a netstring of decimal digits no greater than max. */
static unsigned long long number(const char **p, const char *end, unsigned long long max, const char *what) {
	char *s = field(p, end, what), *e;
	if (s[0] < '0' || s[0] > '9')
		fail("bad spec: %s", what);
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || *e || v > max)
		fail("bad spec: %s", what);
	free(s);
	return v;
}

/* list reads a count and that many netstrings, as a NULL-terminated array. */
static char **list(const char **p, const char *end, const char *what) {
	/* every entry takes at least 3 bytes ("0:,"): a count beyond that is a lie */
	size_t n = (size_t)number(p, end, (unsigned long long)(end - *p) / 3, what);
	char **out = xmalloc((n + 1) * sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = field(p, end, what);
	out[n] = NULL;
	return out;
}

/* clean_abs says whether p is an absolute path with no ., .. or empty parts. */
static int clean_abs(const char *p) {
	if (p[0] != '/')
		return 0;
	if (p[1] == 0)
		return 1;
	for (const char *seg = p + 1;; ) {
		const char *e = strchr(seg, '/');
		size_t n = e ? (size_t)(e - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (!e)
			return 1;
		seg = e + 1;
	}
}

static void parse(const char *raw, struct spec *s) {
	const char *p = raw, *end = raw + strlen(raw);
	char *version = field(&p, end, "version");
	if (strcmp(version, SPEC_VERSION) != 0)
		fail("bad spec: version %s, not %s (nexlet-native and nex-sandbox of different builds)", version, SPEC_VERSION);
	free(version);
	char *flags = field(&p, end, "flags");
	for (char *f = flags; *f; f++) {
		if (*f == 'p')
			s->probe = 1;
		else if (*f == 'r')
			s->ready = 1;
		else
			fail("bad spec: flag %c", *f);
	}
	free(flags);
	s->uid = (uid_t)number(&p, end, 0xfffffffeULL, "uid"); /* (uid_t)-1 means "unchanged" to setresuid */
	s->gid = (gid_t)number(&p, end, 0xfffffffeULL, "gid");
	s->tmpsize = number(&p, end, 0x7fffffffffffffffULL, "tmpfs size");
	s->dir = field(&p, end, "workdir");
	s->path = field(&p, end, "executable");
	s->argv = list(&p, end, "argv");
	s->env = list(&p, end, "env");
	if (p != end)
		fail("bad spec: bytes after its end");
	/* clean, so that a path's text says where it lies: what lies under a private
	 * directory is kept by its text (/tmp/../etc/x is not under /tmp), and its mount
	 * point made on the new tmpfs by that text, as root */
	if (!clean_abs(s->dir) || (!s->probe && !clean_abs(s->path)))
		fail("bad spec: workdir and executable must be clean absolute paths (no . or .. parts, no //, no trailing /)");
}

/* within says whether path is dir or lies below it. */
static int within(const char *path, const char *dir) {
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/* under says whether path lies in one of the private directories (or is one). */
static int under(const char *path) {
	for (size_t i = 0; i < sizeof private_dirs / sizeof *private_dirs; i++)
		if (within(path, private_dirs[i]))
			return 1;
	return 0;
}

/* mkdir_all makes dir and its missing parents with mode (enter, not list). */
static void mkdir_all(const char *dir, mode_t mode) {
	char *buf = strdup(dir);
	if (!buf)
		fail("out of memory");
	for (char *c = buf + 1;; c++) {
		if (*c != '/' && *c != 0)
			continue;
		char saved = *c;
		*c = 0;
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			fail("mkdir %s: %s", buf, errstr(errno));
		*c = saved;
		if (saved == 0)
			break;
	}
	struct stat st;
	if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
		fail("mkdir %s: not a directory", buf);
	free(buf);
}

/* open_as opens path (O_PATH) with the workload's own rights: its fsuid and fsgid, no
 * supplementary groups (dropped before). What is bound back in the sandbox is then what
 * the workload could reach itself, never what a symlink a tenant put under /tmp points
 * root at (a file behind a directory the workload may not enter). */
static int open_as(const char *path, const struct spec *s) {
	setfsgid(s->gid);
	setfsuid(s->uid);
	if ((uid_t)setfsuid(-1) != s->uid || (gid_t)setfsgid(-1) != s->gid)
		fail("open %s as UID %u: setfsuid refused", path, (unsigned)s->uid);
	/* no magic link (/proc/<pid>/exe, /proc/<pid>/root): the helper's capabilities other
	 * than the filesystem's (CAP_SYS_PTRACE) would let it through where the workload may not go */
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
	int e = errno;
	setfsuid(0);
	setfsgid(0);
	if ((uid_t)setfsuid(-1) != 0 || (gid_t)setfsgid(-1) != 0)
		fail("open %s: could not take root's filesystem rights back", path);
	errno = e;
	return fd;
}

/* open_parent opens the host's /proc entry of this process's parent (the nexlet): in a
 * new PID namespace getppid says 0, so whether the parent is alive is read there. */
static int open_parent(void) {
	char buf[1024], path[64];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("/proc/self/stat: %s", errstr(errno));
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		fail("/proc/self/stat: unreadable");
	buf[n] = 0;
	char *c = strrchr(buf, ')');
	int ppid;
	if (!c || sscanf(c + 1, " %*c %d", &ppid) != 1 || ppid <= 0)
		fail("/proc/self/stat: %s", buf);
	snprintf(path, sizeof path, "/proc/%d", ppid);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fail("open the parent's /proc entry: %s", errstr(errno));
	return fd;
}

/* alive says whether the process whose /proc entry is dir runs and is not a zombie. */
static int alive(int dir) {
	char buf[512];
	int fd = openat(dir, "stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *c = strrchr(buf, ')');
	char state;
	if (!c || sscanf(c + 1, " %c", &state) != 1)
		return 0;
	return state != 'Z' && state != 'X';
}

static void handled(int sig) { (void)sig; }

/* default_signals gives the workload every signal's default disposition and none
 * blocked: exec resets only caught signals, and keeps the mask and what is ignored (an
 * ignored SIGPIPE would stay ignored in the workload; a race-detector build of a Go
 * ancestor ignores signal 32). The system call itself, because the C library refuses to
 * touch the two real-time signals it keeps for itself; a zeroed kernel sigaction is
 * SIG_DFL with no flags and an empty mask whatever its layout. */
static void default_signals(void) {
	unsigned long dfl[8];
	memset(dfl, 0, sizeof dfl);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, dfl, NULL, (size_t)8);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* init is PID 1 of the sandbox's PID namespace: it starts the workload, reaps every
 * process that ends inside, forwards stop signals to a workload that left its process
 * group, and exits with the workload's status (128+N when signal N killed it). Its exit
 * makes the kernel kill every process left in the namespace. */
__attribute__((noreturn)) static void init(struct spec *s) {
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
		sigaddset(&set, forwarded[i]);
	sigaddset(&set, SIGCHLD);
	/* blocked and taken with sigwaitinfo; a handler, not SIG_DFL, because the kernel
	 * gives a namespace's init only the signals it handles, and not SIG_IGN, which the
	 * workload would inherit */
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		fail("block signals: %s", errstr(errno));
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handled;
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&set, sig) == 1 && sigaction(sig, &sa, NULL) != 0)
			fail("signal %d: %s", sig, errstr(errno));
	int ep[2]; /* the child's exec error, if any; closed by a successful exec */
	if (pipe2(ep, O_CLOEXEC) != 0)
		fail("pipe: %s", errstr(errno));
	/* vfork: the child only resets its signals and execs (or writes the error and
	 * exits), so it need not copy this process's memory; a fork's page tables and
	 * copies on write were a tenth of a sandboxed start's CPU on a 2-core VM */
	pid_t child = vfork();
	if (child < 0)
		fail("exec %s: %s", s->path, errstr(errno));
	if (child == 0) {
		default_signals();
		execve(s->path, s->argv, s->env);
		int e = errno;
		ssize_t w = write(ep[1], &e, sizeof e);
		(void)w;
		_exit(127);
	}
	close(ep[1]);
	int e = 0;
	ssize_t n;
	do
		n = read(ep[0], &e, sizeof e);
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof e) {
		waitpid(child, NULL, 0);
		exec_errno = e;
		fail("exec %s: %s", s->path, errstr(e));
	}
	if (s->ready) {
		close(READY_FD); /* the workload runs: the nexlet's start returns */
		report_fd = -1;
	}
	close(0);                /* the workload's stdin is its own */
	for (;;) {
		for (;;) { /* reap what ended: orphans reparented here, and the workload */
			int ws;
			pid_t pid = waitpid(-1, &ws, WNOHANG);
			if (pid < 0 && errno == EINTR)
				continue;
			if (pid <= 0)
				break;
			if (pid == child && WIFSIGNALED(ws))
				exit(128 + WTERMSIG(ws));
			if (pid == child && WIFEXITED(ws))
				exit(WEXITSTATUS(ws));
		}
		int sig = sigwaitinfo(&set, NULL);
		if (sig > 0 && sig != SIGCHLD) {
			pid_t pg = getpgid(child);
			if (pg >= 0 && pg != getpgrp())
				kill(child, sig);
		}
	}
}

/* read_spec joins the spec's parts: $NEX_SANDBOX_SPEC, then $NEX_SANDBOX_SPEC_1 and on
 * (one environment string holds at most 128 KiB; Spec.Environ splits longer ones). */
static char *read_spec(void) {
	const char *first = getenv(SPEC_ENV);
	if (!first || !*first)
		return NULL;
	size_t total = strlen(first);
	char name[64];
	int parts = 1;
	for (const char *p; parts < 4096; parts++, total += strlen(p)) {
		snprintf(name, sizeof name, SPEC_ENV "_%d", parts);
		if (!(p = getenv(name)))
			break;
	}
	char *raw = xmalloc(total + 1), *end = raw;
	end = stpcpy(end, first);
	for (int i = 1; i < parts; i++) {
		snprintf(name, sizeof name, SPEC_ENV "_%d", i);
		end = stpcpy(end, getenv(name));
	}
	return raw;
}

/* scope puts the sandbox in a Landlock domain of its own that scopes abstract unix
 * sockets and signals (Landlock ABI 6, Linux 6.12): its processes may connect to no
 * abstract socket and signal no process outside it. Sandboxes share the host's network
 * namespace, and with it its abstract sockets: a tenant's jobs passed their /dev/shm
 * files, and the memory in them, to a workload of the tenant's that outlived them,
 * counted against nothing (a review's walk). Older kernels: nothing (see internal/sandbox). */
static void scope(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, 1U /* LANDLOCK_CREATE_RULESET_VERSION */);
	if (abi < 6)
		return;
	struct {
		unsigned long long handled_access_fs, handled_access_net, scoped;
	} attr = {0, 0, 1ULL | 2ULL /* LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL */};
	int fd = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof attr, 0U);
	if (fd < 0)
		fail("landlock ruleset: %s", errstr(errno));
	if (syscall(__NR_landlock_restrict_self, fd, 0U) != 0)
		fail("landlock: %s", errstr(errno));
	close(fd);
}

int main(int argc, char **argv) {
	const char *raw = read_spec();
	const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
	base = base ? base + 1 : (argc > 0 && argv[0] ? argv[0] : "");
	if (strcmp(base, ARG0) != 0 || !raw || !*raw) {
		fputs("nex-sandbox: started by nexlet-native only, to put a workload in a sandbox of its own (docs/security.md)\n", stderr);
		return 2;
	}
	struct spec s;
	memset(&s, 0, sizeof s);
	parse(raw, &s);
	if (s.ready) {
		fcntl(READY_FD, F_SETFD, FD_CLOEXEC); /* the workload does not hold it */
		report_fd = READY_FD;
	}

	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fail("make mounts private: %s", errstr(errno));
	int parent = open_parent(); /* while /proc is still the host's */
	if (setgroups(0, NULL) != 0) /* root's groups: neither open_as nor the workload has them */
		fail("setgroups: %s", errstr(errno));
	/* what the workload needs below a directory about to be hidden (a workdir or an
	 * executable under /tmp) is held open now and bound back in place afterwards */
	const char *keep_path[2];
	int keep_fd[2], keeps = 0;
	const char *wanted[2] = {s.dir, s.path};
	for (int i = 0; i < 2; i++) {
		if (!wanted[i][0] || !under(wanted[i]))
			continue;
		/* the executable in the kept workdir: its bind shows it. Binding it too would make
		 * its mount point as root through the workdir, a tenant's symlinks and all. */
		if (keeps > 0 && within(wanted[i], keep_path[0]))
			continue;
		int fd = open_as(wanted[i], &s);
		if (fd < 0)
			fail("open %s as UID %u: %s", wanted[i], (unsigned)s.uid, errstr(errno));
		keep_path[keeps] = wanted[i];
		keep_fd[keeps++] = fd;
	}
	for (size_t i = 0; i < sizeof private_dirs / sizeof *private_dirs; i++) {
		struct stat st;
		if (stat(private_dirs[i], &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		char opts[64];
		if (s.tmpsize > 0)
			snprintf(opts, sizeof opts, "mode=1777,size=%llu", s.tmpsize);
		else
			snprintf(opts, sizeof opts, "mode=1777");
		if (mount("tmpfs", private_dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
			fail("private %s: %s", private_dirs[i], errstr(errno));
	}
	for (int i = 0; i < keeps; i++) {
		struct stat st;
		if (fstat(keep_fd[i], &st) != 0)
			fail("%s: %s", keep_path[i], errstr(errno));
		char *dir = strdup(keep_path[i]);
		if (!dir)
			fail("out of memory");
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			mkdir_all(dir, 0711);
		}
		free(dir);
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(keep_path[i], 0700) != 0 && errno != EEXIST)
				fail("mkdir %s: %s", keep_path[i], errstr(errno));
		} else {
			int fd = open(keep_path[i], O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
			if (fd < 0)
				fail("open %s: %s", keep_path[i], errstr(errno));
			close(fd);
		}
		char src[64];
		snprintf(src, sizeof src, "/proc/self/fd/%d", keep_fd[i]);
		if (mount(src, keep_path[i], NULL, MS_BIND, NULL) != 0)
			fail("keep %s: %s", keep_path[i], errstr(errno));
		close(keep_fd[i]);
	}
	/* a pool of pseudo-terminals of its own, of PTY_MAX: the host's (kernel.pty.max, one
	 * for the whole machine) was every workload's to use up, logins' and every tenant's
	 * exec --tty with it. Where devpts cannot be mounted anew, the host's pool stays. */
	struct stat pts;
	if (stat("/dev/pts", &pts) == 0 && S_ISDIR(pts.st_mode) &&
	    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,max=" PTY_MAX) == 0 &&
	    mount("/dev/pts/ptmx", "/dev/ptmx", NULL, MS_BIND, NULL) != 0)
		fail("a pseudo-terminal pool of its own: %s", errstr(errno));
	/* a /proc of the new PID namespace */
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible") != 0)
		fail("a /proc of its own: %s", errstr(errno));
	if (s.probe) { /* said, not only in the exit status: the nexlet's reaper may take that */
		fputs(PROBE_OK "\n", stdout);
		exit(0);
	}
	if (setresgid(s.gid, s.gid, s.gid) != 0)
		fail("setresgid: %s", errstr(errno));
	if (setresuid(s.uid, s.uid, s.uid) != 0)
		fail("setresuid: %s", errstr(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("no_new_privs: %s", errstr(errno));
	scope();
	/* a change of user clears the parent-death signal: the workload ends with the nexlet */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		fail("pdeathsig: %s", errstr(errno));
	if (!alive(parent)) /* the nexlet died before the signal was set */
		exit(137);
	close(parent);
	if (chdir(s.dir) != 0)
		fail("chdir %s: %s", s.dir, errstr(errno));
	if (getpid() != 1) { /* not a PID namespace of its own: become the workload */
		default_signals();
		execve(s.path, s.argv, s.env);
		exec_errno = errno;
		fail("exec %s: %s", s.path, errstr(exec_errno));
	}
	init(&s);
}
