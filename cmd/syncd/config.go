package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/scheduler"
)

func loadConfig(path string, e env) (*config.Config, error) {
	cfg, err := config.Load(config.Path(path, e.getenv), e.getenv)
	if err != nil {
		return nil, errkind.Mark(errkind.Invalid, err)
	}
	return cfg, nil
}

// newLogger builds the root logger from the config; an empty or unknown
// level is info (zerolog parses "" as NoLevel, which drops every line).
func newLogger(cfg config.LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil || cfg.Level == "" {
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

func cmdConfigCheck(_ context.Context, args []string, e env) error {
	fs, cfgPath := flags("config check", e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := config.Path(*cfgPath, e.getenv)
	cfg, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	if err := daemon.CheckConfig(cfg); err != nil {
		return errkind.Errorf(errkind.Invalid, "config %s: %w", path, err)
	}
	fmt.Fprintf(e.stdout, "config %s is valid: %d providers, %d jobs\n", path, len(cfg.Providers), len(cfg.Jobs))
	now := time.Now()
	for _, j := range cfg.Jobs {
		tm := scheduler.Timing{Schedule: j.Schedule, Missed: string(j.Missed), Salt: j.Name}
		fmt.Fprintf(e.stdout, "job %s (%s, provider %s, %q in %s, spread %s, missed %s", j.Name, j.Kind, j.Provider, j.Spec, j.Location, j.Spread, j.Missed)
		if j.Paused {
			fmt.Fprint(e.stdout, ", paused")
		}
		fmt.Fprintln(e.stdout, "): next runs")
		t := now
		for range 3 {
			t = tm.Next("", t)
			fmt.Fprintf(e.stdout, "  %s\n", t.In(j.Location).Format("2006-01-02 15:04:05 MST"))
		}
	}
	return nil
}
