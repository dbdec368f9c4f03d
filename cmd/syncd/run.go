package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

var _ admin.Gauges = (*redisstore.Store)(nil)

// cmdRun is the daemon: refresher, job runner and admin server on one
// Redis, until SIGTERM/SIGINT; SIGHUP or a change of the config file
// reloads the config.
func cmdRun(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("run", e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := config.Path(*cfgPath, e.getenv)
	cfg, err := loadConfig(path, e)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, path, e, hooks{})
}

// hooks let the demo watch a daemon it runs in-process.
type hooks struct {
	observeRefresh func(refresher.Result)
	observeRun     func(jobs.Run)
	// started is called once the daemon is ready, with its admin address.
	started func(d *daemon, admin string)
}

// serve runs the daemon for cfg until ctx ends. path is the config file
// to reload on SIGHUP and on change; "" disables reloading.
func serve(ctx context.Context, cfg *config.Config, path string, e env, h hooks) error {
	keys, err := keyring(cfg)
	if err != nil {
		return inputError{err}
	}
	log := newLogger(cfg.Log, e.stderr)

	// Signals: the first SIGINT/SIGTERM drains (ctx from main), a second
	// exits at once; SIGHUP reloads.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	reload := make(chan struct{}, 1)
	go func() {
		terms := 0
		for s := range sigs {
			if s == syscall.SIGHUP {
				select {
				case reload <- struct{}{}:
				default:
				}
				continue
			}
			if terms++; terms == 1 {
				stop()
				continue
			}
			log.Warn().Msg("second signal: exiting now")
			os.Exit(exitError)
		}
	}()

	rdb := redis.NewClient(redisOptions(cfg))
	defer rdb.Close() // last: everything below stops first
	store := newStoreFor(rdb, cfg, log)
	reg := prometheus.NewRegistry()
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_config_reload_total", Help: "Config reloads by result (ok, error)."}, []string{"result"})
	reloads.WithLabelValues("ok")
	reloads.WithLabelValues("error")
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		admin.BuildInfo(version), admin.NewCollector(store, nil, log), reloads)
	d := &daemon{store: store, log: log, keys: keys, cfg: cfg, owner: owner(),
		tokMetrics: refresher.NewMetrics(reg), jobMetrics: jobs.NewMetrics(reg), authMetrics: authflow.NewMetrics(reg),
		observeRefresh: h.observeRefresh, observeRun: h.observeRun}
	if cfg.Alerts.WebhookURL != "" {
		ao := alerts.Options{URL: cfg.Alerts.WebhookURL, Secret: []byte(cfg.Alerts.Secret), Logger: log}
		if cfg.Alerts.Links {
			ao.Enrich = d.addLinks
		}
		d.alerts = alerts.New(ao)
		defer d.alerts.Close()
	}

	errc := make(chan error, 2)
	adminAddr := ""
	if cfg.Admin.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			return inputError{fmt.Errorf("admin.listen: %w", err)}
		}
		srv := admin.New(admin.Options{Token: cfg.Admin.Token, Backend: d, Gatherer: reg, Logger: log,
			CallbackPath: cfg.Authorize.CallbackPath, DoneURL: cfg.Authorize.DoneURL})
		adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
		defer stopAdmin()
		go func() { errc <- srv.Serve(adminCtx, ln) }()
		adminAddr = ln.Addr().String()
		log.Info().Str("listen", adminAddr).Msg("admin server listening")
		if cfg.Authorize.PublicListen != "" {
			pln, err := net.Listen("tcp", cfg.Authorize.PublicListen)
			if err != nil {
				return inputError{fmt.Errorf("authorize.public_listen: %w", err)}
			}
			go func() { errc <- srv.ServePublic(adminCtx, pln) }()
			log.Info().Str("listen", pln.Addr().String()).Str("path", cfg.Authorize.CallbackPath).Msg("public authorization callback listening")
		}
	}

	// Wait for Redis without crashing: /healthz answers, /readyz fails.
	// Then check the keys against the database before any record is read
	// or written: a key that does not match stops the daemon (exit 2).
	if err := waitRedis(ctx, store, keys, log); err != nil {
		if errors.Is(err, tokens.ErrKeyMismatch) {
			return inputError{err}
		}
		return nil // stopped before Redis came
	}
	if n := store.ListpackValueLimit(ctx); n > 0 && n < 256 {
		log.Warn().Int("hash_max_listpack_value", n).Msg("Redis keeps token records compact only with hash-max-listpack-value 256 or more; memory per user roughly doubles (docs/benchmarks.md)")
	}
	if path != "" {
		d.applied = fileSum(path)
	}
	// Before any claim: due sets laid out for another shard count would
	// be claimed and never finished.
	d.announceShards(ctx)
	d.migrateShards(ctx)
	if err := d.apply(ctx, cfg, keys); err != nil {
		return err
	}
	d.ready.Store(true)
	if h.started != nil {
		h.started(d, adminAddr)
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	log.Info().Str("version", version).Int("jobs", len(cfg.Jobs)).Int("providers", len(cfg.Providers)).Msg("syncd running")

	house := cron.New()
	_, _ = house.AddFunc(fmt.Sprintf("@every %s", cfg.StatsInterval), func() { d.housekeeping(ctx) })
	house.Start()
	go d.housekeeping(ctx)

	var changes <-chan struct{}
	if path != "" {
		changes = watchConfig(ctx, path, log)
	}
	var watchdog <-chan time.Time
	if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return d.shutdown(house)
		case err := <-errc:
			stop()
			_ = d.shutdown(house)
			return err
		case <-reload:
			if path != "" {
				d.reload(ctx, path, e, reloads, true)
			}
		case <-changes:
			d.reload(ctx, path, e, reloads, false)
		case <-watchdog:
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}
}

