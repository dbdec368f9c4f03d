package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redistest"
)

// TestKillRestartKeepsAcknowledgedWrites: with AppendOnly, every write a
// client saw acknowledged is there after a SIGKILL and a restart.
func TestKillRestartKeepsAcknowledgedWrites(t *testing.T) {
	srv := redistest.StartPrivate(t, redistest.AppendOnly())
	c := srv.Client(t)
	ctx := context.Background()
	for i := range 100 {
		if err := c.Incr(ctx, srv.Prefix+"n").Err(); err != nil {
			t.Fatalf("incr %d: %v", i, err)
		}
	}
	srv.Kill(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed server answered")
	}
	srv.Restart(t)
	got, err := c.Get(ctx, srv.Prefix+"n").Int()
	if err != nil || got != 100 {
		t.Fatalf("after restart: %d, %v; want 100", got, err)
	}
}

// TestPauseStallsEveryClient: a command sent during Pause is answered
// only after it, and the returned channel closes when it ends.
func TestPauseStallsEveryClient(t *testing.T) {
	srv := redistest.StartPrivate(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const d = 300 * time.Millisecond
	start := time.Now()
	over := srv.Pause(t, d)
	if err := c.Set(ctx, srv.Prefix+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < d-50*time.Millisecond {
		t.Fatalf("a write during a %v pause was answered after %v", d, took)
	}
	select {
	case <-over:
	case <-time.After(10 * time.Second):
		t.Fatal("the pause never ended")
	}
}

// TestTLS: a TLS server answers a client that trusts its CA and shows
// the client certificate, and refuses one that does not verify it.
func TestTLS(t *testing.T) {
	srv := redistest.StartPrivate(t, redistest.TLS())
	if !strings.HasPrefix(srv.URL, "rediss://") || srv.CAFile == "" || srv.CertFile == "" || srv.KeyFile == "" {
		t.Fatalf("server %+v", srv)
	}
	if err := srv.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	opt, _ := redis.ParseURL(srv.URL)
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the CA: %v", err)
	}
}

// TestSentinelFailover: through the sentinels, a client finds the master;
// after SENTINEL FAILOVER and after a SIGKILL of the master, it finds the
// promoted replica, with the writes acknowledged by a replica before.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 Redis processes and fails over twice")
	}
	s := redistest.StartSentinel(t)
	if !strings.HasPrefix(s.URL, "redis-sentinel://127.0.0.1:") || !strings.HasSuffix(s.URL, "?master="+redistest.SentinelMaster) {
		t.Fatalf("url %q", s.URL)
	}
	first := s.Master(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: sentinelAddrs(s.URL)})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	write := func(v string) {
		t.Helper()
		if err := c.Set(ctx, s.Prefix+"k", v, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
			t.Fatalf("wait: %d, %v", n, err)
		}
	}
	read := func(want string) {
		t.Helper()
		if got, err := c.Get(ctx, s.Prefix+"k").Result(); err != nil || got != want {
			t.Fatalf("get: %q, %v; want %q", got, err, want)
		}
	}
	write("1")
	second := s.Failover(t)
	if second == first {
		t.Fatalf("master still %s", first)
	}
	read("1")
	write("2")
	third := s.KillMaster(t)
	if third != first {
		t.Fatalf("after killing %s: master %s, want the old master %s back", second, third, first)
	}
	read("2")
}

func sentinelAddrs(url string) []string {
	hosts, _, _ := strings.Cut(strings.TrimPrefix(url, "redis-sentinel://"), "?")
	return strings.Split(hosts, ",")
}
