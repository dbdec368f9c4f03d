package daemon

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/redistest"
)

// readiness polls /readyz on a short ticker and keeps the longest time
// it answered anything but 200.
type readiness struct {
	mu       sync.Mutex
	longest  time.Duration
	downFrom time.Time // zero while ready
	stop     chan struct{}
	done     chan struct{}
}

func watchReady(url string) *readiness {
	r := &readiness{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 3 * time.Second}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			ok := false
			if resp, err := c.Get(url); err == nil {
				ok = resp.StatusCode == 200
				resp.Body.Close()
			}
			now := time.Now()
			r.mu.Lock()
			switch {
			case !ok && r.downFrom.IsZero():
				r.downFrom = now
			case ok && !r.downFrom.IsZero():
				r.longest = max(r.longest, now.Sub(r.downFrom))
				r.downFrom = time.Time{}
			}
			r.mu.Unlock()
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

// result stops watching and returns the longest time not ready, and
// whether it is ready now.
func (r *readiness) result() (time.Duration, bool) {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.longest, r.downFrom.IsZero()
}

// TestDaemonOnSentinel: on a redis-sentinel:// URL the daemon and the
// offline CLI find the master; users are stored, refreshed against a
// provider that rotates refresh tokens (forgiving the previous one for a
// while, see below), and a pull job runs. Through a SENTINEL FAILOVER and
// then a SIGKILL of the master, in the middle of that refresh traffic,
// the daemon keeps running: /readyz fails only while no master answers
// and recovers by itself (about 1 s measured, under -race), nothing
// fails and no user is flagged.
func TestDaemonOnSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and 3 sentinels, and fails over twice")
	}
	s := redistest.StartSentinel(t)
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	_ = os.WriteFile(filepath.Join(dir, "contract.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	// Redis replication is asynchronous: a commit the old master
	// acknowledged just before the promotion could be lost, and the
	// user's next refresh would present the spent refresh token. Commits
	// wait for the replica (redis.min_replicas_acked, automatic here), so
	// the provider is strict: no grace period forgives a reuse.
	fake, err := digimefake.New(digimefake.Options{AppID: "app", ContractID: "con", ContractKey: &key.PublicKey,
		AccessLifetime: 4 * time.Second, PendingPolls: -1, RunningPolls: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake.Handler())
	defer hs.Close()
	adminAddr := freeAddr(t)
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4, dial_timeout: 500ms}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: %q}
shutdown_grace: 5s
refresher: {poll_interval: 100ms, lease: 10s}
runner: {poll_interval: 100ms, lease: 10s}
providers:
  - name: digime
    kind: digime
    lead: 3s
    jitter: 200ms
    default_lifetime: 1m
    timeout: 5s
    retry_initial: 500ms
    retry_max: 2s
    digime: {base_url: %q, app_id: app, contract_id: con, private_key_file: contract.pem, poll_interval: 50ms}
jobs:
  - {name: pull, kind: pull, schedule: "@every 1s"}
`, s.URL, s.Prefix, key1, adminAddr, hs.URL+digimefake.PathPrefix)
	cfg, err := config.Parse(strings.NewReader(doc), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The offline CLI stores the users through the sentinels.
	o, err := Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		u := fmt.Sprintf("user-%02d", i)
		fake.AddFile(u, digimefake.File{Name: u + ".json", Data: []byte(`{"n":1}`), MimeType: "application/json"})
		tok := fake.Issue(u)
		tok.UserID = u
		if _, err := o.Put(ctx, "digime", tok); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()

	logs, err := os.Create(filepath.Join(dir, "syncd.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("daemon log:\n%s", b)
		}
	})
	ev := make(events, 1)
	d, err := New(cfg, ev.options(Options{Logger: zerolog.New(logs)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = d.Start(sctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	pulled := func() int64 {
		n, _ := d.rdb.XLen(ctx, s.Prefix+"pulled").Result()
		return n
	}
	ev.waitFor(t, "every user refreshed and pulled", 20*time.Second, func() bool {
		return fake.Stats().Refreshes >= n && pulled() >= n
	})

	ready := watchReady("http://" + adminAddr + "/readyz")
	// Refreshes go on after each failover: ~n per second in this setup.
	goesOn := func(what string) {
		t.Helper()
		from := fake.Stats().Refreshes
		ev.waitFor(t, "refreshes "+what, 20*time.Second, func() bool { return fake.Stats().Refreshes >= from+2*n })
	}
	start := time.Now()
	s.Failover(t)
	goesOn("after SENTINEL FAILOVER")
	s.KillMaster(t)
	goesOn("after the master was killed")
	elapsed := time.Since(start)
	longest, readyNow := ready.result()

	select {
	case err := <-d.Failed():
		t.Fatalf("daemon failed: %v", err)
	default:
	}
	st := fake.Stats()
	_, m := httpGet("http://" + adminAddr + "/metrics")
	flagged := metric(m, `syncd_reauth_flagged_total{reason="invalid_grant"}`)
	reauth, _ := d.rdb.ZCard(ctx, s.Prefix+"reauth").Result()
	t.Logf("%d users, %d refreshes in all, failovers took %v, longest not ready %v; grace refreshes %d, rejected %d, reused %d, flagged %v, re-auth queue %d",
		n, st.Refreshes, elapsed.Round(time.Millisecond), longest.Round(time.Millisecond), st.GraceRefreshes, st.RefreshRejected, st.Reused, flagged, reauth)
	if !readyNow {
		t.Error("not ready after the failovers")
	}
	// A kill is noticed after down-after-milliseconds (1s); the
	// election, promotion and go-redis' switch take a few seconds more.
	if longest > 10*time.Second {
		t.Errorf("not ready for %v, want at most 10s", longest)
	}
	if st.RefreshRejected != 0 || st.Reused != 0 || st.GraceRefreshes != 0 || flagged != 0 || reauth != 0 {
		t.Errorf("grants lost: %d refreshes rejected, %d reused, %v flagged, %d in the re-auth queue", st.RefreshRejected, st.Reused, flagged, reauth)
	}
}