func fileSum(path string) [32]byte {
	raw, _ := os.ReadFile(path)
	return sha256.Sum256(raw)
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

// daemon holds what runs now; reload swaps it.
type daemon struct {
	store       *redisstore.Store
	log         zerolog.Logger
	owner       string
	tokMetrics  *refresher.Metrics
	jobMetrics  *jobs.Metrics
	authMetrics *authflow.Metrics
	ready       atomic.Bool
	// observeRefresh and observeRun, if set, see every refresh pass and
	// job run (the demo's progress view).
	observeRefresh func(refresher.Result)
	observeRun     func(jobs.Run)
	// alerts sends the re-auth webhook; nil without alerts.webhook_url.
	alerts *alerts.Notifier

	mu      sync.RWMutex
	cfg     *config.Config
	keys    *tokens.Keyring
	ref     *refresher.Refresher
	runner  *jobs.Runner
	flow    *authflow.Flow
	applied [32]byte // hash of the config file last applied
}

// apply builds providers, refresher and runner for cfg and keys (verified
// against the database) and starts them, after stopping the previous ones
// (which hand their claims back).
func (d *daemon) apply(ctx context.Context, cfg *config.Config, keys *tokens.Keyring) error {
	clients, err := buildProviders(cfg, d.log, clock.Real{})
	if err != nil {
		return err
	}
	deps := &deps{cfg: cfg, store: d.store, keys: keys, log: d.log}
	refClients := make(map[string]refresher.Provider, len(clients))
	jobClients := make(map[string]jobs.Provider, len(clients))
	for n, c := range clients {
		refClients[n], jobClients[n] = c, c
	}
	var ref *refresher.Refresher
	runner, err := deps.runner(jobClients, func(rec tokens.Record, min time.Duration) provider.TokenSource { return ref.SourceFrom(rec, min) },
		jobs.Options{Owner: d.owner, Metrics: d.jobMetrics, Observe: d.observeRun})
	if err != nil {
		return err
	}
	onChange := runner.UserChanged
	if d.alerts != nil {
		onChange = func(ctx context.Context, user, prov string, st tokens.State) error {
			if st == tokens.ReauthRequired {
				d.alerts.Notify(alerts.Flag{User: user, Provider: prov, At: time.Now().UTC()})
			}
			return runner.UserChanged(ctx, user, prov, st)
		}
	}
	ref, err = deps.refresher(refClients, refresher.Options{Owner: d.owner, Metrics: d.tokMetrics, OnChange: onChange, Observe: d.observeRefresh})
	if err != nil {
		return err
	}
	flow := deps.flow(clients, ref, d.authMetrics)

	d.mu.Lock()
	oldRef, oldRunner := d.ref, d.runner
	d.mu.Unlock()
	if oldRef != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ShutdownGrace)
		_ = oldRunner.Stop(sctx)
		_ = oldRef.Stop(sctx)
		cancel()
	}
	if err := runner.Start(ctx); err != nil {
		return err
	}
	if err := ref.Start(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.cfg, d.keys, d.ref, d.runner, d.flow = cfg, keys, ref, runner, flow
	d.mu.Unlock()
	return nil
}

