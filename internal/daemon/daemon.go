package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

var _ admin.Gauges = (*redisstore.Store)(nil)

// Options configure a Daemon beyond its config.
type Options struct {
	// Version goes to syncd_build_info and the start log line.
	Version string
	// Logger is the root logger; components add their field.
	Logger zerolog.Logger
	// ConfigPath is the config file ReloadFile reads and whose changes
	// are watched; "" disables both (the demo, tests).
	ConfigPath string
	// Getenv expands ${VAR} when ConfigPath is read again; nil: none set.
	Getenv func(string) string
	// ObserveRefresh and ObserveRun, if set, see every refresh pass and
	// job run (the demo's progress view, tests). They must not block.
	ObserveRefresh func(refresher.Result)
	ObserveRun     func(jobs.Run)
}

// Daemon is syncd running: the refresher, the job runner, housekeeping
// and the admin server on one Redis. A reload swaps what runs.
type Daemon struct {
	opt         Options
	store       *redisstore.Store
	rdb         redis.UniversalClient
	log         zerolog.Logger
	owner       string
	reg         *prometheus.Registry
	reloads     *prometheus.CounterVec
	tokMetrics  *refresher.Metrics
	jobMetrics  *jobs.Metrics
	authMetrics *authflow.Metrics
	ready       atomic.Bool
	// alerts sends the re-auth webhook; nil without alerts.webhook_url.
	alerts *alerts.Notifier

	// Lifecycle: ctx lives until Stop.
	life      sync.Mutex
	ctx       context.Context
	cancel    context.CancelFunc
	started   bool
	stopped   bool
	running   bool          // Start got as far as applying the config
	startDone chan struct{} // closed when Start returns
	addr      string
	servers   sync.WaitGroup
	errc      chan error // a server that stopped serving
	failed    chan error
	loopDone  chan struct{}
	house     *cron.Cron
	// The admin servers outlive ctx: they stop last, after the engines.
	serverCtx   context.Context
	stopServers context.CancelFunc
	// api is the admin server; nil without admin.listen.
	api *admin.Server

	reloadMu sync.Mutex // one reload at a time

	mu      sync.RWMutex
	cfg     *config.Config
	keys    *tokens.Keyring
	ref     *refresher.Refresher
	runner  *jobs.Runner
	flow    *authflow.Flow
	applied [32]byte // hash of the config file last applied
}

// New prepares a daemon for cfg: nothing is listened on, read or
// started until Start. A keyring the config cannot build is an
// errkind.Invalid error.
func New(cfg *config.Config, opt Options) (*Daemon, error) {
	keys, err := keyring(cfg)
	if err != nil {
		return nil, errkind.Mark(errkind.Invalid, err)
	}
	if opt.Getenv == nil {
		opt.Getenv = func(string) string { return "" }
	}
	log := opt.Logger
	if cfg.Redis.TLS.InsecureSkipVerify {
		log.Warn().Msg("REDIS TLS IS NOT VERIFIED (redis.tls.insecure_skip_verify: true): anyone on the network path can read and change the traffic to Redis, tokens included; set redis.tls.ca_file instead")
	}
	rdb := redisClient(cfg)
	store := newStore(rdb, cfg, log)
	reg := prometheus.NewRegistry()
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_config_reload_total", Help: "Config reloads by result (ok, error)."}, []string{"result"})
	reloads.WithLabelValues("ok")
	reloads.WithLabelValues("error")
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		admin.BuildInfo(opt.Version), admin.NewCollector(store, nil, log), reloads)
	ctx, cancel := context.WithCancel(context.Background())
	sctx, stopServers := context.WithCancel(context.Background())
	d := &Daemon{serverCtx: sctx, stopServers: stopServers, opt: opt, store: store, rdb: rdb, log: log, keys: keys, cfg: cfg, owner: owner(), reg: reg, reloads: reloads,
		tokMetrics: refresher.NewMetrics(reg), jobMetrics: jobs.NewMetrics(reg), authMetrics: authflow.NewMetrics(reg),
		ctx: ctx, cancel: cancel, errc: make(chan error, 2), failed: make(chan error, 1), startDone: make(chan struct{})}
	if cfg.Alerts.WebhookURL != "" {
		ao := alerts.Options{URL: cfg.Alerts.WebhookURL, Secrets: cfg.Alerts.Secrets(), Logger: log}
		if cfg.Alerts.Links {
			ao.Enrich = d.addLinks
		}
		d.alerts = alerts.New(ao)
	}
	return d, nil
}

// Addr is the admin server's address; "" without admin.listen or
// before Start.
func (d *Daemon) Addr() string {
	d.life.Lock()
	defer d.life.Unlock()
	return d.addr
}

// Failed receives the error of an admin listener that stopped serving;
// the caller then stops the daemon.
func (d *Daemon) Failed() <-chan error { return d.failed }

