package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
)

// ReloadFile reads Options.ConfigPath again and applies it (SIGHUP),
// as Reload does. It does nothing unless the daemon runs.
func (d *Daemon) ReloadFile() error { return d.reloadFile(true) }

// reloadFile reloads the config file. A file event that left the
// content as applied is ignored; SIGHUP (force) always reloads.
func (d *Daemon) reloadFile(force bool) error {
	path := d.opt.ConfigPath
	if path == "" || !d.ready.Load() {
		return nil
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	sum := fileSum(path)
	d.mu.RLock()
	same := bytes.Equal(sum[:], d.applied[:])
	d.mu.RUnlock()
	if same && !force {
		return nil
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyReloading)
	defer sd.SdNotify(false, sd.SdNotifyReady) //nolint:errcheck
	cfg, err := config.Load(path, d.opt.Getenv)
	if err != nil {
		d.reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload rejected; keeping the running config")
		return err
	}
	if err := d.reload(cfg); err != nil {
		return err
	}
	d.mu.Lock()
	d.applied = sum
	d.mu.Unlock()
	return nil
}

// Reload applies cfg to the running daemon (redis and admin settings
// only on restart); one that cannot be applied
// (a keyring that does not match the database, ...) is rejected, and
// the running config stays. Either way the outcome is logged and counted
// in syncd_config_reload_total.
func (d *Daemon) Reload(cfg *config.Config) error {
	if !d.ready.Load() {
		return errors.New("daemon: not running")
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	_, _ = sd.SdNotify(false, sd.SdNotifyReloading)
	defer sd.SdNotify(false, sd.SdNotifyReady) //nolint:errcheck
	return d.reload(cfg)
}

func (d *Daemon) reload(cfg *config.Config) error {
	d.mu.RLock()
	old := d.cfg
	d.mu.RUnlock()
	if cfg.Redis.URL != old.Redis.URL || cfg.Redis.Prefix != old.Redis.Prefix || cfg.Redis.Shards != old.Redis.Shards || cfg.Admin != old.Admin {
		d.log.Warn().Msg("config reload: redis and admin settings take effect on restart only")
		cfg.Redis, cfg.Admin = old.Redis, old.Admin
	}
	// A keyring whose keys do not match the database is rejected like an
	// invalid config: the running one stays.
	keys, err := keyring(cfg)
	if err == nil {
		err = keys.Verify(d.ctx, d.store)
	}
	if err != nil {
		d.reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload rejected; keeping the running config")
		return err
	}
	if err := d.apply(d.ctx, cfg, keys); err != nil {
		d.reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("config reload failed to apply")
		return err
	}
	d.reloads.WithLabelValues("ok").Inc()
	d.log.Info().Int("jobs", len(cfg.Jobs)).Msg("config reloaded")
	return nil
}

func fileSum(path string) [32]byte {
	raw, _ := os.ReadFile(path)
	return sha256.Sum256(raw)
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
