package cli

import (
	"fmt"
	"text/template"

	"sigs.k8s.io/yaml"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// ListOutput is the shape every list command shares: -q for the IDs only, -o for table,
// wide, json or yaml, and --format for a Go template per item.
type ListOutput struct {
	Quiet  bool   `name:"quiet" short:"q" help:"Only the IDs (names, for secrets), one per line."`
	Output string `name:"output" short:"o" enum:"table,wide,json,yaml" default:"table" help:"table, wide (whole IDs, and more columns), json or yaml."`
	Format string `name:"format" help:"A Go template for each item, e.g. '{{.ID}} {{.Name}}' (fields as in -o json, by their Go names)."`
}

// Wide says whether the table is the wide one.
func (o ListOutput) Wide() bool { return o.Output == "wide" }

// Template checks --format before anything is asked of the cluster.
func (o ListOutput) Template() (*template.Template, error) {
	if o.Format == "" {
		return nil, nil
	}
	t, err := template.New("format").Option("missingkey=zero").Parse(o.Format)
	if err != nil {
		return nil, v1.BadRequest("--format: %v", err)
	}
	return t, nil
}

// WriteList writes items as -q, --format, --json/-o json or -o yaml ask, and says whether
// it did; when it did not, the caller writes its table.
func WriteList[T any](g *Globals, o ListOutput, items []T, id func(T) string) (bool, error) {
	tmpl, err := o.Template()
	if err != nil {
		return true, err
	}
	if items == nil {
		items = []T{}
	}
	switch {
	case o.Quiet:
		for _, it := range items {
			fmt.Fprintln(g.stdout, id(it))
		}
	case tmpl != nil:
		for _, it := range items {
			if err := tmpl.Execute(g.stdout, it); err != nil {
				return true, v1.BadRequest("--format: %v", err)
			}
			fmt.Fprintln(g.stdout)
		}
	case g.JSON || o.Output == "json":
		return true, WriteJSON(g.stdout, items)
	case o.Output == "yaml":
		b, err := yaml.Marshal(items)
		if err != nil {
			return true, err
		}
		_, err = g.stdout.Write(b)
		return true, err
	default:
		return false, nil
	}
	return true, nil
}