// Start listens, waits for Redis without crashing (/healthz answers,
// /readyz fails), checks the keys against the database, applies the
// config and returns once the daemon runs. ctx bounds the start only;
// the daemon runs until Stop. A key that does not match the database
// ends it with an error wrapping tokens.ErrKeyMismatch.
func (d *Daemon) Start(ctx context.Context) error {
	d.life.Lock()
	if d.started || d.stopped {
		d.life.Unlock()
		return errors.New("daemon: already started or stopped")
	}
	d.started = true
	d.life.Unlock()
	defer close(d.startDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()

	cfg, keys := d.cfg, d.keys
	if err := d.listen(cfg); err != nil {
		return err
	}
	// Check the keys against the database before any record is read or
	// written.
	if err := waitRedis(ctx, d.store, keys, d.log); err != nil {
		return err
	}
	if n := d.store.ListpackValueLimit(ctx); n > 0 && n < 256 {
		d.log.Warn().Int("hash_max_listpack_value", n).Msg("Redis keeps token records compact only with hash-max-listpack-value 256 or more; memory per user roughly doubles (docs/benchmarks.md)")
	}
	if d.opt.ConfigPath != "" {
		d.applied = fileSum(d.opt.ConfigPath)
	}
	// Before any claim: due sets laid out for another shard count would
	// be claimed and never finished.
	d.announceShards(ctx)
	d.migrateShards(ctx)
	d.life.Lock()
	if d.stopped {
		d.life.Unlock()
		return context.Canceled
	}
	d.running = true
	d.life.Unlock()
	if err := d.apply(d.ctx, cfg, keys); err != nil {
		return err
	}
	d.ready.Store(true)
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	d.log.Info().Str("version", d.opt.Version).Int("jobs", len(cfg.Jobs)).Int("providers", len(cfg.Providers)).Msg("syncd running")

	d.house = cron.New()
	_, _ = d.house.AddFunc(fmt.Sprintf("@every %s", cfg.StatsInterval), func() { d.housekeeping(d.ctx) })
	d.house.Start()
	go d.housekeeping(d.ctx)
	d.loopDone = make(chan struct{})
	go d.loop()
	return nil
}

// listen starts the admin server (and the public callback listener).
func (d *Daemon) listen(cfg *config.Config) error {
	if cfg.Admin.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "admin.listen: %w", err)
	}
	// The Host check knows the configured name with the port listened on
	// (admin.listen may say port 0).
	host, _, _ := net.SplitHostPort(cfg.Admin.Listen)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	srv := admin.New(admin.Options{Credentials: adminCredentials(cfg.Admin), Listen: net.JoinHostPort(host, port),
		AllowedHosts: cfg.Admin.AllowedHosts, Backend: d, Gatherer: d.reg, Logger: d.log,
		CallbackPath: cfg.Authorize.CallbackPath, DoneURL: cfg.Authorize.DoneURL, DoneURLSecret: cfg.Authorize.DoneURLSecret})
	d.api = srv
	d.serve(func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	d.life.Lock()
	d.addr = ln.Addr().String()
	d.life.Unlock()
	d.log.Info().Str("listen", d.addr).Msg("admin server listening")
	if cfg.Authorize.PublicListen != "" {
		pln, err := net.Listen("tcp", cfg.Authorize.PublicListen)
		if err != nil {
			return errkind.Errorf(errkind.Invalid, "authorize.public_listen: %w", err)
		}
		d.serve(func(ctx context.Context) error { return srv.ServePublic(ctx, pln) })
		d.log.Info().Str("listen", pln.Addr().String()).Str("path", cfg.Authorize.CallbackPath).Msg("public authorization callback listening")
	}
	return nil
}

// serve runs a server until Stop.
func (d *Daemon) serve(run func(context.Context) error) {
	d.servers.Add(1)
	go func() {
		defer d.servers.Done()
		if err := run(d.serverCtx); err != nil {
			d.errc <- err
		}
	}()
}

// loop reloads on config file changes and feeds the systemd watchdog
// until Stop; a server error is handed to Failed.
func (d *Daemon) loop() {
	defer close(d.loopDone)
	var changes, tokenChanges <-chan struct{}
	if d.opt.ConfigPath != "" {
		changes = watchFiles(d.ctx, []string{d.opt.ConfigPath}, d.log)
	}
	d.mu.RLock()
	tokenFiles := adminTokenFiles(d.cfg.Admin)
	d.mu.RUnlock()
	if d.api != nil && len(tokenFiles) > 0 {
		tokenChanges = watchFiles(d.ctx, tokenFiles, d.log)
	}
	var watchdog <-chan time.Time
	if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case err := <-d.errc:
			d.failed <- err
			return
		case <-changes:
			_ = d.reloadFile(false)
		case <-tokenChanges:
			d.reloadTokens()
		case <-watchdog:
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}
}

