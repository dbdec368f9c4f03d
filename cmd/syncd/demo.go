package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/tokens"
)

// cmdDemo runs the token lifecycle end to end on one machine with nothing
// installed: an embedded Redis (miniredis), the in-process fake provider
// with short token lifetimes and some throttling, and a few users whose
// consent is revoked so the re-auth path shows.
func cmdDemo(ctx context.Context, args []string, e env) error {
	fs, _ := flags("demo", e)
	users := fs.Int("users", 25, "number of demo users")
	revoked := fs.Int("revoked", 3, "of which this many have their consent revoked")
	duration := fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
	lifetime := fs.Duration("lifetime", 20*time.Second, "access-token lifetime the fake provider issues")
	redisURL := fs.String("redis-url", "", "use this Redis instead of an embedded one (keys under a demo prefix)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *users < 1 || *revoked < 0 || *revoked > *users {
		return badInput("demo: want --users >= 1 and 0 <= --revoked <= --users, got %d and %d", *users, *revoked)
	}
	if *lifetime < 4*time.Second {
		return badInput("demo: --lifetime must be at least 4s, got %s", *lifetime)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	cfg := config.DefaultConfig()
	cfg.Log.Level, cfg.Log.Format = "warn", "console"
	log := newLogger(cfg.Log, e.stderr)
	url := *redisURL
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("demo: embedded redis: %w", err)
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return badInput("demo: --redis-url: %v", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	prefix := fmt.Sprintf("syncd-demo-%d:", time.Now().UnixNano())
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Shards: 4})
	if err := store.Ping(ctx); err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keys, err := tokens.NewKeyring("demo", map[string][]byte{"demo": key})
	if err != nil {
		return err
	}

	prov := fake.New(fake.Options{AccessLifetime: *lifetime, ThrottleRate: 0.05, RetryAfter: 2 * time.Second, Latency: 20 * time.Millisecond, Seed: 42})
	pol := tokens.Policy{
		Lead: *lifetime / 2, Jitter: *lifetime / 5, DefaultLifetime: *lifetime, Timeout: 2 * time.Second,
		RetryInitial: time.Second, RetryMax: 5 * time.Second, RetryAfterCap: 10 * time.Second,
		DegradedAfter: 2, CircuitFailures: 50, CircuitCooldown: 5 * time.Second,
	}
	var ok, transient, flagged atomic.Int64
	r, err := tokens.NewRefresher(store, keys, map[string]tokens.ProviderEntry{"demo": {Provider: prov, Policy: pol}},
		tokens.Options{Workers: 8, PollInterval: 200 * time.Millisecond, Lease: 10 * time.Second, Logger: log,
			Observe: func(res tokens.Result) {
				switch res.Outcome {
				case "ok":
					ok.Add(1)
				case "transient":
					transient.Add(1)
				case "reauth":
					flagged.Add(1)
				}
			}})
	if err != nil {
		return err
	}
	for i := range *users {
		u := fmt.Sprintf("demo-user-%02d", i+1)
		if _, err := r.Put(ctx, "demo", prov.Issue(u)); err != nil {
			return err
		}
		if i < *revoked {
			prov.Revoke(u)
		}
	}
	fmt.Fprintf(e.stdout, "syncd demo: %d users (%d with revoked consent), tokens live %s and refresh %s-%s ahead; Redis at %s\n",
		*users, *revoked, *lifetime, pol.Lead, pol.Lead+pol.Jitter, opt.Addr)
	if err := r.Start(ctx); err != nil {
		return err
	}
	start := time.Now()
	counts := func() map[tokens.State]int {
		m := map[tokens.State]int{}
		var cursor uint64
		for {
			recs, _, next, err := store.Scan(context.WithoutCancel(ctx), cursor, 500)
			if err != nil {
				return m
			}
			for _, rec := range recs {
				m[rec.State]++
			}
			if cursor = next; cursor == 0 {
				return m
			}
		}
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			c := counts()
			fmt.Fprintf(e.stdout, "%5.0fs  active %-3d degraded %-3d reauth_required %-3d | refreshes ok %-4d transient %-3d | flagged %d\n",
				time.Since(start).Seconds(), c[tokens.Active], c[tokens.Degraded], c[tokens.ReauthRequired], ok.Load(), transient.Load(), flagged.Load())
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	q, _ := store.ReauthQueue(context.Background())
	st := prov.Stats()
	fmt.Fprintf(e.stdout, "\nsummary after %s: %d refreshes (%d throttled and retried), %d users in the re-auth queue:\n",
		time.Since(start).Round(time.Second), st.Refreshes, transient.Load(), len(q))
	for _, x := range q {
		fmt.Fprintf(e.stdout, "  %s  since %s  reason %s\n", x.UserID, x.Since.Format(time.TimeOnly), x.Reason)
	}
	fmt.Fprintln(e.stdout, "tokens are encrypted at rest; `syncd token put` brings a flagged user back (see README).")
	return nil
}
