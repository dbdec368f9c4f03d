package daemon

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// Offline is syncd's data for a command that runs beside the daemon, or
// without one: storage, the verified keyring, and the user view, list
// and token put the admin API serves. Engines it builds are never
// started.
type Offline struct {
	Config *config.Config
	Store  *redisstore.Store
	Keys   *tokens.Keyring
	rdb    redis.UniversalClient
	log    zerolog.Logger
}

// Open connects to cfg's Redis and checks the keys against the database
// before any record is opened or sealed: a key that does not match is an
// error wrapping tokens.ErrKeyMismatch, naming the key id.
func Open(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*Offline, error) {
	keys, err := keyring(cfg)
	if err != nil {
		return nil, errkind.Mark(errkind.Invalid, err)
	}
	rdb := redisClient(cfg)
	store := newStore(rdb, cfg, log)
	pctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout+time.Second)
	defer cancel()
	if err := store.Ping(pctx); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if err := keys.Verify(ctx, store); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	markShards(pctx, store, "cli-"+owner())
	return &Offline{Config: cfg, Store: store, Keys: keys, rdb: rdb, log: log}, nil
}

// Close closes the Redis client.
func (o *Offline) Close() { _ = o.rdb.Close() }

func (o *Offline) users() users { return users{store: o.Store, jobs: o.Config.Jobs} }

// User is everything about one user, as GET /v1/users/ID shows it.
func (o *Offline) User(ctx context.Context, id string) (admin.UserView, error) {
	return o.users().view(ctx, id)
}

// Users pages through users, as GET /v1/users does.
func (o *Offline) Users(ctx context.Context, st tokens.State, cursor uint64, limit int) ([]tokens.Status, uint64, int, error) {
	return o.users().list(ctx, st, cursor, limit)
}

// Put stores tok under provider, as PUT /v1/users/ID/token does, and
// returns the user.
func (o *Offline) Put(ctx context.Context, provider string, tok tokens.Token) (admin.UserView, error) {
	ref, err := o.Refresher()
	if err != nil {
		return admin.UserView{}, err
	}
	return o.users().put(ctx, ref, provider, tok)
}

// engines builds the engines for a command, with provider clients only
// if it calls providers.
func (o *Offline) engines(clients bool) (*engines, error) {
	ps, err := newProviders(o.Config.Providers, o.log, clients)
	if err != nil {
		return nil, err
	}
	return build(o.Config, o.Store, o.Keys, ps, o.log, buildOptions{})
}

// Refresher is a refresher that stores tokens and changes states (it
// calls no provider); users' job schedules follow, as in the daemon.
func (o *Offline) Refresher() (*refresher.Refresher, error) {
	e, err := o.engines(false)
	if err != nil {
		return nil, err
	}
	return e.ref, nil
}

// Runner is a job runner that schedules only: overview, trigger, pause.
func (o *Offline) Runner() (*jobs.Runner, error) {
	e, err := o.engines(false)
	if err != nil {
		return nil, err
	}
	return e.runner, nil
}

// Flow is the consent flow: tokens it obtains are stored as Put stores
// them.
func (o *Offline) Flow() (*authflow.Flow, error) {
	e, err := o.engines(true)
	if err != nil {
		return nil, err
	}
	return e.flow, nil
}
