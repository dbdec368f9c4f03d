package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
)

// TestDeadlineBoundsCalls: a context deadline bounds a Redis call even when
// the server does not answer (go-redis applies deadlines to socket reads
// only with ContextTimeoutEnabled; without it a call waits out the read
// timeout and its retries).
func TestDeadlineBoundsCalls(t *testing.T) {
	srv := redistest.StartPrivate(t)
	opt, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opt.ReadTimeout = 10 * time.Second // as a redis.url with read_timeout=10s would
	redisstore.TuneClient(opt, 4, time.Minute)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	s := redisstore.New(rdb, redisstore.Options{Prefix: srv.Prefix})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	over := srv.Pause(t, 2*time.Second)

	// A command, and a script in a pipeline (as the engine's finisher
	// sends them), each with a short deadline.
	const budget = 200 * time.Millisecond
	calls := map[string]func(context.Context) error{
		"ping": s.Ping,
		"finish": func(ctx context.Context) error {
			_, err := s.FinishDue(ctx, "x", []scheduler.Done[struct{}]{{Member: "m", Fence: 1, Next: time.Now()}})
			return err
		},
	}
	done := make(chan string, len(calls))
	for name, call := range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			if err := call(ctx); err == nil {
				t.Errorf("%s answered while Redis was paused", name)
			} else if errkind.Of(err) != errkind.Unavailable {
				t.Errorf("%s: %v is not of kind unavailable", name, err)
			}
			done <- name
		}()
	}
	// Generous: only a call that ignores its deadline takes this long.
	for range calls {
		select {
		case <-done:
		case <-over:
			t.Fatalf("a call with a %s deadline was still waiting when the 2s pause ended", budget)
		}
	}
}

func TestTuneClientTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name         string
		read, write  time.Duration
		lease        time.Duration
		wantR, wantW time.Duration
	}{
		{"go-redis defaults under a long lease", 0, 0, time.Minute, 3 * time.Second, 3 * time.Second},
		{"capped below the renewal period", 0, 0, 4 * time.Second, time.Second, time.Second},
		{"a shorter setting stays", 200 * time.Millisecond, 0, time.Minute, 200 * time.Millisecond, 200 * time.Millisecond},
		{"no timeout gets one", -1, -1, time.Minute, 15 * time.Second, 15 * time.Second},
		{"no lease, no cap", -1, 0, 0, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &redis.Options{ReadTimeout: tc.read, WriteTimeout: tc.write}
			redisstore.TuneClient(o, 8, tc.lease)
			if !o.ContextTimeoutEnabled {
				t.Error("context deadlines do not bound calls")
			}
			if o.ReadTimeout != tc.wantR || o.WriteTimeout != tc.wantW {
				t.Errorf("read %v write %v, want %v %v", o.ReadTimeout, o.WriteTimeout, tc.wantR, tc.wantW)
			}
		})
	}
}

// TestErrorKinds: a Redis that cannot be reached makes every call fail
// with kind unavailable, pipelines included; Redis' own answers keep
// theirs (no record: not found; a record of the wrong type: conflict).
func TestErrorKinds(t *testing.T) {
	srv := redistest.StartPrivate(t)
	rdb := srv.Client(t)
	s := redisstore.New(rdb, redisstore.Options{Prefix: srv.Prefix})
	ctx := context.Background()
	if _, err := s.Load(ctx, "nobody"); errkind.Of(err) != errkind.NotFound {
		t.Errorf("load a missing user: %v, want kind not found", err)
	}
	if err := rdb.Set(ctx, srv.Prefix+"{u:bad}:tok", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "bad"); errkind.Of(err) != errkind.Conflict {
		t.Errorf("load a record of the wrong type: %v, want kind conflict", err)
	}

	srv.Kill(t)
	calls := map[string]func() error{
		"ping": func() error { return s.Ping(ctx) },
		"load": func() error { _, err := s.Load(ctx, "nobody"); return err },
		"scan": func() error { _, _, _, err := s.Scan(ctx, 0, 10); return err },
		"finish": func() error {
			_, err := s.FinishDue(ctx, "x", []scheduler.Done[struct{}]{{Member: "m", Fence: 1, Next: time.Now()}})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); errkind.Of(err) != errkind.Unavailable {
			t.Errorf("%s with Redis down: %v, want kind unavailable", name, err)
		}
	}
}
