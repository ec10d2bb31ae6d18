package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/schemas"
)

// DocsCmd writes the generated references (make docs): the CLI from the kong tree, the
// start-request fields from schemas/. A test fails when docs/ differs from them.
type DocsCmd struct {
	What string `arg:"" enum:"cli,schemas"`
}

// Run prints the markdown.
func (c *DocsCmd) Run(kctx *kong.Context, g *cli.Globals) error {
	if c.What == "schemas" {
		return writeSchemaDocs(g.Stdout())
	}
	return writeCLIDocs(g.Stdout(), kctx.Model.Node)
}

func writeCLIDocs(w io.Writer, root *kong.Node) error {
	fmt.Fprintln(w, "# CLI reference")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated from the command tree by `make docs`; do not edit by hand.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Global flags")
	fmt.Fprintln(w)
	flagTable(w, root.Flags)
	var walk func(n *kong.Node, path string)
	walk = func(n *kong.Node, path string) {
		for _, ch := range n.Children {
			if ch.Hidden {
				continue
			}
			p := strings.TrimSpace(path + " " + ch.Name)
			if len(ch.Children) > 0 && ch.DefaultCmd == nil && len(ch.Aliases) > 0 {
				// a noun's own aliases: on no verb's page otherwise
				fmt.Fprintf(w, "## nex %s\n\n%s\n\nAliases: %s (`nex %s %s` is `nex %s`)\n\n", p, ch.Help,
					strings.Join(ch.Aliases, ", "), strings.TrimSpace(path+" "+ch.Aliases[0]), ch.Children[0].Name, strings.TrimSpace(p+" "+ch.Children[0].Name))
			}
			if len(ch.Children) == 0 || ch.DefaultCmd != nil {
				fmt.Fprintf(w, "## nex %s\n\n", p)
				if ch.Help != "" {
					fmt.Fprintf(w, "%s\n\n", ch.Help)
				}
				usage := "nex " + p
				for _, a := range ch.Positional {
					if a.Required {
						usage += " <" + a.Name + ">"
					} else {
						usage += " [<" + a.Name + ">]"
					}
				}
				fmt.Fprintf(w, "```\n%s [flags]\n```\n\n", usage)
				if len(ch.Aliases) > 0 {
					fmt.Fprintf(w, "Aliases: %s\n\n", strings.Join(ch.Aliases, ", "))
				}
				for _, a := range ch.Positional {
					fmt.Fprintf(w, "- `<%s>`: %s\n", a.Name, a.Help)
				}
				if len(ch.Positional) > 0 {
					fmt.Fprintln(w)
				}
				flagTable(w, ch.Flags)
			}
			walk(ch, p)
		}
	}
	walk(root, "")
	return nil
}

func flagTable(w io.Writer, flags []*kong.Flag) {
	var rows []string
	for _, f := range flags {
		if f.Hidden || f.Name == "help" {
			continue
		}
		name := "`--" + f.Name + "`"
		if f.Short != 0 {
			name = fmt.Sprintf("`-%c`, %s", f.Short, name)
		}
		def := f.Default
		if def != "" {
			def = "`" + def + "`"
		}
		env := ""
		if len(f.Envs) > 0 {
			env = "`$" + strings.Join(f.Envs, "`, `$") + "`"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", name, strings.ReplaceAll(f.Help, "|", "\\|"), def, env))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "| flag | meaning | default | env |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w)
}

// writeSchemaDocs turns schemas/nexlet-native/start_request.json into a field table.
func writeSchemaDocs(w io.Writer) error {
	raw, err := schemas.StartRequest("native")
	if err != nil {
		return err
	}
	var s schemaNode
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	fmt.Fprintln(w, "# Start request reference")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated from `schemas/` by `make docs`; do not edit by hand. The schema is the one")
	fmt.Fprintln(w, "truth: nexlets publish it when they register, and the CLI and the node check every start")
	fmt.Fprintln(w, "request against it.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "## native (`schemas/nexlet-native/start_request.json`)\n\n%s\n\n", s.Description)
	fmt.Fprintln(w, "| field | type | required | meaning | example |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	s.rows(w, "", s.Required)
	return nil
}

type schemaNode struct {
	Type        any                    `json:"type"`
	Description string                 `json:"description"`
	Required    []string               `json:"required"`
	Properties  map[string]*schemaNode `json:"properties"`
	Items       *schemaNode            `json:"items"`
	Pattern     string                 `json:"pattern"`
	Minimum     *float64               `json:"minimum"`
	Maximum     *float64               `json:"maximum"`
	Examples    []any                  `json:"examples"`
}

func (s *schemaNode) rows(w io.Writer, prefix string, required []string) {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := s.Properties[n]
		req := ""
		for _, r := range required {
			if r == n {
				req = "yes"
			}
		}
		typ := schemaType(p.Type)
		if p.Items != nil {
			typ += " of " + fmt.Sprint(p.Items.Type)
		}
		var limits []string
		if p.Pattern != "" {
			limits = append(limits, "pattern `"+p.Pattern+"`")
		}
		if p.Minimum != nil || p.Maximum != nil {
			limits = append(limits, fmt.Sprintf("range %v–%v", deref(p.Minimum), deref(p.Maximum)))
		}
		desc := p.Description
		if len(limits) > 0 {
			desc += " (" + strings.Join(limits, "; ") + ")"
		}
		ex := ""
		if len(p.Examples) > 0 {
			b, _ := json.Marshal(p.Examples[0])
			ex = "`" + string(b) + "`"
		}
		fmt.Fprintf(w, "| `%s%s` | %s | %s | %s | %s |\n", prefix, n, typ, req, strings.ReplaceAll(desc, "|", "\\|"), strings.ReplaceAll(ex, "|", "\\|"))
		if len(p.Properties) > 0 {
			p.rows(w, prefix+n+".", p.Required)
		}
		if p.Items != nil && len(p.Items.Properties) > 0 {
			p.Items.rows(w, prefix+n+"[].", p.Items.Required)
		}
	}
}

func deref(f *float64) any {
	if f == nil {
		return "…"
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

// schemaType prints a schema's type: "string", or "integer or string" for a list.
func schemaType(t any) string {
	if list, ok := t.([]any); ok {
		names := make([]string, len(list))
		for i, x := range list {
			names[i] = fmt.Sprint(x)
		}
		return strings.Join(names, " or ")
	}
	return fmt.Sprint(t)
}
