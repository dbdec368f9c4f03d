package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name StartSentinel's sentinels monitor.
const SentinelMaster = "syncd"

// Sentinel is a master, one replica and three sentinels watching them
// (quorum 2), all private to one test.
type Sentinel struct {
	// URL is the redis-sentinel:// URL of the sentinels, as redis.url
	// takes it.
	URL string
	// Prefix is a key prefix unique to this test.
	Prefix string

	nodes     map[string]*process // master and replica by address
	sentinels []*process
	thaw      func() // continues a frozen replica; nil if none
}

// sentinelWait bounds how long Failover and KillMaster wait for a new master:
// a kill is noticed after down-after-milliseconds (1 s), the election and
// promotion take a few seconds more.
const sentinelWait = 30 * time.Second

// StartSentinel starts a master, a replica of it (--replicaof) and three
// sentinels (sentinel monitor SentinelMaster ... 2, down after 1 s,
// failover timeout 5 s), each on a free loopback port with its data in
// t.TempDir(), and returns once the replica is in sync and every
// sentinel knows the replica and the other two sentinels, so that a
// failover can start at once. Everything is killed when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found in PATH: install it (apt-get install -y redis-server)")
	}
	s := &Sentinel{Prefix: "t" + randomHex(t) + ":", nodes: map[string]*process{}}
	node := func(extra ...string) *process {
		p := &process{bin: bin, port: freePort(t), dir: t.TempDir()}
		p.args = p.serverArgs(extra...)
		t.Cleanup(p.kill)
		p.start(t)
		s.nodes[p.hostPort()] = p
		return p
	}
	master := node()
	replica := node("--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	sentinelPoll(t, "the replica to sync", func(ctx context.Context) bool {
		info, _ := sentinelProbe(ctx, replica.hostPort(), "INFO", "replication").Text()
		return strings.Contains(info, "master_link_status:up")
	})
	var addrs []string
	for range 3 {
		p := &process{bin: bin, port: freePort(t), dir: t.TempDir()}
		conf := filepath.Join(p.dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %[4]s 1000\nsentinel failover-timeout %[4]s 5000\n",
			p.port, p.dir, filepath.Join(p.dir, "redis.log"), SentinelMaster, master.port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		p.args = []string{conf, "--sentinel"}
		t.Cleanup(p.kill)
		p.start(t)
		s.sentinels = append(s.sentinels, p)
		addrs = append(addrs, p.hostPort())
	}
	s.URL = "redis-sentinel://" + strings.Join(addrs, ",") + "?master=" + SentinelMaster
	sentinelPoll(t, "the sentinels to know the replica and each other", func(ctx context.Context) bool {
		for _, p := range s.sentinels {
			replicas, err1 := sentinelProbe(ctx, p.hostPort(), "SENTINEL", "REPLICAS", SentinelMaster).Slice()
			peers, err2 := sentinelProbe(ctx, p.hostPort(), "SENTINEL", "SENTINELS", SentinelMaster).Slice()
			if err1 != nil || err2 != nil || len(replicas) != 1 || len(peers) != 2 {
				return false
			}
		}
		return true
	})
	return s
}