// Stop stops claiming, lets running work finish within the shutdown
// grace (and ctx) and hands the rest back, then stops the admin server
// and closes Redis. It is idempotent and safe before Start.
func (d *Daemon) Stop(ctx context.Context) error {
	d.life.Lock()
	if d.stopped {
		d.life.Unlock()
		return nil
	}
	d.stopped = true
	started := d.started
	d.life.Unlock()
	d.cancel()
	if started {
		<-d.startDone
	}
	d.life.Lock()
	running := d.running
	d.life.Unlock()
	d.mu.RLock()
	// One grace period for everything: running work, then the re-auth
	// webhooks still queued (a flag not sent stays in the re-auth queue).
	end, cancel := context.WithTimeout(ctx, d.cfg.ShutdownGrace)
	d.mu.RUnlock()
	defer cancel()
	if running {
		d.shutdown(ctx)
	}
	if d.loopDone != nil {
		<-d.loopDone
	}
	d.stopServers()
	d.servers.Wait()
	if d.alerts != nil {
		_ = d.alerts.Close(end)
	}
	return d.rdb.Close() // last: everything above stopped first
}

func owner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// waitRedis retries until Redis answers and keys are verified against it
// (tokens.Keyring.Verify). A key that does not match ends it at once with
// an error wrapping tokens.ErrKeyMismatch.
func waitRedis(ctx context.Context, store *redisstore.Store, keys *tokens.Keyring, log zerolog.Logger) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 200*time.Millisecond, 10*time.Second, 0
	attempt := 0
	return backoff.Retry(func() error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := store.Ping(pctx)
		if err == nil {
			err = keys.Verify(ctx, store)
			if errors.Is(err, tokens.ErrKeyMismatch) {
				return backoff.Permanent(err)
			}
		}
		if err != nil && ctx.Err() == nil {
			if attempt++; attempt == 1 || attempt%10 == 0 {
				log.Error().Err(err).Int("consecutive_errors", attempt).Msg("redis unavailable; retrying")
			}
		}
		return err
	}, backoff.WithContext(bo, ctx))
}

// apply builds providers, refresher and runner for cfg and keys (verified
// against the database) and starts them, after stopping the previous ones
// (which hand their claims back).
func (d *Daemon) apply(ctx context.Context, cfg *config.Config, keys *tokens.Keyring) error {
	ps, err := newProviders(cfg.Providers, d.log, true)
	if err != nil {
		return err
	}
	e, err := build(cfg, d.store, keys, ps, d.log, buildOptions{owner: d.owner, tokMetrics: d.tokMetrics, jobMetrics: d.jobMetrics,
		authMetrics: d.authMetrics, observeRefresh: d.opt.ObserveRefresh, observeRun: d.opt.ObserveRun, alerts: d.alerts})
	if err != nil {
		return err
	}

	d.mu.Lock()
	oldRef, oldRunner := d.ref, d.runner
	d.mu.Unlock()
	if oldRef != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ShutdownGrace)
		_ = oldRunner.Stop(sctx)
		_ = oldRef.Stop(sctx)
		cancel()
	}
	if err := e.runner.Start(ctx); err != nil {
		return err
	}
	if err := e.ref.Start(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.cfg, d.keys, d.ref, d.runner, d.flow = cfg, keys, e.ref, e.runner, e.flow
	d.mu.Unlock()
	return nil
}

// shutdown stops claiming, lets running work finish within the grace
// period and hands the rest back.
func (d *Daemon) shutdown(ctx context.Context) {
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	d.ready.Store(false)
	if d.house != nil {
		<-d.house.Stop().Done()
	}
	d.mu.RLock()
	ref, runner, grace := d.ref, d.runner, d.cfg.ShutdownGrace
	d.mu.RUnlock()
	if ref != nil {
		d.log.Info().Dur("grace", grace).Msg("shutting down: finishing running work, handing back the rest")
		ctx, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		var wg sync.WaitGroup
		var errs [2]error
		wg.Add(2)
		go func() { defer wg.Done(); errs[0] = runner.Stop(ctx) }()
		go func() { defer wg.Done(); errs[1] = ref.Stop(ctx) }()
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			d.log.Warn().Err(err).Msg("work cancelled at the end of the grace period; its claims were handed back")
		}
	}
	d.withdrawShards()
	d.log.Info().Msg("stopped")
}

// housekeeping counts users by state for the shared gauge, repairs the
// re-auth queue, quarantines malformed records and migrates due sets to
// the shard count, once per interval across replicas. Every replica
// announces its shard count first.
func (d *Daemon) housekeeping(ctx context.Context) {
	d.mu.RLock()
	iv := d.cfg.StatsInterval
	d.mu.RUnlock()
	d.announceShards(ctx)
	ok, err := d.store.TryLock(ctx, "stats", d.owner, iv)
	if err != nil || !ok {
		return
	}
	ref, _, _ := d.current()
	counts, _, err := ref.Reconcile(ctx)
	if err == nil {
		err = d.store.SetStateCounts(ctx, counts)
	}
	if err == nil {
		_, err = d.store.ReauthQueue(ctx)
	}
	if err != nil && ctx.Err() == nil {
		d.log.Warn().Err(err).Msg("housekeeping failed")
	}
	d.migrateShards(ctx)
}
