package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/tokens"
)

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