// reload validates the config file and applies it; an invalid one is
// rejected (logged, counted) and the running one stays.
// A file event that left the content as applied is ignored; SIGHUP
// (force) always reloads.
func (d *daemon) reload(ctx context.Context, path string, e env, reloads *prometheus.CounterVec, force bool) {
	sum := fileSum(path)
	d.mu.RLock()
	same := bytes.Equal(sum[:], d.applied[:])
	old := d.cfg
	d.mu.RUnlock()
	if same && !force {
		return
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyReloading)
	defer sd.SdNotify(false, sd.SdNotifyReady) //nolint:errcheck
	cfg, err := config.Load(path, e.getenv)
	if err != nil {
		reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload rejected; keeping the running config")
		return
	}
	if cfg.Redis.URL != old.Redis.URL || cfg.Redis.Prefix != old.Redis.Prefix || cfg.Redis.Shards != old.Redis.Shards || cfg.Admin != old.Admin {
		d.log.Warn().Msg("config reload: redis and admin settings take effect on restart only")
		cfg.Redis, cfg.Admin = old.Redis, old.Admin
	}
	// A keyring whose keys do not match the database is rejected like an
	// invalid config: the running one stays.
	keys, err := keyring(cfg)
	if err == nil {
		err = verifyKeys(ctx, keys, d.store)
	}
	if err != nil {
		reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload rejected; keeping the running config")
		return
	}
	if err := d.apply(ctx, cfg, keys); err != nil {
		reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload failed to apply")
		return
	}
	d.mu.Lock()
	d.applied = sum
	d.mu.Unlock()
	reloads.WithLabelValues("ok").Inc()
	d.log.Info().Int("jobs", len(cfg.Jobs)).Msg("config reloaded")
}

// shutdown stops claiming, lets running work finish within the grace
// period and hands the rest back.
func (d *daemon) shutdown(house *cron.Cron) error {
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	d.ready.Store(false)
	<-house.Stop().Done()
	d.mu.RLock()
	ref, runner, grace := d.ref, d.runner, d.cfg.ShutdownGrace
	d.mu.RUnlock()
	d.log.Info().Dur("grace", grace).Msg("shutting down: finishing running work, handing back the rest")
	ctx, cancel := context.WithTimeout(context.Background(), grace)
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
	d.withdrawShards()
	d.log.Info().Msg("stopped")
	return nil
}

// housekeeping counts users by state for the shared gauge, repairs the
// re-auth queue, quarantines malformed records and migrates due sets to
// the shard count, once per interval across replicas. Every replica
// announces its shard count first.
func (d *daemon) housekeeping(ctx context.Context) {
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

// watchConfig signals changes of the config file. It watches the
// directory, so an editor's rename and a Kubernetes ConfigMap update
// (which swaps a symlink) are both seen; bursts are debounced.
func watchConfig(ctx context.Context, path string, log zerolog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn().Err(err).Msg("config file watching unavailable; SIGHUP still reloads")
		return out
	}
	base := filepath.Base(path)
	if err := w.Add(filepath.Dir(path)); err != nil {
		log.Warn().Err(err).Msg("config file watching unavailable; SIGHUP still reloads")
		_ = w.Close()
		return out
	}
	go func() {
		defer w.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Only the config file itself, or Kubernetes' ..data
				// symlink swap; other files in the directory (a log file,
				// an editor's swap file) are not the config.
				if name := filepath.Base(ev.Name); ev.Has(fsnotify.Chmod) || (name != base && name != "..data") {
					continue
				}
				debounce = time.After(300 * time.Millisecond)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn().Err(err).Msg("config watch error")
			case <-debounce:
				debounce = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
