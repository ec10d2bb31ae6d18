package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node"
)

// cluster is three nats-servers routed together, each with its own nexd (and
// nexlet-native), sharing the state bucket with three replicas.
type cluster struct {
	t       *testing.T
	u       *user
	servers []*server.Server
	nodes   []*nexdNode
	names   []string
	base    int64 // the first service's sleep argument: its copies are found by it
	secrets string
}

func startNexCluster(t *testing.T) *cluster {
	c := &cluster{t: t, u: newUser(t), servers: testutil.StartCluster(t, 3), base: 700000 + time.Now().UnixNano()%100000*10}
	// the same secrets key on every node: sealed environments move with their workloads
	xk, _ := nkeys.CreateCurveKeys()
	xseed, _ := xk.Seed()
	c.secrets = c.u.write("secrets.seed", string(xseed), 0o600)
	for i, s := range c.servers {
		name := fmt.Sprintf("node-%d", i+1)
		c.names = append(c.names, name)
		c.nodes = append(c.nodes, c.startNode(i, s))
	}
	return c
}

func (c *cluster) startNode(i int, s *server.Server) *nexdNode {
	return startNexdNamed(c.t, c.u, s.ClientURL(), filepath.Join(c.u.home, c.names[i]), c.names[i], "--state-replicas", "3", "--secrets-key", c.secrets,
		"--tags", fmt.Sprintf("zone=z%d", i%2)) // node-1 and node-3 in z0, node-2 in z1
}

// url is a server that is up, routed to all the others if one is (a server just
// restarted has not found its routes yet).
func (c *cluster) url() string {
	for _, s := range c.servers {
		if s.Running() && s.NumRoutes() == len(c.servers)-1 {
			return s.ClientURL()
		}
	}
	for _, s := range c.servers {
		if s.Running() {
			return s.ClientURL()
		}
	}
	c.t.Fatal("no server runs")
	return ""
}

// groupID is the replica group a `workload start --replicas` printed it started.
func groupID(out string) string {
	return strings.TrimSuffix(strings.Fields(out[strings.Index(out, "[g-")+1:])[0], "]")
}

// sleeperRequest is the start request of service i (see sleep).
func (c *cluster) sleeperRequest(i int) string {
	return `{"uri":"file:///bin/sh","argv":["-c","exec ` + c.sleep(i) + `"]}`
}

// startAPI starts group "api" of 3 copies of service 0 (version 1), waits for them to
// run, and returns its ID.
func (c *cluster) startAPI() string {
	out := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "api",
		"--replicas", "3", "--start-request", c.sleeperRequest(0))
	testutil.Eventually(c.t, 10*time.Second, "3 copies of version 1", func() bool { return len(processes(c.sleep(0))) == 3 })
	return groupID(out)
}

// service i sleeps for base+i seconds: its command line tells its copies apart.
func (c *cluster) sleep(i int) string { return fmt.Sprintf("sleep %d", c.base+int64(i)) }

// where lists, for each workload ID, the nodes that list it running (none when the list
// fails, as it may while a server restarts: callers poll).
func (c *cluster) where() map[string][]string {
	out := map[string][]string{}
	stdout, _, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "list", "--json")
	var list []v1.WorkloadInfo
	if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil {
		return out
	}
	for _, w := range list {
		if w.State == v1.StateRunning {
			out[w.ID] = append(out[w.ID], w.NodeID)
		}
	}
	return out
}

// exactlyOnce says whether every one of ids is listed running on one node other than
// avoid, and each of the n services has one process on the machine.
func (c *cluster) exactlyOnce(ids []string, n int, avoid string) bool {
	where := c.where()
	for _, id := range ids {
		if len(where[id]) != 1 || where[id][0] == avoid {
			return false
		}
	}
	for i := range n {
		if len(processes(c.sleep(i))) != 1 {
			return false
		}
	}
	return true
}

// stayExactlyOnce checks, for d, that nothing runs twice.
func (c *cluster) stayExactlyOnce(ids []string, n int, d time.Duration) {
	c.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		for i := range n {
			if p := processes(c.sleep(i)); len(p) > 1 {
				c.t.Fatalf("service %d runs %d times: %v", i, len(p), p)
			}
		}
	}
	if !c.exactlyOnce(ids, n, "") {
		c.t.Fatalf("not exactly once: %v", c.where())
	}
}

