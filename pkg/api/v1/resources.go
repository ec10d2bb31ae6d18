package v1

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Resources is what a workload asks of its machine: the conventional "resources" field of
// a start request, which a node reads for placement (like "expose_ports") and a nexlet
// enforces. A zero field asks for nothing (no limit, no room reserved).
type Resources struct {
	// Memory is the most memory the workload's processes may use together.
	Memory ByteSize `json:"memory,omitempty"`
	// CPU is the most CPU time it may use, in cores (0.5: half of one core).
	CPU float64 `json:"cpu,omitempty"`
	// PIDs is the most processes and threads it may have at once.
	PIDs int `json:"pids,omitempty"`
	// Disk is the most its workdir may hold (and, in a sandbox, its private /tmp): over
	// it the workload is stopped for good, exit_reason disk_limit. Not a placement matter.
	Disk ByteSize `json:"disk,omitempty"`
}

// UnmarshalJSON names the field of a malformed value.
func (r *Resources) UnmarshalJSON(data []byte) error {
	type plain Resources
	if err := json.Unmarshal(data, (*plain)(r)); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("resources.%s: %s is not a %s", te.Field, te.Value, te.Type)
		}
		return fmt.Errorf("resources.memory: %v", err) // the one field with its own decoding
	}
	if r.Memory == 0 {
		var given struct {
			Memory json.RawMessage `json:"memory"`
		}
		if json.Unmarshal(data, &given) == nil && len(given.Memory) > 0 && string(given.Memory) != "null" {
			return fmt.Errorf("resources.memory: %s is no limit: leave memory out for none, or give at least %s", given.Memory, ByteSize(MinMemory))
		}
	}
	return nil
}

// Resource names: of a nexlet's registration (the limits it enforces) and of messages.
const (
	ResourceMemory = "memory"
	ResourceCPU    = "cpu"
	ResourcePIDs   = "pids"
	ResourceDisk   = "disk"
)

// Cgroup kinds: of a nexlet's registration, and of the node tag nex.cgroups.
const (
	CgroupsV2   = "v2"
	CgroupsV1   = "v1"
	CgroupsNone = "none"
	// TagCgroups is the node tag that says which cgroups enforce its workloads' limits.
	TagCgroups = "nex.cgroups"
)

// Empty reports whether r asks for nothing.
func (r *Resources) Empty() bool {
	return r == nil || (r.Memory == 0 && r.CPU == 0 && r.PIDs == 0 && r.Disk == 0)
}

// Names lists the resources r limits, in a fixed order.
func (r *Resources) Names() []string {
	var out []string
	if r == nil {
		return out
	}
	if r.Memory > 0 {
		out = append(out, ResourceMemory)
	}
	if r.CPU > 0 {
		out = append(out, ResourceCPU)
	}
	if r.PIDs > 0 {
		out = append(out, ResourcePIDs)
	}
	if r.Disk > 0 {
		out = append(out, ResourceDisk)
	}
	return out
}

// MinMemory and MinCPU are the smallest limits a workload may ask for: below them a
// process cannot even start.
const (
	MinMemory = 4 << 20
	MinCPU    = 0.01
	// MaxPIDs is the most processes a limit may name: Linux's own most (pid_max).
	MaxPIDs = 4194304
)

// Validate checks the values; field names the JSON path for messages.
func (r *Resources) Validate(field string) error {
	if r == nil {
		return nil
	}
	if r.Memory < 0 || (r.Memory > 0 && r.Memory < MinMemory) {
		return BadRequest("%s.memory: %s is below the smallest limit of %s", field, r.Memory, ByteSize(MinMemory))
	}
	if r.CPU < 0 || math.IsNaN(r.CPU) || math.IsInf(r.CPU, 0) || (r.CPU > 0 && r.CPU < MinCPU) {
		return BadRequest("%s.cpu: %v is not a number of cores of at least %v", field, r.CPU, MinCPU)
	}
	if r.PIDs < 0 || r.PIDs > MaxPIDs {
		return BadRequest("%s.pids: %d is not a number of processes from 1 to %d", field, r.PIDs, MaxPIDs)
	}
	if r.Disk < 0 || (r.Disk > 0 && r.Disk < MinMemory) {
		return BadRequest("%s.disk: %s is below the smallest limit of %s", field, r.Disk, ByteSize(MinMemory))
	}
	return nil
}

// RequestedResources reads the conventional "resources" field of a start request: nil
// when it has none, an error naming the field when it is malformed.
func RequestedResources(startRequest json.RawMessage) (*Resources, error) {
	var sr struct {
		Resources *Resources `json:"resources"`
	}
	if len(startRequest) == 0 || !mayHold(startRequest, "resources") {
		return nil, nil
	}
	if err := json.Unmarshal(startRequest, &sr); err != nil {
		return nil, BadRequest("%s", InStartRequest(err, "start_request.resources"))
	}
	if err := sr.Resources.Validate("start_request.resources"); err != nil {
		return nil, err
	}
	if sr.Resources.Empty() {
		return nil, nil
	}
	return sr.Resources, nil
}

// InStartRequest is the message of err, from decoding a start request: an error that
// names its field (resources.memory: ...) gets the field's whole path
// (start_request.resources.memory: ...), any other is put under field.
func InStartRequest(err error, field string) string {
	if strings.HasPrefix(err.Error(), "resources.") {
		return "start_request." + err.Error()
	}
	return field + ": " + err.Error()
}

