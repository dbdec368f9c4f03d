package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/tokens"
)

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
func openRunner(ctx context.Context, cfgPath string, e env) (*daemon.Offline, *jobs.Runner, error) {
	d, err := openCmd(ctx, cfgPath, e)
	if err != nil {
		return nil, nil, err
	}
	r, err := d.Runner()
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, r, nil
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