// nodes maps the live nodes' IDs to their index.
func (c *cluster) nodeIndexes() map[string]int {
	var nodes []v1.NodeInfo
	out := c.u.mustNex("-s", c.url(), "node", "list", "--json")
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		c.t.Fatalf("node list: %v\n%s", err, out)
	}
	idx := map[string]int{}
	for _, n := range nodes {
		for i, name := range c.names {
			if n.Name == name {
				idx[n.NodeID] = i
			}
		}
	}
	return idx
}

// nodeIndex is the index of the live node with ID id.
func (c *cluster) nodeIndex(id string) int {
	i, ok := c.nodeIndexes()[id]
	if !ok {
		c.t.Fatalf("node %s not listed", id)
	}
	return i
}

// nodeIDOf is the ID of live node i.
func (c *cluster) nodeIDOf(i int) string {
	for id, j := range c.nodeIndexes() {
		if j == i {
			return id
		}
	}
	c.t.Fatalf("node %s not listed", c.names[i])
	return ""
}

// killNode kills nexd, nexlet-native and (by their parent-death signal) the workloads
// of node i, as a machine that loses power.
func (c *cluster) killNode(i int) {
	n := c.nodes[i]
	nexlets := processes("nexlet-native", "--data-dir="+filepath.Join(n.dataDir, "native"))
	_ = syscall.Kill(-n.bg.cmd.Process.Pid, syscall.SIGKILL)
	for _, p := range nexlets {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	<-n.bg.done
}

// coordinator is the node holding the coordinator lease.
func (c *cluster) coordinator() string {
	nc, err := nats.Connect(c.url())
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var holder string
	testutil.Eventually(c.t, 20*time.Second, "a coordinator", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, node.LeaseBucket)
		if err != nil {
			return false
		}
		e, err := kv.Get(ctx, "coordinator")
		if err != nil {
			return false
		}
		holder, _, _ = strings.Cut(string(e.Value()), " ") // "<node ID> <epoch>"
		return true
	})
	return holder
}

// Services outlive their node: a node killed outright (nexd, nexlet and workloads), the
// coordinator killed, and a node cut off from its NATS server each leave every service
// running exactly once on the other nodes within 30 s (default node-loss window: 10 s),
// under the same IDs; and a node that comes back runs nothing twice.
func TestClusterReschedulesLostNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	const services = 6
	var ids []string
	for i := range services {
		ids = append(ids, c.u.startNative(c.url(), fmt.Sprintf("svc%d", i), "service", `{"uri":"file:///bin/sh","argv":["-c","exec `+c.sleep(i)+`"],"environment":{"SECRET":"kept"}}`))
	}
	testutil.Eventually(t, 15*time.Second, "every service to run once", func() bool { return c.exactlyOnce(ids, services, "") })

	// 1. A node dies with everything on it; its services' sealed environment moves with
	// them (the escrow, sealed for the shared --secrets-key).
	victim := c.busiest()
	victimID := c.nodeIDOf(victim)
	lost := time.Now()
	c.killNode(victim)
	testutil.Eventually(t, 30*time.Second, "the dead node's services to run elsewhere", func() bool { return c.exactlyOnce(ids, services, victimID) })
	t.Logf("node %s killed: its services ran elsewhere after %s", c.names[victim], time.Since(lost).Round(100*time.Millisecond))
	for i := range services {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", processes(c.sleep(i))[0]))
		if !strings.Contains(string(env), "SECRET=kept") {
			t.Fatalf("service %d runs without its sealed environment value", i)
		}
	}
	c.nodes[victim] = c.startNode(victim, c.servers[victim])
	c.stayExactlyOnce(ids, services, 5*time.Second)

	// 2. The coordinating node dies: another takes the lease and the rescheduling over.
	coord := c.coordinator()
	ci := c.nodeIndex(coord)
	lost = time.Now()
	c.killNode(ci)
	testutil.Eventually(t, 30*time.Second, "the coordinator's services to run elsewhere", func() bool { return c.exactlyOnce(ids, services, coord) })
	t.Logf("coordinator %s killed: its services ran elsewhere after %s", c.names[ci], time.Since(lost).Round(100*time.Millisecond))
	if again := c.coordinator(); again == coord {
		t.Fatalf("the dead node %s still holds the coordinator lease", coord)
	}
	c.nodes[ci] = c.startNode(ci, c.servers[ci])
	c.stayExactlyOnce(ids, services, 3*time.Second)

	// 3. A node's NATS server stops; the node keeps running, cut off (its servers do not
	// advertise each other, so it knows only its own). Its services run elsewhere too
	// for as long as the cut lasts; after the heal, exactly one copy of each runs.
	cut := c.busiest()
	cutID := c.nodeIDOf(cut)
	var onCut []string
	for id, nodes := range c.where() {
		if slices.Contains(nodes, cutID) {
			onCut = append(onCut, id)
		}
	}
	c.servers[cut].Shutdown()
	testutil.Eventually(t, 30*time.Second, "the cut-off node's services to run elsewhere", func() bool {
		where := c.where()
		for _, id := range onCut {
			if !slices.ContainsFunc(where[id], func(n string) bool { return n != cutID }) {
				return false
			}
		}
		return true
	})
	c.servers[cut] = testutil.RestartServer(t, c.servers[cut])
	healed := time.Now()
	testutil.Eventually(t, 30*time.Second, "exactly one copy of each after the heal", func() bool { return c.exactlyOnce(ids, services, "") })
	t.Logf("node %s cut off past the window: one copy of each %s after the heal", c.names[cut], time.Since(healed).Round(100*time.Millisecond))
	c.stayExactlyOnce(ids, services, 3*time.Second)
	for _, id := range ids {
		c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", id)
	}
}

