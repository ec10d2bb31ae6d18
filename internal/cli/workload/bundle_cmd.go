package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nexrun/nex/internal/cli"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/nexfile"
)

// WorkloadBundleCmd groups the bundle commands; `nex workload bundle PATH` makes one.
type WorkloadBundleCmd struct {
	Create BundleCreateCmd `cmd:"" default:"withargs" help:"Put an executable (or a directory) into the NATS object store and write a Nexfile that starts it on any node."`
	List   BundleListCmd   `cmd:"" help:"List the bundled files of a bucket."`
	Rm     BundleRmCmd     `cmd:"" help:"Remove a bundled file by its digest (or a unique prefix of it)."`
}

// BundleCreateCmd bundles PATH.
type BundleCreateCmd struct {
	Path      string `arg:"" type:"existingfile|existingdir" help:"An executable, or a directory holding one (its other files travel as artifacts)."`
	Nexfile   string `name:"nexfile" short:"f" type:"existingfile" help:"Nexfile to start from (default: a Nexfile in the directory)."`
	Name      string `name:"name" help:"Workload name (default: the Nexfile's, else the executable's file name)."`
	Lifecycle string `name:"lifecycle" help:"service, job or function (default: the Nexfile's, else service)."`
	Exec      string `name:"exec" help:"In a directory: the executable, relative to it (default: its only executable file)."`
	Bucket    string `name:"bucket" help:"Object store bucket (default NEX_BUNDLES_<namespace>, the one the namespace's workloads may read)."`
	Out       string `name:"out" short:"o" default:"Nexfile.bundle" help:"Where to write the Nexfile."`
	Force     bool   `name:"force" help:"Overwrite --out if it exists."`
}

// Run stores the files (each once, by digest) and writes the Nexfile.
func (c *BundleCreateCmd) Run(ctx context.Context, g *cli.Globals) error {
	c.Bucket = bucketOf(c.Bucket, g)
	if _, err := os.Stat(c.Out); err == nil && !c.Force {
		return fmt.Errorf("%s exists: give --out another file, or --force", c.Out)
	}
	st, err := os.Stat(c.Path)
	if err != nil {
		return err
	}
	base, err := c.base(st.IsDir())
	if err != nil {
		return err
	}
	cl, err := g.Client()
	if err != nil {
		return err
	}
	files, exec, err := c.files(st.IsDir())
	if err != nil {
		return err
	}
	sr := map[string]any{}
	if len(base.StartRequest) > 0 {
		if err := json.Unmarshal(base.StartRequest, &sr); err != nil {
			return fmt.Errorf("start_request of %s: %w", c.Nexfile, err)
		}
	}
	artifacts, _ := sr["artifacts"].([]any)
	stored := 0
	for _, f := range files {
		obj, added, err := cl.Bundles(c.Bucket).Put(ctx, filepath.Join(c.Path, f.rel))
		if err != nil {
			return err
		}
		if added {
			stored++
		}
		if f.rel == exec {
			sr["uri"], sr["sha256"] = obj.URI, obj.Digest
			continue
		}
		artifacts = append(artifacts, map[string]any{"uri": obj.URI, "sha256": obj.Digest, "path": f.rel, "mode": fmt.Sprintf("%04o", f.mode.Perm())})
	}
	if len(artifacts) > 0 {
		sr["artifacts"] = artifacts
	}
	return c.write(g, base, sr, exec, len(files), stored)
}

// base is the Nexfile the bundle starts from: --nexfile, a Nexfile in the directory, or none.
func (c *BundleCreateCmd) base(dir bool) (*nexfile.Nexfile, error) {
	path := c.Nexfile
	if path == "" && dir {
		if _, err := os.Stat(filepath.Join(c.Path, nexfile.DefaultName)); err == nil {
			path = filepath.Join(c.Path, nexfile.DefaultName)
		}
	}
	if path == "" {
		return &nexfile.Nexfile{}, nil
	}
	return nexfile.Load(path)
}

type bundleFile struct {
	rel  string
	mode fs.FileMode
}

