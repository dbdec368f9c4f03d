package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
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
	if cfg.Redis.URL != old.Redis.URL || cfg.Redis.Prefix != old.Redis.Prefix || cfg.Redis.Shards != old.Redis.Shards ||
		cfg.Admin.Listen != old.Admin.Listen || !slices.Equal(cfg.Admin.AllowedHosts, old.Admin.AllowedHosts) {
		d.log.Warn().Msg("config reload: redis settings, admin.listen and admin.allowed_hosts take effect on restart only")
		cfg.Redis, cfg.Admin.Listen, cfg.Admin.AllowedHosts = old.Redis, old.Admin.Listen, old.Admin.AllowedHosts
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
	// The token files were read again by the config's Validate.
	if d.api != nil {
		d.api.SetCredentials(adminCredentials(cfg.Admin))
	}
	d.reloads.WithLabelValues("ok").Inc()
	d.log.Info().Int("jobs", len(cfg.Jobs)).Msg("config reloaded")
	return nil
}

// reloadTokens reads the admin token files of the running config again
// (one changed) and applies them; tokens the config would refuse are
// rejected, logged and counted as a failed reload, and the running ones
// kept.
func (d *Daemon) reloadTokens() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.RLock()
	a := d.cfg.Admin
	d.mu.RUnlock()
	if err := a.ReadTokens(); err != nil {
		d.reloads.WithLabelValues("error").Inc()
		d.log.Error().Err(err).Msg("admin token files rejected; keeping the running credentials")
		return
	}
	d.api.SetCredentials(adminCredentials(a))
	d.reloads.WithLabelValues("ok").Inc()
	d.log.Info().Msg("admin credentials reloaded")
}

// adminCredentials are the admin API's credentials: the read and write
// tokens, named by their scope in the audit log.
func adminCredentials(a config.AdminConfig) []admin.Credential {
	return []admin.Credential{
		{Name: "read", Token: a.ReadToken, Scope: admin.Read},
		{Name: "write", Token: a.WriteToken, Scope: admin.Write},
	}
}

// adminTokenFiles are the token files a config names.
func adminTokenFiles(a config.AdminConfig) []string {
	var files []string
	for _, f := range []string{a.ReadTokenFile, a.WriteTokenFile, a.TokenFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

func fileSum(path string) [32]byte {
	raw, _ := os.ReadFile(path)
	return sha256.Sum256(raw)
}

// watchFiles signals changes of the files (the config file, the admin
// token files). It watches their directories, so an editor's rename and a
// Kubernetes ConfigMap or Secret update (which swaps a symlink) are both
// seen; bursts are debounced. The files are those named at Start: a token
// file moved by a reload is watched from the next restart (SIGHUP reads it
// either way).
func watchFiles(ctx context.Context, paths []string, log zerolog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn().Err(err).Msg("file watching unavailable; SIGHUP still reloads")
		return out
	}
	// names: directory -> the base names watched in it.
	names := map[string]map[string]bool{}
	for _, p := range paths {
		dir := filepath.Clean(filepath.Dir(p))
		if names[dir] == nil {
			if err := w.Add(dir); err != nil {
				log.Warn().Err(err).Str("path", p).Msg("file watching unavailable; SIGHUP still reloads")
				continue
			}
			names[dir] = map[string]bool{"..data": true}
		}
		names[dir][filepath.Base(p)] = true
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
				// Only the files themselves, or Kubernetes' ..data
				// symlink swap; other files in the directory (a log file,
				// an editor's swap file) are not watched.
				if ev.Has(fsnotify.Chmod) || !names[filepath.Dir(ev.Name)][filepath.Base(ev.Name)] {
					continue
				}
				debounce = time.After(300 * time.Millisecond)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn().Err(err).Msg("file watch error")
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