// Master is the address of the master every sentinel reports.
func (s *Sentinel) Master(t testing.TB) string {
	t.Helper()
	var addr string
	sentinelPoll(t, "the sentinels to agree on a master", func(ctx context.Context) bool {
		addr = s.agreed(ctx)
		return addr != ""
	})
	return addr
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER) and returns
// the new master's address once every sentinel reports it, it answers as
// a master and the old master replicates from it in sync. The old master
// is made a replica (REPLICAOF) as soon as the replica answers as a
// master: Sentinel itself does that only some 10 s later, and writes the
// old master takes meanwhile are lost when it resyncs, as in production.
func (s *Sentinel) Failover(t testing.TB) string {
	t.Helper()
	old := s.Master(t)
	var next string
	for a := range s.nodes {
		if a != old {
			next = a
		}
	}
	sentinelPoll(t, "SENTINEL FAILOVER to be accepted", func(ctx context.Context) bool {
		// NOGOODSLAVE while the replica's state is not yet fresh enough.
		return sentinelProbe(ctx, s.sentinels[0].hostPort(), "SENTINEL", "FAILOVER", SentinelMaster).Err() == nil
	})
	host, port, _ := net.SplitHostPort(next)
	sentinelPoll(t, "the replica to be promoted", func(ctx context.Context) bool {
		role, err := sentinelProbe(ctx, next, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	if err := sentinelProbe(context.Background(), old, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatalf("redistest: demote the old master: %v", err)
	}
	if addr := s.waitNewMaster(t, old); addr != next {
		t.Fatalf("redistest: sentinels promoted %s, want %s", addr, next)
	}
	sentinelPoll(t, "the old master to replicate from the new one", func(ctx context.Context) bool {
		info, _ := sentinelProbe(ctx, old, "INFO", "replication").Text()
		return strings.Contains(info, "master_port:"+port+"\r\n") && strings.Contains(info, "master_link_status:up")
	})
	return next
}

// KillMaster kills the master with SIGKILL, as a crash would, and returns
// the new master's address once the sentinels have agreed it is down,
// promoted the replica and every sentinel reports it. The old master
// stays down. A replica stopped by FreezeReplica is continued right
// after the kill, before the sentinels notice it (down after 1 s): it
// comes back without the writes the master had not sent it, as a replica
// that lagged behind a crashed master does, and is promoted.
func (s *Sentinel) KillMaster(t testing.TB) string {
	t.Helper()
	old := s.Master(t)
	s.nodes[old].kill()
	if s.thaw != nil {
		s.thaw()
		s.thaw = nil
	}
	return s.waitNewMaster(t, old)
}

// FreezeReplica stops the replica (SIGSTOP): it neither applies nor
// acknowledges the master's writes (WAIT times out) until KillMaster, or
// the end of the test, continues it. Writes made meanwhile would still
// reach it from the kernel's socket buffers, even after a kill of the
// master; so FreezeReplica first fills the replication link with a
// throwaway value larger than those buffers, and the master's later
// writes wait in its own memory, where a SIGKILL loses them.
func (s *Sentinel) FreezeReplica(t testing.TB) {
	t.Helper()
	master := s.Master(t)
	var replica *process
	for a, p := range s.nodes {
		if a != master {
			replica = p
		}
	}
	thaw := (&Server{proc: replica}).Freeze(t)
	s.thaw = thaw
	c := redis.NewClient(&redis.Options{Addr: master, MaxRetries: -1, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	defer c.Close()
	ctx := context.Background()
	key := s.Prefix + "redistest:fill"
	if err := c.Set(ctx, key, strings.Repeat("x", socketBuffers()), 0).Err(); err != nil {
		t.Fatalf("redistest: fill the replication link: %v", err)
	}
	if err := c.Unlink(ctx, key).Err(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// socketBuffers is more than a loopback TCP connection's receive and send
// buffers can hold together: their largest sizes (tcp_rmem, tcp_wmem),
// plus a margin.
func socketBuffers() int {
	n := 8 << 20
	for _, f := range []string{"/proc/sys/net/ipv4/tcp_rmem", "/proc/sys/net/ipv4/tcp_wmem"} {
		b, err := os.ReadFile(f)
		fields := strings.Fields(string(b))
		v, err2 := 0, err
		if len(fields) == 3 {
			v, err2 = strconv.Atoi(fields[2])
		}
		if err != nil || err2 != nil {
			v = 32 << 20
		}
		n += v
	}
	return n
}

func (s *Sentinel) waitNewMaster(t testing.TB, old string) string {
	t.Helper()
	var addr string
	sentinelPoll(t, "a new master", func(ctx context.Context) bool {
		addr = s.agreed(ctx)
		if addr == "" || addr == old {
			return false
		}
		role, err := sentinelProbe(ctx, addr, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	return addr
}

// agreed is the master address every sentinel reports, or "".
func (s *Sentinel) agreed(ctx context.Context) string {
	var addr string
	for _, p := range s.sentinels {
		hp, err := sentinelProbe(ctx, p.hostPort(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
		if err != nil || len(hp) != 2 {
			return ""
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if addr != "" && a != addr {
			return ""
		}
		addr = a
	}
	return addr
}

func (p *process) hostPort() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// sentinelProbe sends one command to the server at addr on a connection of its
// own, without retries: a probe.
func sentinelProbe(ctx context.Context, addr string, args ...any) *redis.Cmd {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, PoolSize: 1})
	defer c.Close()
	return c.Do(ctx, args...)
}

// sentinelPoll polls cond on a short ticker until it holds, failing the test
// after sentinelWait.
func sentinelPoll(t testing.TB, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: gave up after %v waiting for %s", sentinelWait, what)
		case <-tick.C:
		}
	}
}
