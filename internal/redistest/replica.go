package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartReplica starts a redis-server replicating master (--replicaof),
// which must come from StartPrivate, and returns once the master counts
// it as an online replica. The replica is killed when the test ends.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	mp := master.private(t, "StartReplica")
	if mp.tls != nil {
		t.Fatalf("redistest: StartReplica of a TLS server is not supported")
	}
	mc := master.Client(t)
	// The master's first full sync would wait 5 s for more replicas.
	if err := mc.ConfigSet(context.Background(), "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	p := &process{bin: mp.bin, port: freePort(t), dir: t.TempDir()}
	p.args = p.serverArgs("--replicaof", "127.0.0.1", strconv.Itoa(mp.port))
	srv := &Server{URL: "redis://127.0.0.1:" + strconv.Itoa(p.port) + "/0", Prefix: master.Prefix, proc: p}
	t.Cleanup(func() { p.kill() })
	p.start(t)

	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := mc.Info(ctx, "replication").Result()
		cancel()
		if err == nil && strings.Contains(info, "port="+strconv.Itoa(p.port)+",state=online") {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replica on port %d not online: %v %q", p.port, err, info)
		}
		// Readiness polling of a child process, not test synchronisation.
		time.Sleep(5 * time.Millisecond)
	}
}

// Freeze stops the server's process (SIGSTOP): it reads nothing and
// answers nothing, not even its master's replication stream, until the
// returned function (also run at cleanup) continues it (SIGCONT). Unlike
// Pause, it stops a replica's replication too.
func (s *Server) Freeze(t testing.TB) (thaw func()) {
	t.Helper()
	p := s.private(t, "Freeze")
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("redistest: Freeze of a server that is not running")
	}
	signal(t, cmd, syscall.SIGSTOP)
	done := false
	thaw = func() {
		if !done {
			done = true
			signal(t, cmd, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	return thaw
}

func signal(t testing.TB, cmd *exec.Cmd, sig syscall.Signal) {
	if err := cmd.Process.Signal(sig); err != nil {
		t.Errorf("redistest: %s: %v", sig, err)
	}
}

// WaitReplicated waits until every replica of the master c reaches the
// master's replication offset at the call, or fails the test after 10 s.
func WaitReplicated(t testing.TB, c *redis.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// WAIT counts this connection's writes: write on it first.
	conn := c.Conn()
	defer conn.Close()
	n, err := connectedSlaves(ctx, conn)
	if err != nil {
		t.Fatalf("redistest: replicas: %v", err)
	}
	if err := conn.Set(ctx, "redistest:sync", "1", time.Minute).Err(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	if got, err := conn.Wait(ctx, n, 10*time.Second).Result(); err != nil || got < int64(n) {
		t.Fatalf("redistest: %d of %d replicas caught up: %v", got, n, err)
	}
}

func connectedSlaves(ctx context.Context, c *redis.Conn) (int, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, nil
}