// busiest is the index of the live node running the most services.
func (c *cluster) busiest() int {
	count := map[string]int{}
	for _, nodes := range c.where() {
		for _, n := range nodes {
			count[n]++
		}
	}
	best, most := -1, -1
	for id, n := range count {
		if n > most {
			best, most = c.nodeIndex(id), n
		}
	}
	return best
}

// Lameduck moves a node's services before it goes: each starts on another node before
// the copy on the draining node stops, so the running count never drops below what was
// started; a service no other node may take (its tags name the drained node) is stopped
// at the deadline with an unplaced event saying why; the node exits once drained.
func TestDrainMovesServices(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	const services = 4
	var ids []string
	for i := range services {
		ids = append(ids, c.u.startNative(c.url(), fmt.Sprintf("svc%d", i), "service", `{"uri":"file:///bin/sh","argv":["-c","exec `+c.sleep(i)+`"],"environment":{"SECRET":"moves-too"}}`))
	}
	testutil.Eventually(t, 15*time.Second, "every service to run once", func() bool { return c.exactlyOnce(ids, services, "") })
	// a job that will not finish by the deadline: it moves then. It lands where the fewest
	// workloads run (least-loaded placement; they ask for no resources), a node running
	// one or two of the services: that node is drained.
	longJob := c.u.startNative(c.url(), "long-job", "job", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	drained := ""
	testutil.Eventually(t, 10*time.Second, "the job to run", func() bool {
		if where := c.where()[longJob]; len(where) == 1 {
			drained = where[0]
		}
		return drained != ""
	})
	at := c.nodeIndex(drained)
	if where := c.where(); !slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(where[id], drained) }) {
		t.Fatalf("the node the job landed on runs none of the services: %v", where)
	}
	pinned := c.u.startNative(c.url(), "pinned", "service", `{"uri":"file:///bin/sleep","argv":["600"]}`, "--tags", "nex.node="+c.names[at])
	nc, err := nats.Connect(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	unplaced, _ := nc.SubscribeSync("$NEX.FEED.default.event." + pinned)
	_ = nc.Flush()

	began := time.Now()
	c.u.mustNex("-s", c.url(), "node", "lameduck", "--node-id", drained, "--delay", "15s", "--no-wait")
	fewest := services
	for !c.exactlyOnce(ids, services, drained) {
		running := 0
		for i := range services {
			running += min(1, len(processes(c.sleep(i))))
		}
		fewest = min(fewest, running)
		if time.Since(began) > time.Minute {
			t.Fatalf("the drain did not finish: %v", c.where())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fewest < services {
		t.Fatalf("during the drain only %d of %d services ran at one moment", fewest, services)
	}
	t.Logf("drained %s in %s", c.names[at], time.Since(began).Round(100*time.Millisecond))
	for {
		m, err := unplaced.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no unplaced event for the pinned service: %v", err)
		}
		var ev v1.Event
		_ = json.Unmarshal(m.Data, &ev)
		if ev.Type == v1.EventUnplaced {
			if !strings.Contains(ev.Message, "tag nex.node="+c.names[at]+" not matched") {
				t.Fatalf("unplaced event without the nodes' reasons: %q", ev.Message)
			}
			break
		}
	}
	select {
	case <-c.nodes[at].bg.done:
	case <-time.After(40 * time.Second):
		t.Fatal("the drained node did not exit at its deadline")
	}
	c.stayExactlyOnce(ids, services, 2*time.Second)
	testutil.Eventually(t, 10*time.Second, "the unfinished job to run elsewhere", func() bool {
		where := c.where()
		return len(where[longJob]) == 1 && where[longJob][0] != drained
	})
	if where := c.where(); len(where[pinned]) != 0 {
		t.Fatalf("the pinned service still runs on %v", where[pinned])
	}
	for _, id := range append(ids, longJob) {
		c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", id)
	}
}

// A service started with --disconnect stop never runs twice: its node, cut off from NATS,
// stops it (at half the node-loss window) before the cluster starts it elsewhere (at the
// window); after the heal it still runs once, where the cluster put it.
func TestDisconnectStopRunsOneCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	id := c.u.startNative(c.url(), "single", "service", `{"uri":"file:///bin/sh","argv":["-c","exec `+c.sleep(0)+`"]}`, "--disconnect", "stop")
	ids := []string{id}
	testutil.Eventually(t, 15*time.Second, "the service to run", func() bool { return c.exactlyOnce(ids, 1, "") })
	at := c.where()[id][0]
	cut := c.nodeIndex(at)

	// a short cut: stopped, and started again where it was once the node is back (the
	// cluster had not moved it yet)
	c.servers[cut].Shutdown()
	testutil.Eventually(t, 9*time.Second, "the cut-off node to stop the service", func() bool { return len(processes(c.sleep(0))) == 0 })
	c.servers[cut] = testutil.RestartServer(t, c.servers[cut])
	testutil.Eventually(t, 30*time.Second, "the service back on its node", func() bool {
		where := c.where()
		return len(where[id]) == 1 && where[id][0] == at && len(processes(c.sleep(0))) == 1
	})
	c.stayExactlyOnce(ids, 1, 2*time.Second)

	// a long cut: stopped there, then started elsewhere; never two at once
	c.servers[cut].Shutdown()
	began := time.Now()
	var stoppedAfter time.Duration
	for {
		n := len(processes(c.sleep(0)))
		if n > 1 {
			t.Fatalf("two copies ran at once, %s into the cut", time.Since(began).Round(time.Millisecond))
		}
		if n == 0 && stoppedAfter == 0 {
			stoppedAfter = time.Since(began)
		}
		if where := c.where(); n == 1 && len(where[id]) == 1 && where[id][0] != at {
			break
		}
		if time.Since(began) > 40*time.Second {
			t.Fatalf("not moved after 40 s: %v", c.where())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("cut off: stopped after %s, running elsewhere after %s", stoppedAfter.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
	c.servers[cut] = testutil.RestartServer(t, c.servers[cut])
	c.stayExactlyOnce(ids, 1, 10*time.Second)
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", id)
}

// copies lists a replica group's running copies by node.
func (c *cluster) copies(gid string) map[string]int {
	out := map[string]int{}
	for _, w := range c.u.workloads(c.t, c.url()) {
		if w.Group == gid && w.State == v1.StateRunning {
			out[w.NodeID]++
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Replicas: 3 copies land on 3 nodes; scaled to 5 (at most 2 on a node) and back to 1;
// stopped by the group's ID, every copy goes.
func TestReplicaGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	out := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "web",
		"--replicas", "3", "--max-per-node", "2", "--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo ready with $TOKEN; exec sleep 600"],"environment":{"TOKEN":"sealed-for-the-cluster"}}`)
	if !strings.Contains(out, "3 of 3 copies running") {
		t.Fatalf("start --replicas 3:\n%s", out)
	}
	gid := groupID(out)
	testutil.Eventually(t, 10*time.Second, "3 copies on 3 nodes", func() bool {
		cp := c.copies(gid)
		return len(cp) == 3 && total(cp) == 3
	})
	// logs and events by the group's ID cover every copy
	testutil.Eventually(t, 10*time.Second, "every copy's output by the group's ID", func() bool {
		logs := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "logs", gid)
		return strings.Count(logs, ": ready with sealed-for-the-cluster\n") == 3
	})
	if events := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "events", gid); strings.Count(events, "started") < 3 {
		t.Fatalf("events of the group:\n%s", events)
	}
	if out = c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "scale", gid, "5"); !strings.Contains(out, "scaled to 5: 5 running") {
		t.Fatalf("scale to 5:\n%s", out)
	}
	testutil.Eventually(t, 10*time.Second, "5 copies, at most 2 on a node", func() bool {
		cp := c.copies(gid)
		for _, n := range cp {
			if n > 2 {
				t.Fatalf("%d copies on one node (max 2): %v", n, cp)
			}
		}
		return total(cp) == 5
	})
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "scale", gid, "1")
	testutil.Eventually(t, 10*time.Second, "1 copy", func() bool { return total(c.copies(gid)) == 1 })
	info := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "info", gid)
	if !strings.Contains(info, "replica group of 1") {
		t.Fatalf("info of the group:\n%s", info)
	}
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", gid)
	testutil.Eventually(t, 10*time.Second, "no copy", func() bool { return total(c.copies(gid)) == 0 })

	// spread over a tag's values: two copies, one per zone, though z0 has two nodes
	for range 3 {
		out = c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "zoned",
			"--replicas", "2", "--spread", "zone", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)
		zgid := groupID(out)
		idx := c.nodeIndexes()
		zones := map[int]int{}
		for node, n := range c.copies(zgid) {
			zones[idx[node]%2] += n
		}
		if zones[0] != 1 || zones[1] != 1 {
			t.Fatalf("2 copies spread over zone: %v (by zone)", zones)
		}
		c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", zgid)
	}
	if _, errs, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "info", gid); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("info of a stopped group: exit %d %s", code, errs)
	}
}

// A rolling update replaces 3 copies one at a time: never fewer than 3 run, and it ends
// with 3 of the new version. A bad update (an executable that is not there; a service
// that exits at once) stops, saying why, with the copies it was replacing running on.
func TestRollingUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	sr, gid := c.sleeperRequest, c.startAPI()

	done := make(chan string, 1)
	go func() {
		o, e, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "update", gid, "--start-request", sr(1))
		done <- fmt.Sprintf("exit %d\n%s%s", code, o, e)
	}()
	fewest := 3
	var result string
	for result == "" {
		select {
		case result = <-done:
		default:
			fewest = min(fewest, len(processes(c.sleep(0)))+len(processes(c.sleep(1))))
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !strings.HasPrefix(result, "exit 0") || !strings.Contains(result, "updated to version 2: 3 running") {
		t.Fatalf("update:\n%s", result)
	}
	if fewest < 3 {
		t.Fatalf("during the update only %d copies ran at one moment", fewest)
	}
	testutil.Eventually(t, 10*time.Second, "3 copies of version 2, none of version 1", func() bool {
		return len(processes(c.sleep(1))) == 3 && len(processes(c.sleep(0))) == 0
	})

	if _, errs, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "update", gid, "--start-request", sr(1)); code == 0 || !strings.Contains(errs, "nothing to update") {
		t.Fatalf("an update to the same definition: exit %d %s", code, errs)
	}
	for _, w := range c.u.workloads(t, c.url()) {
		if w.Group == gid {
			if info := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "info", w.ID); !strings.Contains(info, "Group:       "+gid+" (a copy, running version 2") {
				t.Fatalf("info of a copy does not name its group:\n%s", info)
			}
			break
		}
	}
	for _, bad := range []string{`{"uri":"file:///nonexistent/api"}`, `{"uri":"file:///bin/sh","argv":["-c","exit 3"]}`} {
		_, errs, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "update", gid, "--start-request", bad)
		if code == 0 || !strings.Contains(errs, "stopped, the copies of version 2 run on") {
			t.Fatalf("bad update %s: exit %d %s", bad, code, errs)
		}
		if n := len(processes(c.sleep(1))); n != 3 {
			t.Fatalf("after the bad update %s, %d copies of version 2 run", bad, n)
		}
	}
	// a new group whose copies cannot start (the node refuses the start, as it refuses the
	// same plain start) is refused, not kept and auctioned again every round: a walk's
	// group of a missing executable said "created, no copy placed yet" and exited 0
	_, errs, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service",
		"--name", "noexe", "--replicas", "2", "--start-request", `{"uri":"file:///nonexistent/api"}`)
	if code == 0 || !strings.Contains(errs, "not an executable file") || !strings.Contains(errs, "the group was not created; nothing was started") {
		t.Fatalf("a group of a missing executable: exit %d %s", code, errs)
	}
	if list := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "list"); strings.Contains(list, "noexe") {
		t.Fatalf("the refused group is listed:\n%s", list)
	}
	info := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "info", gid)
	if !strings.Contains(info, "replica group of 3, version 2") || strings.Count(info, "running, version 2") != 3 {
		t.Fatalf("info after the updates:\n%s", info)
	}
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", gid)
}

// coordinatorNode is a node other than not that says, last, that it coordinates the
// cluster (nil while none does; a paused node cannot say it stopped).
func (c *cluster) coordinatorNode(not *nexdNode) *nexdNode {
	for _, n := range c.nodes {
		out := n.bg.out.String()
		if on := strings.LastIndex(out, "coordinating the cluster"); n != not && on >= 0 && on > strings.LastIndex(out, "no longer coordinating") {
			return n
		}
	}
	return nil
}

// A coordinator paused in the middle of a rolling update (SIGSTOP, past its lease) is
// replaced; the new coordinator finishes the update, and the old one, once it runs
// again, places nothing more: its placements are fenced by the lease epoch it held. The
// group ends with exactly its copies, all of the new version.
func TestRollingUpdateWithAPausedCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := startNexCluster(t)
	sr, gid := c.sleeperRequest, c.startAPI()
	var coord *nexdNode
	testutil.Eventually(t, 10*time.Second, "a coordinator", func() bool { coord = c.coordinatorNode(nil); return coord != nil })

	done := make(chan string, 1)
	go func() {
		o, e, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "update", gid, "--start-request", sr(1))
		done <- fmt.Sprintf("exit %d\n%s%s", code, o, e)
	}()
	// the update's first copy placed (the CLI's own command line names the new sleep too)
	testutil.Eventually(t, 20*time.Second, "the update's first copy of version 2", func() bool {
		return strings.Count(coord.bg.out.String(), "replica group: copy started") >= 4
	})
	_ = coord.bg.cmd.Process.Signal(syscall.SIGSTOP)
	paused := true
	defer func() {
		if paused {
			_ = coord.bg.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	testutil.Eventually(t, 40*time.Second, "another node to take the coordinator lease", func() bool {
		return c.coordinatorNode(coord) != nil
	})
	time.Sleep(3 * time.Second) // the new coordinator at work while the old one is stopped: a fault's length, not a wait for a result
	_ = coord.bg.cmd.Process.Signal(syscall.SIGCONT)
	paused = false
	result := <-done
	t.Logf("the update, whose coordinator was paused: %s", result)
	if !strings.Contains(result, "updated to version 2") && !strings.Contains(result, "stopped coordinating the cluster during it") {
		t.Fatalf("the update's answer says neither that it was done nor that another coordinator goes on with it:\n%s", result)
	}
	testutil.Eventually(t, 90*time.Second, "exactly 3 copies, all of version 2", func() bool {
		return len(processes(c.sleep(1))) == 3 && len(processes(c.sleep(0))) == 0
	})
	c.stayExactly(3, 1, 10*time.Second)
	info := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "info", gid)
	if !strings.Contains(info, "replica group of 3, version 2") || strings.Count(info, "running, version 2") != 3 {
		t.Fatalf("info after the update:\n%s", info)
	}
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", gid)
}

// stayExactly checks, for d, that service i runs exactly n times.
func (c *cluster) stayExactly(n, i int, d time.Duration) {
	c.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if p := processes(c.sleep(i)); len(p) != n {
			c.t.Fatalf("service %d runs %d times, want %d: %v", i, len(p), n, p)
		}
	}
}

// The coordinator is one actor, and its placements are fenced by the lease it holds: a
// 10-copy rolling update (2 at a time), with a node-loss window of 3 s, whose coordinator
// is paused (SIGSTOP) between two batches past the window, and run again. The new
// coordinator finishes the update. Sampled every 20 ms, no more copies run than the
// group's count plus max_parallel; and one node at a time places copies: the paused one
// places none once it was paused (its lease went to another node meanwhile). The
// coordinator runs no copy itself (its node lacks the group's tag), so the pause moves
// none of them: every copy counted is one a coordinator placed.
func TestTenCopyUpdateWithItsCoordinatorPausedPastTheWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	c := &cluster{t: t, u: newUser(t), servers: testutil.StartCluster(t, 3), base: 700000 + time.Now().UnixNano()%100000*10}
	window := []string{"--state-replicas", "3", "--node-loss-window", "3s"}
	first := startNexdNamed(t, c.u, c.servers[0].ClientURL(), filepath.Join(c.u.home, "node-1"), "node-1", window...)
	c.nodes = append(c.nodes, first)
	testutil.Eventually(t, 20*time.Second, "node-1 to coordinate", func() bool { return c.coordinatorNode(nil) == first })
	for i := 1; i < 3; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		c.nodes = append(c.nodes, startNexdNamed(t, c.u, c.servers[i].ClientURL(), filepath.Join(c.u.home, name), name, append(window, "--tags", "pool=work")...))
	}
	out := c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "api",
		"--replicas", "10", "--max-per-node", "5", "--tags", "pool=work", "--start-request", c.sleeperRequest(0))
	gid := groupID(out)
	testutil.Eventually(t, 30*time.Second, "10 copies of version 1", func() bool { return len(processes(c.sleep(0))) == 10 })

	placed := func() int { return strings.Count(first.bg.out.String(), "replica group: copy started") }
	most, sampled := 0, make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			most = max(most, c.running(0)+c.running(1))
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	done := make(chan string, 1)
	go func() {
		o, e, code := c.u.nex("-s", c.url(), "--namespace", "default", "workload", "update", gid, "--max-parallel", "2", "--start-request", c.sleeperRequest(1))
		done <- fmt.Sprintf("exit %d\n%s%s", code, o, e)
	}()
	// the first batch placed: the coordinator now waits 2 s for it to prove itself
	testutil.Eventually(t, 30*time.Second, "the update's first batch", func() bool { return placed() >= 12 })
	_ = first.bg.cmd.Process.Signal(syscall.SIGSTOP)
	atPause := placed()
	paused := true
	defer func() {
		if paused {
			_ = first.bg.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	testutil.Eventually(t, 30*time.Second, "another node to take the coordinator lease", func() bool { return c.coordinatorNode(first) != nil })
	time.Sleep(3 * time.Second) // the new coordinator at work while the old one is stopped: a fault's length, not a wait for a result
	_ = first.bg.cmd.Process.Signal(syscall.SIGCONT)
	paused = false
	t.Logf("the update, whose coordinator was paused: %s", <-done)
	testutil.Eventually(t, 90*time.Second, "exactly 10 copies, all of version 2", func() bool {
		return len(processes(c.sleep(1))) == 10 && len(processes(c.sleep(0))) == 0
	})
	close(stop)
	<-sampled
	if most > 12 {
		t.Errorf("at one sample %d copies ran: more than the group's 10 and max_parallel 2", most)
	}
	if n := placed(); n != atPause {
		t.Errorf("the paused coordinator placed %d copies after it was paused, while another held the lease", n-atPause)
	}
	c.stayExactly(10, 1, 5*time.Second)
	c.u.mustNex("-s", c.url(), "--namespace", "default", "workload", "stop", gid)
}

// running counts the processes of service i: its copies' own, not a command that names
// it (the update's command line holds the new start request).
func (c *cluster) running(i int) int {
	n := 0
	for _, pid := range processes(c.sleep(i)) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(b), "sleep\x00") {
			n++
		}
	}
	return n
}
