package main

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/alecthomas/kong"

	"github.com/nexrun/nex/internal/config"
)

// Building kong's model of the whole command tree is most of what a command costs before
// it does anything (its tags parsed and interpolated, field by field). A command whose
// noun is named on the line is parsed first against a model of that noun alone, the
// globals beside it, and of its one verb when the verb follows the noun ("workload
// start": the model of `workload` with `start` its only verb); anything else (help,
// completion, no command, a line that does not parse, a config file that names another
// command's keys) is parsed against the whole tree, so what a user sees of usage and
// errors is the whole tree's, as before.

// wholeTreeOnly turns the lean model off (the tests compare the two); leanParses counts
// the lines a lean model parsed, verbParses those a model of one verb parsed,
// versionParses the `nex --version` answered without a model.
var (
	wholeTreeOnly bool
	leanParses    atomic.Int64
	verbParses    atomic.Int64
	versionParses atomic.Int64
)

// parseArgs builds kong's model for args and parses them into root: first the lean model
// of the noun args name, when they name one and parse with it, else the whole tree.
// cfgPath, when not empty, is checked against the model that parsed.
func parseArgs(root *CLI, args []string, opts []kong.Option, cfgPath string) (*kong.Kong, *kong.Context, error) {
	if lean, verb, ok := leanOptions(root, args); ok && !wholeTreeOnly {
		fresh := *root
		parser, err := kong.New(&struct{}{}, append(slices.Clone(opts), lean...)...)
		if err == nil && cfgPath != "" {
			err = config.Check(cfgPath, parser.Model, "node up")
		}
		if err == nil {
			kctx, perr := parser.Parse(args)
			if perr == nil && leanNoun(kctx) {
				verb.keep()
				leanParses.Add(1)
				return parser, kctx, nil
			}
		}
		*root = fresh // what the lean parse set goes; the whole tree parses from the start
	}
	parser, err := kong.New(root, opts...)
	if err == nil && cfgPath != "" {
		err = config.Check(cfgPath, parser.Model, "node up") // nexd reads node up's flags at the top too
	}
	if err != nil {
		return nil, nil, err
	}
	kctx, err := parser.Parse(args)
	return parser, kctx, err
}

// leanNoun says whether the command kctx selected is under a noun of the lean model (its
// only command): the noun was the command, not a flag's value that looked like one.
func leanNoun(kctx *kong.Context) bool {
	for _, p := range kctx.Path {
		if p.Command != nil && p.Command.Parent == kctx.Model.Node {
			return true
		}
	}
	return false
}

// leanOptions are the kong options of a model with the globals and the one noun args
// name (the first argument that is a noun's name or alias), that noun with only its verb
// when the next argument names one, or the globals alone for --version; none when help is
// asked for or nothing of the kind is named. A model of one verb parses into a struct of
// its own: verb.keep copies what it parsed into root's field of that verb.
func leanOptions(root *CLI, args []string) (opts []kong.Option, verb leanVerb, ok bool) {
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "--" }) {
		return nil, verb, false
	}
	t := reflect.TypeFor[CLI]()
	for k, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, ok := nounName(f)
			if !ok || !named(f, name, a) {
				continue
			}
			noun := reflect.ValueOf(root).Elem().Field(i)
			cmd := noun.Addr().Interface()
			if k+1 < len(args) {
				if verb = oneVerb(noun, args[k+1]); verb.into.IsValid() {
					cmd = verb.parsed.Interface()
				}
			}
			return []kong.Option{kong.Embed(&root.Globals), kong.DynamicCommand(name, f.Tag.Get("help"), "", cmd, string(f.Tag))}, verb, true
		}
	}
	if slices.Contains(args, "--version") { // the globals alone: --version prints and exits as it parses
		return []kong.Option{kong.Embed(&root.Globals)}, verb, true
	}
	return nil, verb, false
}

// leanVerb is the verb of a model of one verb: the struct kong parses into (a pointer to a
// struct whose one field is the verb) and root's field of that verb.
type leanVerb struct{ parsed, into reflect.Value }

// keep copies what the parse set into root's field of the verb (printCheck reads it there).
func (v leanVerb) keep() {
	if v.into.IsValid() {
		v.into.Set(v.parsed.Elem().Field(0))
		verbParses.Add(1)
	}
}

// oneVerb is the verb of noun (a command struct) that word names, in a struct of its own
// (none when word names no verb of noun).
func oneVerb(noun reflect.Value, word string) leanVerb {
	t := noun.Type()
	for i := range t.NumField() {
		if _, cmd := t.Field(i).Tag.Lookup("cmd"); !cmd {
			return leanVerb{} // a flag or argument of the noun's own: the noun's model has it
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := nounName(f)
		if !ok || !named(f, name, word) {
			continue
		}
		one := reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}})
		return leanVerb{parsed: reflect.New(one), into: noun.Field(i)}
	}
	return leanVerb{}
}

// named says whether word is a command's name or one of its aliases.
func named(f reflect.StructField, name, word string) bool {
	return word == name || slices.Contains(strings.Split(f.Tag.Get("aliases"), ","), word)
}

// nounName is the name of the command f holds (false: f is no command a user types, or one
// that walks the whole tree: completion, the docs).
func nounName(f reflect.StructField) (string, bool) {
	_, cmd := f.Tag.Lookup("cmd")
	_, hidden := f.Tag.Lookup("hidden")
	if !cmd || hidden || f.Name == "Completion" {
		return "", false
	}
	return cmp.Or(f.Tag.Get("name"), strings.ToLower(f.Name)), true
}
