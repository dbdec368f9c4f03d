package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster of three masters, each with one
// replica, that one test may use.
type Cluster struct {
	// Addrs are the host:port of every node, masters and replicas, as
	// the cluster was created (redis-cli picks which node is which).
	Addrs []string
	// Prefix is a key prefix unique to this test, as Server.Prefix.
	Prefix string

	procs []*process
}

// clusterNodes is how many redis-server a Cluster runs: 3 masters and a
// replica each.
const clusterNodes = 6

// StartCluster starts six redis-server in cluster mode on free loopback
// ports, each in a temp dir, joins them with redis-cli --cluster create
// (3 masters, 1 replica each) and returns once every node reports
// cluster_state:ok and every replica is attached. Every node is killed
// when the test ends. SYNCD_TEST_REDIS_URL is not used: a cluster is
// always the test's own.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found in PATH: install it (apt-get install -y redis-server)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not found in PATH: install it (apt-get install -y redis-tools)")
	}
	c := &Cluster{Prefix: "t" + randomHex(t) + ":"}
	for range clusterNodes {
		p := &process{bin: bin, port: freePort(t), dir: t.TempDir()}
		p.args = p.serverArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			// A killed master is failed over within a few seconds;
			// shorter flaps on a loaded test machine.
			"--cluster-node-timeout", "3000",
		)
		t.Cleanup(func() { p.kill() })
		p.start(t)
		c.procs = append(c.procs, p)
		c.Addrs = append(c.Addrs, fmt.Sprintf("127.0.0.1:%d", p.port))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v: %s", err, out)
	}
	c.waitHealthy(t)
	return c
}

// Client returns a new cluster client seeded with every node, closed on
// cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Masters returns the address of every master, sorted, as the nodes
// themselves report it now.
func (c *Cluster) Masters(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, n := range c.nodes(t, c.Addrs[0]) {
		if n.master {
			out = append(out, n.addr)
		}
	}
	slices.Sort(out)
	return out
}

// Failover promotes the replica of master (an address from Masters) with
// CLUSTER FAILOVER, a manual failover in which the master stops writes
// until its replica has caught up, and returns the new master's address
// once every node sees it as master of those slots and the cluster is
// ok again.
func (c *Cluster) Failover(t testing.TB, master string) string {
	t.Helper()
	var id, replica string
	nodes := c.nodes(t, master)
	for _, n := range nodes {
		if n.addr == master {
			id = n.id
		}
	}
	for _, n := range nodes {
		if id != "" && n.masterID == id {
			replica = n.addr
		}
	}
	if replica == "" {
		t.Fatalf("redistest: no replica of %s", master)
	}
	r := redis.NewClient(&redis.Options{Addr: replica})
	defer r.Close()
	if err := r.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("redistest: cluster failover on %s: %v", replica, err)
	}
	c.waitFor(t, "failover of "+master, func() error {
		for _, a := range c.Addrs {
			for _, n := range c.nodes(t, a) {
				if (n.addr == replica) != n.master && (n.addr == replica || n.addr == master) {
					return fmt.Errorf("%s does not see %s as master and %s as replica yet", a, replica, master)
				}
			}
		}
		return c.healthy()
	})
	return replica
}

// node is one line of CLUSTER NODES.
type node struct {
	id, addr, masterID string
	master             bool
}

// nodes returns CLUSTER NODES as node addr sees it.
func (c *Cluster) nodes(t testing.TB, addr string) []node {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: addr})
	defer r.Close()
	txt, err := r.ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatalf("redistest: cluster nodes on %s: %v", addr, err)
	}
	var out []node
	for line := range strings.Lines(txt) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@")
		n := node{id: f[0], addr: a, master: strings.Contains(f[2], "master")}
		if f[3] != "-" {
			n.masterID = f[3]
		}
		out = append(out, n)
	}
	return out
}

// healthy reports why the cluster is not ready: a node not ok, or a
// master without its replica.
func (c *Cluster) healthy() error {
	ctx := context.Background()
	replicas := 0
	for _, a := range c.Addrs {
		r := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		info, err := r.ClusterInfo(ctx).Result()
		role, rerr := r.Do(ctx, "ROLE").Slice()
		_ = r.Close()
		if err != nil || rerr != nil {
			return fmt.Errorf("%s: %v %v", a, err, rerr)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") {
			return fmt.Errorf("%s: %s", a, info)
		}
		// A replica counts once its link to the master is up.
		if len(role) >= 4 && role[0] == "slave" && role[3] == "connected" {
			replicas++
		}
	}
	if replicas != clusterNodes/2 {
		return fmt.Errorf("%d of %d replicas connected", replicas, clusterNodes/2)
	}
	return nil
}

func (c *Cluster) waitHealthy(t testing.TB) {
	t.Helper()
	c.waitFor(t, "cluster ok", c.healthy)
}

// waitFor polls cond until it returns nil, for at most 30 s: readiness
// polling of child processes, not test synchronisation.
func (c *Cluster) waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, p := range c.procs {
				b, _ := os.ReadFile(p.dir + "/redis.log")
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				fmt.Fprintf(&logs, "--- %d\n%s\n", p.port, strings.Join(lines[max(0, len(lines)-5):], "\n"))
			}
			t.Fatalf("redistest: %s: %v\n%s", what, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