// ByteSize is a number of bytes. In JSON it is a number of bytes or a string with a unit:
// binary (KiB, MiB, GiB, TiB), decimal (K or KB, M or MB, G or GB, T or TB), or B.
type ByteSize int64

var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseByteSize reads "256MiB", "1.5G", "1048576" and the like.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	f, err := strconv.ParseFloat(num, 64)
	mult, ok := byteUnits[unit]
	if err != nil || !ok || f < 0 {
		return 0, fmt.Errorf("%q is not a size like \"256MiB\", \"1G\" or a number of bytes", s)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(v), nil
}

// UnmarshalJSON takes a number of bytes or a string with a unit.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		*b = v
		return nil
	}
	var n float64
	if err := json.Unmarshal(data, &n); err != nil || n < 0 || n != math.Trunc(n) {
		return fmt.Errorf("%s is not a whole number of bytes or a size like \"256MiB\"", data)
	}
	*b = ByteSize(n)
	return nil
}

// FormatCores prints a number of CPU cores as flags and requests take it: 2, 0.5, 1.25.
func FormatCores(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// String prints the size in the largest binary unit that keeps it readable.
func (b ByteSize) String() string {
	v := float64(b)
	for _, u := range []struct {
		name string
		size float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v >= u.size {
			return strconv.FormatFloat(math.Round(v/u.size*10)/10, 'f', -1, 64) + " " + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + " B"
}

// ParseResources reads limits written as a flag: "memory=256MiB,cpu=0.5,pids=512" (any
// of the three, comma-separated); "" is none.
func ParseResources(s string) (Resources, error) {
	var r Resources
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return r, fmt.Errorf("%q: want NAME=VALUE, with NAME memory, cpu or pids (memory=256MiB,cpu=0.5,pids=512)", kv)
		}
		switch strings.TrimSpace(k) {
		case ResourceMemory:
			b, err := ParseByteSize(strings.TrimSpace(v))
			if err != nil {
				return r, fmt.Errorf("memory=%s: %w", v, err)
			}
			r.Memory = b
		case ResourceCPU:
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return r, fmt.Errorf("cpu=%s: want a number of cores, like 0.5", v)
			}
			r.CPU = f
		case ResourcePIDs:
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return r, fmt.Errorf("pids=%s: want a number of processes", v)
			}
			r.PIDs = n
		case ResourceDisk:
			b, err := ParseByteSize(strings.TrimSpace(v))
			if err != nil {
				return r, fmt.Errorf("disk=%s: %w", v, err)
			}
			r.Disk = b
		default:
			return r, fmt.Errorf("%q: unknown resource %q (memory, cpu, pids or disk)", kv, k)
		}
	}
	return r, r.Validate("limits")
}

// String writes r as ParseResources reads it.
func (r Resources) String() string {
	var out []string
	if r.Memory > 0 {
		out = append(out, "memory="+r.Memory.String())
	}
	if r.CPU > 0 {
		out = append(out, "cpu="+FormatCores(r.CPU))
	}
	if r.PIDs > 0 {
		out = append(out, "pids="+strconv.Itoa(r.PIDs))
	}
	if r.Disk > 0 {
		out = append(out, "disk="+r.Disk.String())
	}
	return strings.Join(out, ",")
}

// WithLimits is r (nil: nothing asked) with each resource it leaves out taken from
// defaults, and an error naming the first that is above ceiling (a zero field of ceiling
// sets no ceiling). A resource with a ceiling is never left unlimited: it takes the
// default, else the ceiling itself.
func (r *Resources) WithLimits(defaults, ceiling Resources, field string) (*Resources, error) {
	out := Resources{}
	if r != nil {
		out = *r
	}
	if out.Memory == 0 {
		out.Memory = cmpOr(defaults.Memory, ceiling.Memory)
	}
	if out.CPU == 0 {
		out.CPU = cmpOr(defaults.CPU, ceiling.CPU)
	}
	if out.PIDs == 0 {
		out.PIDs = cmpOr(defaults.PIDs, ceiling.PIDs)
	}
	if out.Disk == 0 {
		out.Disk = cmpOr(defaults.Disk, ceiling.Disk)
	}
	switch {
	case ceiling.Memory > 0 && out.Memory > ceiling.Memory:
		return nil, Errorf(CodeSchemaInvalid, "%s.memory: %s is above this node's ceiling of %s (nexd --max-limits)", field, out.Memory, ceiling.Memory)
	case ceiling.CPU > 0 && out.CPU > ceiling.CPU:
		return nil, Errorf(CodeSchemaInvalid, "%s.cpu: %s cores is above this node's ceiling of %s (nexd --max-limits)", field, FormatCores(out.CPU), FormatCores(ceiling.CPU))
	case ceiling.PIDs > 0 && out.PIDs > ceiling.PIDs:
		return nil, Errorf(CodeSchemaInvalid, "%s.pids: %d is above this node's ceiling of %d (nexd --max-limits)", field, out.PIDs, ceiling.PIDs)
	case ceiling.Disk > 0 && out.Disk > ceiling.Disk:
		return nil, Errorf(CodeSchemaInvalid, "%s.disk: %s is above this node's ceiling of %s (nexd --max-limits)", field, out.Disk, ceiling.Disk)
	}
	if out.Empty() {
		return nil, nil
	}
	return &out, nil
}

func cmpOr[T ByteSize | float64 | int](a, b T) T {
	if a != 0 {
		return a
	}
	return b
}
