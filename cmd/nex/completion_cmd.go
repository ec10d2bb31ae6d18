package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nexrun/nex/internal/cli"
)

// CompletionCmd prints a shell completion script.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// Run writes the script for the chosen shell, generated from the command tree.
func (c *CompletionCmd) Run(kctx *kong.Context, g *cli.Globals) error {
	paths := completionPaths(kctx.Model.Node)
	switch c.Shell {
	case "fish":
		return writeFish(g.Stdout(), paths)
	case "zsh":
		fmt.Fprintln(g.Stdout(), "# nex completion for zsh (through bash completion)\nautoload -U +X bashcompinit && bashcompinit")
	}
	return writeBash(g.Stdout(), paths)
}

// completePath is one command of the tree: its subcommands, flags and what its
// positional argument is (for IDs completed from a live node).
type completePath struct {
	path  string
	words []string
	flags []string
	arg   string // "workloads", "nodes" or ""
}

func completionPaths(root *kong.Node) []completePath {
	var out []completePath
	var walk func(n *kong.Node, path string, inherited []string)
	walk = func(n *kong.Node, path string, inherited []string) {
		flags := append([]string(nil), inherited...)
		for _, f := range n.Flags {
			if f.Hidden {
				continue
			}
			flags = append(flags, "--"+f.Name)
		}
		cp := completePath{path: path, flags: flags}
		for _, ch := range n.Children {
			if ch.Hidden {
				continue
			}
			cp.words = append(cp.words, ch.Name)
			cp.words = append(cp.words, ch.Aliases...)
		}
		for _, p := range n.Positional {
			switch p.Name {
			case "workload_id":
				cp.arg = "workloads"
			case "node-id":
				cp.arg = "nodes"
			}
		}
		for _, f := range n.Flags {
			if f.Name == "node-id" {
				cp.arg = "nodes"
			}
		}
		sort.Strings(cp.flags)
		out = append(out, cp)
		for _, ch := range n.Children {
			if ch.Hidden {
				continue
			}
			for _, name := range append([]string{ch.Name}, ch.Aliases...) {
				walk(ch, strings.TrimSpace(path+" "+name), flags)
			}
		}
	}
	walk(root, "", nil)
	return out
}

func writeBash(w io.Writer, paths []completePath) error {
	fmt.Fprint(w, `# nex completion for bash: source <(nex completion bash)
_nex() {
  local cur path="" word i ns=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    case "$word" in
      --namespace) ns=(--namespace "${COMP_WORDS[i+1]}") ;;
      --namespace=*) ns=("$word") ;;
      -*) ;;
      *) if _nex_is_cmd "${path:+$path }$word"; then path="${path:+$path }$word"; fi ;;
    esac
  done
  local words="" arg=""
  case "$path" in
`)
	for _, p := range paths {
		fmt.Fprintf(w, "    %q) words=%q; arg=%q ;;\n", p.path, strings.Join(append(append([]string{}, p.words...), p.flags...), " "), p.arg)
	}
	fmt.Fprint(w, `  esac
  if [[ "$cur" != -* && -n "$arg" ]]; then
    words="$words $(nex "${ns[@]}" __complete "$arg" 2>/dev/null)"
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
_nex_is_cmd() {
  case "$1" in
`)
	var all []string
	for _, p := range paths {
		if p.path != "" {
			all = append(all, fmt.Sprintf("%q", p.path))
		}
	}
	fmt.Fprintf(w, "    %s) return 0 ;;\n", strings.Join(all, "|"))
	fmt.Fprint(w, `  esac
  return 1
}
complete -F _nex nex
`)
	return nil
}

func writeFish(w io.Writer, paths []completePath) error {
	fmt.Fprintln(w, "# nex completion for fish: nex completion fish | source")
	fmt.Fprintln(w, "complete -c nex -f")
	for _, p := range paths {
		cond := "__fish_use_subcommand"
		if p.path != "" {
			parts := strings.Fields(p.path)
			cond = fmt.Sprintf("__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s", parts[len(parts)-1], strings.Join(childWords(paths, p.path), " "))
			if len(childWords(paths, p.path)) == 0 {
				cond = fmt.Sprintf("__fish_seen_subcommand_from %s", parts[len(parts)-1])
			}
		}
		for _, word := range p.words {
			fmt.Fprintf(w, "complete -c nex -n %q -a %q\n", cond, word)
		}
		if p.arg != "" {
			fmt.Fprintf(w, "complete -c nex -n %q -a '(nex __complete %s 2>/dev/null)'\n", cond, p.arg)
		}
	}
	seen := map[string]bool{}
	for _, p := range paths {
		for _, f := range p.flags {
			if !seen[f] {
				seen[f] = true
				fmt.Fprintf(w, "complete -c nex -l %s\n", strings.TrimPrefix(f, "--"))
			}
		}
	}
	return nil
}

func childWords(paths []completePath, path string) []string {
	for _, p := range paths {
		if p.path == path {
			return p.words
		}
	}
	return nil
}

// CompleteCmd answers the completion scripts with IDs from a live node, quickly or not at all.
type CompleteCmd struct {
	Kind string `arg:"" enum:"workloads,nodes"`
}

// Run prints one ID per line.
func (c *CompleteCmd) Run(ctx context.Context, g *cli.Globals) error {
	g.NATS.Timeout = 300 * time.Millisecond
	cl, err := g.Client()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	cl.Straggler = 100 * time.Millisecond
	if c.Kind == "nodes" {
		nodes, _ := cl.ListNodes(ctx)
		for _, n := range nodes {
			fmt.Fprintln(g.Stdout(), n.NodeID)
		}
		return nil
	}
	list, _ := cl.ListWorkloads(ctx, "")
	for _, w := range list {
		fmt.Fprintln(g.Stdout(), w.ID)
	}
	return nil
}
