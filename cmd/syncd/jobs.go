package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

func slotTiming(j config.JobConfig) scheduler.Timing {
	return scheduler.Timing{Schedule: j.Schedule, Missed: string(j.Missed), Salt: j.Name}
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
	if _, err := keyring(cfg); err != nil {
		return errkind.Errorf(errkind.Invalid, "config %s: %w", path, err)
	}
	fmt.Fprintf(e.stdout, "config %s is valid: %d providers, %d jobs\n", path, len(cfg.Providers), len(cfg.Jobs))
	now := time.Now()
	for _, j := range cfg.Jobs {
		tm := slotTiming(j)
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

func cmdJobsList(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("jobs list", e)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	d, r, err := openRunner(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	views, err := r.Overview(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("jobs list: %w", err)
	}
	if *asJSON {
		return writeJSON(e.stdout, views)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tKIND\tPROVIDER\tSCHEDULE\tZONE\tNEXT SLOT\tDUE NOW\tLAG\tRUNS/1H\tFAILED/1H\tPAUSED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%v\n", v.Name, v.Kind, v.Provider, v.Schedule, v.Timezone,
			v.NextSlot.Format("2006-01-02 15:04:05 MST"), v.DueNow, time.Duration(v.LagSeconds)*time.Second, v.RunsHour, v.FailedHour, v.Paused)
	}
	return tw.Flush()
}

// openRunner opens storage and builds a scheduling-only job runner.
func openRunner(ctx context.Context, cfgPath string, e env) (*deps, *jobs.Runner, error) {
	d, err := openCmd(ctx, cfgPath, e)
	if err != nil {
		return nil, nil, err
	}
	r, err := d.runner(nil, nil, jobs.Options{})
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, r, nil
}

// openCmd loads the config and opens storage.
func openCmd(ctx context.Context, cfgPath string, e env) (*deps, error) {
	cfg, err := loadConfig(cfgPath, e)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, e)
}

func cmdJobsTrigger(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("jobs trigger", e)
	user := fs.String("user", "", "only this user (default: every scheduled user)")
	name, rest := splitName(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if name == "" {
		return badInput("jobs trigger: want a job name: syncd jobs trigger NAME [--user ID]")
	}
	d, r, err := openRunner(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, ok := r.Timing(name); !ok {
		return badInput("jobs trigger: unknown job %q", name)
	}
	n, err := r.Trigger(ctx, name, *user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("jobs trigger: no token stored for user %q", *user)
	}
	if err != nil {
		return fmt.Errorf("jobs trigger: %w", err)
	}
	fmt.Fprintf(e.stdout, "job %s: %d users due now\n", name, n)
	return nil
}

// splitName takes a leading positional argument (the job name) off args
// so flags may follow it.
func splitName(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "", args
}

func cmdJobsPause(ctx context.Context, args []string, e env) error {
	return pauseJob(ctx, "jobs pause", args, e, true)
}

func cmdJobsResume(ctx context.Context, args []string, e env) error {
	return pauseJob(ctx, "jobs resume", args, e, false)
}

func pauseJob(ctx context.Context, cmd string, args []string, e env, paused bool) error {
	fs, cfgPath := flags(cmd, e)
	name, rest := splitName(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if name == "" {
		return badInput("%s: want a job name", cmd)
	}
	d, r, err := openRunner(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, ok := r.Timing(name); !ok {
		return badInput("%s: unknown job %q", cmd, name)
	}
	if err := r.SetPaused(ctx, name, paused); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	word := "resumed"
	if paused {
		word = "paused"
	}
	fmt.Fprintf(e.stdout, "job %s %s on every replica\n", name, word)
	return nil
}

func cmdUsersShow(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("users show", e)
	asJSON := fs.Bool("json", false, "print JSON")
	user, rest := splitName(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if user == "" {
		return badInput("users show: want a user id: syncd users show ID [--json]")
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	rec, err := d.store.Load(ctx, user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("users show: no token stored for user %q", user)
	}
	if err != nil {
		return fmt.Errorf("users show: %w", err)
	}
	now := time.Now()
	next, err := d.store.DueAt(ctx, tokens.RefreshSet, user)
	if err != nil {
		return fmt.Errorf("users show: %w", err)
	}
	r, err := d.runner(nil, nil, jobs.Options{})
	if err != nil {
		return err
	}
	uj, err := r.UserJobs(ctx, user, rec.Provider)
	if err != nil {
		return fmt.Errorf("users show: %w", err)
	}
	out := struct {
		tokens.Status
		Jobs []jobs.UserJob `json:"jobs"`
	}{Status: tokens.StatusOf(rec, next, now), Jobs: uj}
	if *asJSON {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "user\t%s\nprovider\t%s\nstate\t%s (%s since %s)\naccess expires\t%s\nnext refresh\t%s\nrefresh failures\t%d %s\n",
		rec.UserID, rec.Provider, rec.State, rec.StateReason, fmtTime(rec.StateAt), fmtTime(rec.AccessExpiry), fmtPtr(out.NextRefresh), rec.Failures, rec.LastError)
	if !rec.State.Runnable() {
		fmt.Fprintf(tw, "jobs\tnot running: the user is %s\n", rec.State)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nJOB\tNEXT RUN\tLAST RUN\tLAST SUCCESS\tFAILURES\tLAST ERROR")
	for _, j := range out.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", j.Job, fmtPtr(j.NextRun), fmtPtr(j.LastRun), fmtPtr(j.LastSuccess), j.Failures, j.LastError)
	}
	return tw.Flush()
}
