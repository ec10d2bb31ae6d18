// Package config finds and reads nex's JSON config file for kong: keys mirror flags
// ("-" written "_"), flat, dotted or nested, and command flags nest under the command path.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/nexrun/nex/internal/suggest"
)

// Path finds --config in args, else the first existing default location.
func Path(args []string) (string, error) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1], nil
		}
		if len(a) > 9 && a[:9] == "--config=" {
			return a[9:], nil
		}
	}
	var candidates []string
	candidates = append(candidates, "/etc/nex/config.json")
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".config", "nex", "config.json"))
	}
	candidates = append(candidates, "config.json")
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err != nil || st.IsDir() {
			continue
		}
		f, err := os.Open(c)
		if err != nil { // a default place nobody pointed us at must not lock a user out
			if Warn != nil {
				Warn(fmt.Sprintf("config %s is not readable (%v); going on without it", c, errors.Unwrap(err)))
			}
			continue
		}
		_ = f.Close()
		return c, nil
	}
	return "", nil
}

// Warn, when set, is told of a config file in a default place that is skipped because it
// cannot be read (an explicit --config that cannot be read stays an error).
var Warn func(msg string)

// Load reads a JSON config whose keys mirror flags ("-" as "_"), flat
// ("nats_context"), dotted ("nats.context") or nested ({"nats": {"context": ...}}),
// and command flags nested under the command path ({"node": {"up": {...}}}); rootScopes
// are further places to look for root flags.
func Load(path string, rootScopes ...[]string) (kong.Resolver, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	var values map[string]any
	if err := json.Unmarshal(b, &values); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	return kong.ResolverFunc(func(_ *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
		var scope []string
		for n := parent.Node(); n != nil && n.Type != kong.ApplicationNode; n = n.Parent {
			scope = append([]string{n.Name}, scope...)
		}
		var candidates [][]string
		for _, name := range append([]string{flag.Name}, flag.Aliases...) { // an old spelling too
			key := snake(name)
			candidates = append(candidates, slices.Concat(scope, []string{key}), slices.Concat(scope, splitDots(key)))
			if len(scope) == 0 {
				// a daemon's root flags may also live under a command path ({"node": {"up": ...}})
				for _, rs := range rootScopes {
					candidates = append(candidates, slices.Concat(rs, []string{key}), slices.Concat(rs, splitDots(key)))
				}
			}
		}
		key := snake(flag.Name)
		for _, path := range candidates {
			v, ok := lookup(values, path)
			if !ok {
				continue
			}
			// {"embedded": {"listen": ...}} holds embedded.listen, not a value for --embedded;
			// but a map for a list of NS=VALUE entries is those entries ({"run_as": {"a":
			// ["svc-a"]}} for --run-as a=svc-a)
			if m, isMap := v.(map[string]any); isMap && flag.Target.Kind() != reflect.Map {
				if flag.Target.Kind() != reflect.Slice {
					continue
				}
				return keyedEntries(key, m)
			}
			return v, nil
		}
		return nil, nil
	}), nil
}

// keyedEntries turns {"a": ["x", "y"], "b": "z"} into ["a=x", "a=y", "b=z"], keys sorted.
func keyedEntries(key string, m map[string]any) ([]any, error) {
	var out []any
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := m[k].(type) {
		case string:
			out = append(out, k+"="+v)
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("config %s.%s: %v is not a string", key, k, e)
				}
				out = append(out, k+"="+s)
			}
		default:
			return nil, fmt.Errorf("config %s.%s: want a string or a list of strings, not %v", key, k, v)
		}
	}
	return out, nil
}

func snake(s string) string { return strings.ReplaceAll(s, "-", "_") }

func splitDots(s string) []string { return strings.Split(s, ".") }

func lookup(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Check reads the config at path and refuses a key that no flag of app reads, naming the
// closest one ("did you mean ..."): a typo must not be taken for a setting that was made.
// Keys that begin with "#" are comments.
// A command's flags are read under the command's path ({"node": {"up": {...}}}), and also
// at the top level of those under alsoAtRoot (nexd reads node up's flags there).
func Check(path string, app *kong.Application, alsoAtRoot ...string) error {
	unknown, known, err := unknownKeys(path, app, "", alsoAtRoot...)
	if err != nil || len(unknown) == 0 {
		return err
	}
	var why []string
	for _, k := range unknown {
		why = append(why, fmt.Sprintf("%q%s", k, didYouMean(k, known)))
	}
	return fmt.Errorf("config %s: unknown key %s (keys are flag names with - written _, nested under a command's path)", path, strings.Join(why, ", "))
}

// CheckDaemon checks a config file nexd reads, which nex commands may share: a key under
// node.up or nats that is not a flag of the daemon (app) is refused, with the closest one; a key
// elsewhere that is not the daemon's is the nex commands' business (they refuse their
// own typos), and only one close to a daemon flag is said, with Warn.
func CheckDaemon(path string, app *kong.Application) error {
	unknown, known, err := unknownKeys(path, app, "node.up")
	if err != nil {
		return err
	}
	var why []string
	for _, k := range unknown {
		hint := didYouMean(strings.TrimPrefix(k, "node.up."), known)
		switch {
		case strings.HasPrefix(k, "node.up."), strings.HasPrefix(k, "nats."): // nats: the same flags as nex's
			why = append(why, fmt.Sprintf("%q%s", k, hint))
		case hint != "" && Warn != nil:
			Warn(fmt.Sprintf("config %s: %q is not a nexd flag%s; ignored (nex commands may use it)", path, k, hint))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("config %s: unknown key %s (under node.up and nats, keys are nexd's flag names with - written _)", path, strings.Join(why, ", "))
}

// unknownKeys lists the keys of the config file at path that name no flag of app (keys
// of a command's flags nest under its path; those of the commands alsoAtRoot name may sit
// at the top too; app's own flags may also sit under alias, when given), sorted, and the
// keys that do.
func unknownKeys(path string, app *kong.Application, alias string, alsoAtRoot ...string) ([]string, map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config %s: %w", path, err)
	}
	var values map[string]any
	if err := json.Unmarshal(b, &values); err != nil {
		return nil, nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	known := map[string]bool{}
	var walk func(n *kong.Node, scope []string)
	walk = func(n *kong.Node, scope []string) {
		atRoot := slices.Contains(alsoAtRoot, strings.Join(scope, " "))
		for _, f := range n.Flags {
			for _, name := range append([]string{f.Name}, f.Aliases...) {
				known[strings.Join(append(slices.Clone(scope), snake(name)), ".")] = true
				if atRoot {
					known[snake(name)] = true
				}
				if alias != "" && len(scope) == 0 {
					known[alias+"."+snake(name)] = true
				}
			}
		}
		for _, c := range n.Children {
			if c.Type == kong.CommandNode {
				walk(c, append(slices.Clone(scope), c.Name))
			}
		}
	}
	walk(app.Node, nil)
	var unknown []string
	var visit func(path string, v any)
	visit = func(path string, v any) {
		if known[path] {
			return
		}
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, child := range m {
				if strings.HasPrefix(k, "#") { // a comment, as deploy/config.json has them
					continue
				}
				visit(strings.TrimPrefix(path+"."+k, "."), child)
			}
			return
		}
		unknown = append(unknown, path)
	}
	visit("", values)
	slices.Sort(unknown)
	return unknown, known, nil
}

// didYouMean names the known key closest to k, when one is close.
func didYouMean(k string, known map[string]bool) string {
	if best := suggest.Closest(k, slices.Sorted(maps.Keys(known)), 3); best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}
