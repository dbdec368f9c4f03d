package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
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

var errHelp = errors.New("help shown")

func init() {
	// go-redis logs dial failures through its own logger; syncd reports
	// errors itself, once, on one line.
	redis.SetLogger(quietRedis{})
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// flags returns a flag set for a command, with --config on every one.
// The flag package's own output is discarded: errors are reported on one
// line by report, and -h prints the flags to stdout.
func flags(name string, e env) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("syncd "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(e.stdout)
		fmt.Fprintf(e.stdout, "usage: %s [flags]\n", fs.Name())
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	cfg := fs.String("config", "", "config file (default $SYNCD_CONFIG, else configs/syncd.yaml)")
	return fs, cfg
}

// parseFlags parses args; a bad flag is input error, -h is not an error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return inputError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		return badInput("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func loadConfig(path string, e env) (*config.Config, error) {
	cfg, err := config.Load(config.Path(path, e.getenv), e.getenv)
	if err != nil {
		return nil, inputError{err}
	}
	return cfg, nil
}

// newLogger builds the root logger from the config.
func newLogger(cfg config.LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	console := cfg.Format == "console"
	if cfg.Format == "auto" || cfg.Format == "" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// deps are what most commands need: storage and the keyring.
type deps struct {
	cfg   *config.Config
	rdb   *redis.Client
	store *redisstore.Store
	keys  *tokens.Keyring
	log   zerolog.Logger
}

func (d *deps) Close() { _ = d.rdb.Close() }

// redisOptions are the client options for cfg (see redisstore.TuneClient):
// every command syncd builds a client for uses them.
func redisOptions(cfg *config.Config) *redis.Options {
	o := cfg.Redis.Options()
	redisstore.TuneClient(o, cfg.Refresher.Workers+cfg.Runner.Workers, min(cfg.Refresher.Lease, cfg.Runner.Lease))
	return o
}

func newStoreFor(rdb redis.UniversalClient, cfg *config.Config, log zerolog.Logger) *redisstore.Store {
	return redisstore.New(rdb, redisstore.Options{Prefix: cfg.Redis.Prefix, Shards: cfg.Redis.Shards, EventsMaxLen: cfg.Events.MaxLen, Logger: log})
}

func open(ctx context.Context, cfg *config.Config, e env) (*deps, error) {
	keys, err := keyring(cfg)
	if err != nil {
		return nil, inputError{err}
	}
	rdb := redis.NewClient(redisOptions(cfg))
	log := newLogger(cfg.Log, e.stderr)
	store := newStoreFor(rdb, cfg, log)
	pctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout+time.Second)
	defer cancel()
	if err := store.Ping(pctx); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if err := verifyKeys(ctx, keys, store); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	markShards(pctx, store, "cli-"+owner())
	return &deps{cfg: cfg, rdb: rdb, store: store, keys: keys, log: log}, nil
}

// verifyKeys checks keys against the database's key check values before
// a command opens or seals any record (tokens.Keyring.Verify). A key that
// does not match is the operator's input: exit 2, naming the key id.
func verifyKeys(ctx context.Context, keys *tokens.Keyring, store *redisstore.Store) error {
	err := keys.Verify(ctx, store)
	if errors.Is(err, tokens.ErrKeyMismatch) {
		return inputError{err}
	}
	return err
}

func keyring(cfg *config.Config) (*tokens.Keyring, error) {
	keys := make(map[string][]byte, len(cfg.Encryption.Keys))
	for _, k := range cfg.Encryption.Keys {
		keys[k.ID] = cfg.Encryption.Key(k.ID)
	}
	return tokens.NewKeyring(cfg.Encryption.PrimaryKey, keys)
}

// policy turns a provider's config into its refresh policy.
func policy(p config.ProviderConfig) refresher.Policy {
	return refresher.Policy{
		Lead: p.Lead, Jitter: p.Jitter, DefaultLifetime: p.DefaultLifetime, Timeout: p.Timeout,
		RetryInitial: p.RetryInitial, RetryMax: p.RetryMax, RetryAfterCap: p.RetryAfterCap,
		DegradedAfter: p.DegradedAfter, CircuitFailures: p.CircuitFailures, CircuitCooldown: p.CircuitCooldown,
	}
}

// runner builds the job runner. clients maps provider names to job
// providers; nil entries schedule but cannot run (the CLI).
func (d *deps) runner(clients map[string]jobs.Provider, sources jobs.TokenSources, opt jobs.Options) (*jobs.Runner, error) {
	entries := make(map[string]jobs.ProviderEntry, len(d.cfg.Providers))
	for _, p := range d.cfg.Providers {
		entries[p.Name] = jobs.ProviderEntry{Provider: clients[p.Name], RateLimit: p.RateLimit, Burst: p.Burst, MaxConcurrency: p.MaxConcurrency}
	}
	rc := d.cfg.Runner
	opt.Workers, opt.Batch, opt.Lease, opt.PollInterval = rc.Workers, rc.Batch, rc.Lease, rc.PollInterval
	opt.Logger = d.log
	r, err := jobs.NewRunner(d.store, sources, entries, d.cfg.Jobs, opt)
	if err != nil {
		return nil, inputError{fmt.Errorf("config: %w", err)}
	}
	return r, nil
}

// refresher builds a Refresher; providers maps provider names to clients
// (nil entries store tokens only, as the CLI does). Stored tokens and
// state changes keep the users' job schedules in step.
func (d *deps) refresher(clients map[string]refresher.Provider, opt refresher.Options) (*refresher.Refresher, error) {
	if opt.OnChange == nil {
		runner, err := d.runner(nil, nil, jobs.Options{})
		if err != nil {
			return nil, err
		}
		opt.OnChange = runner.UserChanged
	}
	entries := make(map[string]refresher.ProviderEntry, len(d.cfg.Providers))
	for _, p := range d.cfg.Providers {
		entries[p.Name] = refresher.ProviderEntry{Provider: clients[p.Name], Policy: policy(p)}
	}
	rc := d.cfg.Refresher
	opt.Workers, opt.Batch, opt.Lease, opt.PollInterval = rc.Workers, rc.Batch, rc.Lease, rc.PollInterval
	opt.Logger = d.log
	r, err := refresher.New(d.store, d.keys, entries, opt)
	if err != nil {
		return nil, inputError{fmt.Errorf("config: %w", err)}
	}
	return r, nil
}

// flow builds the authorization handoff over clients; tokens it obtains
// are stored through ref, as `token put` stores them.
func (d *deps) flow(clients map[string]client, ref *refresher.Refresher, m *authflow.Metrics) *authflow.Flow {
	provs := make(map[string]authflow.Provider, len(d.cfg.Providers))
	for _, p := range d.cfg.Providers {
		var a provider.Authorizer
		if c, ok := clients[p.Name].(provider.Authorizer); ok && (p.Kind != config.ProviderOAuth2 || p.OAuth2.AuthURL != "") {
			a = c
		}
		provs[p.Name] = authflow.Provider{Authorizer: a, DefaultLifetime: p.DefaultLifetime}
	}
	return authflow.New(authflow.Options{
		Store: d.store, Keys: d.keys, Providers: provs,
		Put: func(ctx context.Context, prov string, tok tokens.Token, reason string) error {
			_, err := ref.PutWithReason(ctx, prov, tok, reason)
			return err
		},
		StateTTL: d.cfg.Authorize.StateTTL, RedirectURI: d.cfg.Authorize.RedirectURI, Logger: d.log, Metrics: m,
	})
}
