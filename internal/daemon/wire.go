package daemon

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// Compile-time checks that the store serves its consumers.
var (
	_ tokens.Store         = (*redisstore.Store)(nil)
	_ tokens.KeyCheckStore = (*redisstore.Store)(nil)
	_ jobs.Store           = (*redisstore.Store)(nil)
	_ authflow.Store       = (*redisstore.Store)(nil)
)

// redisClient is the Redis client for cfg, in the deployment's mode (one
// node, Sentinel, Cluster), tuned for its engines (see
// redisstore.TuneClient): every client syncd builds is one.
func redisClient(cfg *config.Config) redis.UniversalClient {
	return redisstore.NewClient(cfg.Redis.ClientOptions(), cfg.Refresher.Workers+cfg.Runner.Workers, min(cfg.Refresher.Lease, cfg.Runner.Lease))
}

func newStore(rdb redis.UniversalClient, cfg *config.Config, log zerolog.Logger) *redisstore.Store {
	return redisstore.New(rdb, redisstore.Options{Prefix: cfg.Redis.Prefix, Shards: cfg.Redis.Shards, EventsMaxLen: cfg.Events.MaxLen, Logger: log,
		MinReplicasAcked: cfg.Redis.MinReplicasAcked, WaitTimeout: cfg.Redis.WaitTimeout})
}

func keyring(cfg *config.Config) (*tokens.Keyring, error) {
	keys := make(map[string][]byte, len(cfg.Encryption.Keys))
	for _, k := range cfg.Encryption.Keys {
		keys[k.ID] = cfg.Encryption.Key(k.ID)
	}
	return tokens.NewKeyring(cfg.Encryption.PrimaryKey, keys)
}

// CheckConfig checks what loading the config cannot: that its keyring
// builds.
func CheckConfig(cfg *config.Config) error {
	_, err := keyring(cfg)
	return err
}

// engines are one config's refresher, job runner and authorization
// flow, wired to each other: a run takes its user's tokens from the
// refresher; every stored token and state change reaches the runner
// (and the re-auth webhook); the flow stores tokens through the
// refresher.
type engines struct {
	ref    *refresher.Refresher
	runner *jobs.Runner
	flow   *authflow.Flow
	alerts *alerts.Notifier
}

// source gives a job run its user's tokens (jobs.TokenSources).
func (e *engines) source(rec tokens.Record, minValid time.Duration) provider.TokenSource {
	return e.ref.SourceFrom(rec, minValid)
}

// userChanged keeps the user's job schedule in step with a stored token
// or a state change (refresher.Options.OnChange), and sends the re-auth
// webhook for a flagged user.
func (e *engines) userChanged(ctx context.Context, user, prov string, st tokens.State) error {
	if e.alerts != nil && st == tokens.ReauthRequired {
		e.alerts.Notify(alerts.Flag{User: user, Provider: prov, At: time.Now().UTC()})
	}
	return e.runner.UserChanged(ctx, user, prov, st)
}

// putAuthorized stores a token the flow exchanged (authflow.Options.Put),
// as `token put` stores one, and returns the user's state as stored.
func (e *engines) putAuthorized(ctx context.Context, prov string, tok tokens.Token, reason string) (tokens.State, error) {
	st, _, err := e.ref.PutWithReason(ctx, prov, tok, reason)
	return st, err
}

// buildOptions are what the running daemon adds to engines; the zero
// value builds them for a command.
type buildOptions struct {
	owner          string
	tokMetrics     *refresher.Metrics
	jobMetrics     *jobs.Metrics
	authMetrics    *authflow.Metrics
	observeRefresh func(refresher.Result)
	observeRun     func(jobs.Run)
	alerts         *alerts.Notifier
}

// build makes the engines for cfg over ps. A config they refuse is a
// errkind.Invalid error.
func build(cfg *config.Config, store *redisstore.Store, keys *tokens.Keyring, ps providers, log zerolog.Logger, o buildOptions) (*engines, error) {
	e := &engines{alerts: o.alerts}
	rc := cfg.Runner
	runner, err := jobs.NewRunner(store, e.source, ps.jobs, cfg.Jobs, jobs.Options{Owner: o.owner, Metrics: o.jobMetrics, Observe: o.observeRun,
		Workers: rc.Workers, Batch: rc.Batch, Lease: rc.Lease, PollInterval: rc.PollInterval, Logger: log})
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "config: %w", err)
	}
	fc := cfg.Refresher
	ref, err := refresher.New(store, keys, ps.refresh, refresher.Options{Owner: o.owner, Metrics: o.tokMetrics, OnChange: e.userChanged,
		Observe: o.observeRefresh, Workers: fc.Workers, Batch: fc.Batch, Lease: fc.Lease, PollInterval: fc.PollInterval, Logger: log})
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "config: %w", err)
	}
	e.ref, e.runner = ref, runner
	e.flow = authflow.New(authflow.Options{
		Store: store, Keys: keys, Providers: ps.auth, Put: e.putAuthorized,
		StateTTL: cfg.Authorize.StateTTL, RedirectURI: cfg.Authorize.RedirectURI, AllowedRedirectURIs: cfg.Authorize.AllowedRedirectURIs,
		Logger: log, Metrics: o.authMetrics,
	})
	return e, nil
}