// files lists what to bundle (relative to c.Path; "." for a single file) and which one
// is the executable.
func (c *BundleCreateCmd) files(dir bool) ([]bundleFile, string, error) {
	if !dir {
		st, err := os.Stat(c.Path)
		if err != nil {
			return nil, "", err
		}
		if st.Mode().Perm()&0o111 == 0 {
			return nil, "", fmt.Errorf("%s is not executable (chmod +x it)", c.Path)
		}
		return []bundleFile{{rel: ".", mode: st.Mode()}}, ".", nil
	}
	var files []bundleFile
	var execs []string
	err := filepath.WalkDir(c.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.Path, p)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || rel == nexfile.DefaultName || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		files = append(files, bundleFile{rel: rel, mode: info.Mode()})
		if info.Mode().Perm()&0o111 != 0 {
			execs = append(execs, rel)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	exec := filepath.Clean(c.Exec)
	switch {
	case c.Exec != "":
		for _, f := range files {
			if f.rel == exec {
				return files, exec, nil
			}
		}
		return nil, "", fmt.Errorf("--exec %s: no such file in %s", c.Exec, c.Path)
	case len(execs) == 1:
		return files, execs[0], nil
	case len(execs) == 0:
		return nil, "", fmt.Errorf("%s holds no executable file: name one with --exec", c.Path)
	}
	return nil, "", fmt.Errorf("%s holds several executable files (%s): name one with --exec", c.Path, strings.Join(execs, ", "))
}

// write writes the Nexfile and says how to start it.
func (c *BundleCreateCmd) write(g *cli.Globals, base *nexfile.Nexfile, sr map[string]any, exec string, files, stored int) error {
	nf := *base
	if c.Name != "" {
		nf.Name = c.Name
	}
	if nf.Name == "" { // hello.sh -> hello: a name is one subject token
		b := filepath.Base(filepath.Join(c.Path, exec))
		nf.Name = strings.NewReplacer(".", "-", " ", "-").Replace(strings.TrimSuffix(b, filepath.Ext(b)))
	}
	if c.Lifecycle != "" {
		nf.Lifecycle = c.Lifecycle
	}
	if nf.Lifecycle == "" {
		nf.Lifecycle = v1.LifecycleService
	}
	if nf.Type == "" {
		nf.Type = "native"
	}
	raw, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	nf.StartRequest = raw
	b, err := json.MarshalIndent(nf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.Out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), map[string]any{"nexfile": c.Out, "files": files, "stored": stored, "bucket": c.Bucket, "start_request": sr})
	}
	kept := fmt.Sprintf("%d new", stored)
	if stored < files {
		kept += fmt.Sprintf(", %d already there", files-stored)
	}
	fmt.Fprintf(g.Stdout(), "Bundled %s: %s into %s (%s); wrote %s\nStart it with: %s\n",
		nf.Name, cli.Plural(files, "file"), c.Bucket, kept, c.Out, startHint(g, c.Out))
	return nil
}

// startHint is the command that starts the bundle's Nexfile as the bundle was made: with
// the connection flags given to this command, so it reaches the same server as the same
// user. A password or token is never printed (a --nats.password or --nats.token flag is
// left out, one in a server URL shown as xxxxx): give it again.
func startHint(g *cli.Globals, nexfile string) string {
	args := []string{"nex"}
	if g.NATS.Context != "" {
		args = append(args, "--nats.context="+g.NATS.Context)
	}
	for _, a := range g.NATS.Args() {
		if servers, ok := strings.CutPrefix(a, "--nats.servers="); ok {
			list := strings.Split(servers, ",")
			for i, s := range list {
				if u, err := url.Parse(s); err == nil && u.User != nil {
					list[i] = u.Redacted()
				}
			}
			a = "--nats.servers=" + strings.Join(list, ",")
		}
		args = append(args, a)
	}
	args = append(args, "--namespace", g.Namespace, "workload", "start", "-f", nexfile)
	for i, a := range args {
		if strings.ContainsAny(a, " \t\n'\"$`\\;&|<>()*?[]{}~!#") {
			args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(args, " ")
}

// BundleListCmd lists a bucket's bundled files.
type BundleListCmd struct {
	Bucket         string `name:"bucket" help:"Object store bucket (default NEX_BUNDLES_<namespace>, the one the namespace's workloads may read)."`
	cli.ListOutput `embed:""`
}

// Run lists.
func (c *BundleListCmd) Run(ctx context.Context, g *cli.Globals) error {
	c.Bucket = bucketOf(c.Bucket, g)
	cl, err := g.Client()
	if err != nil {
		return err
	}
	list, err := cl.Bundles(c.Bucket).List(ctx)
	if err != nil {
		return err
	}
	if done, err := cli.WriteList(g, c.ListOutput, list, func(o client.BundleObject) string { return o.Digest }); done {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(g.Stdout(), "No bundles in %s.\n", c.Bucket)
		return nil
	}
	t := cli.NewTable("SHA256", "NAME", "SIZE", "URI")
	for _, o := range list {
		digest := o.Digest[:12]
		if c.Wide() {
			digest = o.Digest
		}
		t.Row(digest, o.Name, fmt.Sprint(o.Size), o.URI)
	}
	return t.Write(g.Stdout())
}

// BundleRmCmd removes bundled files.
type BundleRmCmd struct {
	Digests []string `arg:"" name:"sha256" help:"Digests (or unique prefixes) of the files to remove."`
	Bucket  string   `name:"bucket" help:"Object store bucket (default NEX_BUNDLES_<namespace>, the one the namespace's workloads may read)."`
}

// Run removes; a workload whose Nexfile names a removed file no longer starts.
func (c *BundleRmCmd) Run(ctx context.Context, g *cli.Globals) error {
	c.Bucket = bucketOf(c.Bucket, g)
	cl, err := g.Client()
	if err != nil {
		return err
	}
	for _, d := range c.Digests {
		o, err := cl.Bundles(c.Bucket).Remove(ctx, d)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.Stdout(), "Removed %s (%s) from %s\n", o.Digest, o.Name, c.Bucket)
	}
	return nil
}

// bucketOf is the bucket a bundle command works on: the one given, else the namespace's
// own (v1.BundleBucket), the only one its workloads may read with scoped credentials.
func bucketOf(given string, g *cli.Globals) string {
	if given != "" {
		return given
	}
	return v1.BundleBucket(g.Namespace)
}
