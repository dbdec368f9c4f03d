package main

import (
	"context"
	"errors"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/tokens"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

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
	d, err := daemon.New(cfg, daemon.Options{Version: version, Logger: newLogger(cfg.Log, e.stderr), ConfigPath: path, Getenv: e.getenv})
	if err != nil {
		return err
	}
	return serve(ctx, d, e.reload, nil)
}

// serve runs d until ctx ends or an admin listener fails, then stops it;
// each request on reload re-reads the config file. running, if set, is
// called once d runs.
func serve(ctx context.Context, d *daemon.Daemon, reload <-chan struct{}, running func()) error {
	defer d.Stop(context.Background()) //nolint:errcheck // bounded by the shutdown grace
	if err := d.Start(ctx); err != nil {
		if ctx.Err() != nil && !errors.Is(err, tokens.ErrKeyMismatch) {
			return nil // stopped before Redis came
		}
		return err
	}
	if running != nil {
		running()
	}
	for {
		select {
		case <-ctx.Done():
			return d.Stop(context.Background())
		case err := <-d.Failed():
			_ = d.Stop(context.Background())
			return err
		case <-reload:
			_ = d.ReloadFile() // logged and counted by the daemon
		}
	}
}
