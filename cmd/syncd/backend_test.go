package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

// TestAPIRedisDown: while Redis is down the API answers 503 (try again),
// never 400 (the request was fine) or 500, and the body names nothing of
// the failure (no address); the caller's own mistakes are still told as
// such.
func TestAPIRedisDown(t *testing.T) {
	c := &cli{t: t, srv: redistest.StartPrivate(t), dir: t.TempDir()}
	c.jobs = "jobs: [{name: pull, kind: pull, schedule: \"@every 5m\"}]\n"
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	if code, _, errOut := c.run(oauthToken("AT-u1", "RT-u1"), "token", "put", "--user", "u1"); code != 0 {
		t.Fatal(errOut)
	}
	dp := &deps{cfg: mustConfig(t, c), store: c.store(), log: zerolog.Nop()}
	runner, err := dp.runner(nil, nil, jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{store: dp.store, log: zerolog.Nop(), cfg: dp.cfg, runner: runner}
	const token = "trigger-token-0123456789"
	h := admin.New(admin.Options{Token: token, Backend: d, Logger: zerolog.Nop()}).Handler()
	if code, body := serveHTTP(t, h, "POST", "/v1/jobs/pull/trigger?user=u1", token, ""); code != 200 {
		t.Fatalf("trigger with Redis up: %d %s", code, body)
	}

	c.srv.Kill(t)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/jobs/pull/trigger"},
		{"POST", "/v1/jobs/pull/trigger?user=u1"},
		{"GET", "/v1/users/u1"},
		{"GET", "/v1/jobs"},
	} {
		code, body := serveHTTP(t, h, tc.method, tc.path, token, "")
		if code != 503 || !strings.Contains(body, `"error"`) || strings.Contains(body, "127.0.0.1") {
			t.Errorf("%s %s with Redis down: %d %s, want 503 naming no address", tc.method, tc.path, code, body)
		}
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/jobs/nope/trigger", token, ""); code != 404 || !strings.Contains(body, "unknown job") {
		t.Errorf("trigger an unknown job with Redis down: %d %s, want 404", code, body)
	}
	if code, body := serveHTTP(t, h, "GET", "/v1/users/bad%20id", token, ""); code != 400 {
		t.Errorf("a bad user id with Redis down: %d %s, want 400", code, body)
	}
}

// TestExitCode: what the caller named or asked for exits 2, an outage or
// an error of no kind 1, whatever wraps it.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{badInput("token put: --user is required"), exitUsage},
		{fmt.Errorf("token put: %w", tokens.ErrBadToken), exitUsage},
		{fmt.Errorf("users show: %w", tokens.ErrNotFound), exitUsage},
		{fmt.Errorf("jobs trigger: %w", jobs.ErrUnknownJob), exitUsage},
		{fmt.Errorf("quarantine restore: %w", tokens.ErrLiveRecord), exitUsage},
		{fmt.Errorf("authorize start: %w", &authflow.Error{Kind: authflow.KindConflict, Msg: "user is active"}), exitUsage},
		{fmt.Errorf("authorize exchange: %w", &authflow.Error{Kind: authflow.KindUnavailable, Msg: "the provider is unavailable"}), exitError},
		{fmt.Errorf("users list: %w", errkind.Mark(errkind.Unavailable, errors.New("dial tcp: connection refused"))), exitError},
		{errors.New("keys rotate: 2 records are sealed with a key that is not configured"), exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%q) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
