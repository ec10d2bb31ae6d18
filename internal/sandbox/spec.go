package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// specVersion opens every encoded spec: a helper of another build refuses it.
const specVersion = "nex-sandbox/1"

// Encode writes the spec as both helpers read it (this package and nex-sandbox.c):
// netstrings ("<length>:<bytes>,"), in order: the version, flags ('p' probe, 'r' ready),
// uid, gid, the tmpfs size, the workdir, the executable, the count of argv then each, the
// count of env then each. Netstrings carry any bytes an environment can (all but NUL)
// with nothing to escape, and C reads them in a few lines.
func (s Spec) Encode() string {
	var b strings.Builder
	put := func(v string) {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
		b.WriteByte(',')
	}
	flags := ""
	if s.Probe {
		flags += "p"
	}
	if s.Ready {
		flags += "r"
	}
	put(specVersion)
	put(flags)
	put(strconv.FormatUint(uint64(s.UID), 10))
	put(strconv.FormatUint(uint64(s.GID), 10))
	put(strconv.FormatInt(max(s.TmpSize, 0), 10))
	put(s.Dir)
	put(s.Path)
	for _, l := range [][]string{s.Argv, s.Env} {
		put(strconv.Itoa(len(l)))
		for _, v := range l {
			put(v)
		}
	}
	return b.String()
}

// chunk is the most of an encoded spec one environment string carries: the kernel refuses
// a string over 128 KiB (MAX_ARG_STRLEN), and a workload's argv and env together may be
// more (a start request may be 256 KiB).
const chunk = 128<<10 - 64

// Environ is the helper's whole environment: the encoded spec in Env, and what does not
// fit in one string in Env_1, Env_2 and so on.
func (s Spec) Environ() []string {
	raw, env := s.Encode(), []string(nil)
	for i := 0; raw != "" || i == 0; i++ {
		name, n := Env, min(len(raw), chunk)
		if i > 0 {
			name += "_" + strconv.Itoa(i)
		}
		env, raw = append(env, name+"="+raw[:n]), raw[n:]
	}
	return env
}

// specFromEnviron is the encoded spec in this process's environment (Environ's parts).
func specFromEnviron() string {
	raw := os.Getenv(Env)
	for i := 1; ; i++ {
		part, ok := os.LookupEnv(Env + "_" + strconv.Itoa(i))
		if !ok {
			return raw
		}
		raw += part
	}
}

// errSpec is a spec that is not one Encode wrote.
var errSpec = errors.New("bad spec")

// specReader reads netstrings off the front of raw.
type specReader struct{ raw string }

func (r *specReader) field(what string) (string, error) {
	i := strings.IndexByte(r.raw, ':')
	if i <= 0 {
		return "", fmt.Errorf("%w: %s", errSpec, what)
	}
	n, err := strconv.ParseUint(r.raw[:i], 10, 31)
	if err != nil || uint64(len(r.raw)-i-1) < n+1 || r.raw[i+1+int(n)] != ',' {
		return "", fmt.Errorf("%w: %s", errSpec, what)
	}
	v := r.raw[i+1 : i+1+int(n)]
	r.raw = r.raw[i+2+int(n):]
	return v, nil
}

// number reads a field of decimal digits no greater than max.
func (r *specReader) number(what string, max uint64) (uint64, error) {
	v, err := r.field(what)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%w: %s", errSpec, what)
	}
	return n, nil
}

// list reads a count, then that many fields.
func (r *specReader) list(what string) ([]string, error) {
	// every entry takes 3 bytes at least ("0:,"): a count beyond that is a lie
	n, err := r.number(what, uint64(len(r.raw)/3))
	if err != nil {
		return nil, err
	}
	l := make([]string, n)
	for i := range l {
		if l[i], err = r.field(what); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Decode reads what Encode wrote.
func Decode(raw string) (Spec, error) {
	var s Spec
	if strings.IndexByte(raw, 0) >= 0 { // an environment cannot carry one: nex-sandbox.c never sees one
		return s, fmt.Errorf("%w: a NUL byte", errSpec)
	}
	r := &specReader{raw}
	v, err := r.field("version")
	if err != nil {
		return s, err
	}
	if v != specVersion {
		return s, fmt.Errorf("%w: version %s, not %s (nexlet-native and nex-sandbox of different builds)", errSpec, v, specVersion)
	}
	flags, err := r.field("flags")
	if err != nil {
		return s, err
	}
	for _, f := range flags {
		switch f {
		case 'p':
			s.Probe = true
		case 'r':
			s.Ready = true
		default:
			return s, fmt.Errorf("%w: flag %c", errSpec, f)
		}
	}
	// (uid_t)-1 is "unchanged" to setresuid: not a user
	uid, err := r.number("uid", 1<<32-2)
	if err != nil {
		return s, err
	}
	gid, err := r.number("gid", 1<<32-2)
	if err != nil {
		return s, err
	}
	size, err := r.number("tmpfs size", 1<<63-1)
	if err != nil {
		return s, err
	}
	s.UID, s.GID, s.TmpSize = uint32(uid), uint32(gid), int64(size)
	if s.Dir, err = r.field("workdir"); err != nil {
		return s, err
	}
	if s.Path, err = r.field("executable"); err != nil {
		return s, err
	}
	if s.Argv, err = r.list("argv"); err != nil {
		return s, err
	}
	if s.Env, err = r.list("env"); err != nil {
		return s, err
	}
	if r.raw != "" {
		return s, fmt.Errorf("%w: bytes after its end", errSpec)
	}
	// clean, so that a path's text says where it lies: the helper keeps what lies under a
	// private directory by its text (/tmp/../etc/x is not under /tmp), and makes its
	// mount point on the new tmpfs by that text, as root
	if !cleanAbs(s.Dir) || (!s.Probe && !cleanAbs(s.Path)) {
		return s, fmt.Errorf("%w: workdir and executable must be clean absolute paths (no . or .. parts, no //, no trailing /)", errSpec)
	}
	return s, nil
}

// cleanAbs says whether p is an absolute path with no ., .. or empty parts.
func cleanAbs(p string) bool { return strings.HasPrefix(p, "/") && path.Clean(p) == p }
