package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

func cmdQuarantineList(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("quarantine list", e)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	list, err := d.Store.QuarantineList(ctx)
	if err != nil {
		return fmt.Errorf("quarantine list: %w", err)
	}
	if *asJSON {
		return writeJSON(e.stdout, list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tREASON\tSINCE\tFOR")
	now := time.Now()
	for _, q := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", q.UserID, q.Reason, fmtTime(q.Since), now.Sub(q.Since).Round(time.Second))
	}
	return tw.Flush()
}

func cmdQuarantineRestore(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("quarantine restore", e)
	user := fs.String("user", "", "user id (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireUser("quarantine restore", *user, tokens.ValidateExistingUserID); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	r, err := d.Refresher()
	if err != nil {
		return err
	}
	rec, err := r.Restore(ctx, *user)
	if refresher.RestoreRefused(err) {
		return errkind.Errorf(errkind.Conflict, "quarantine restore: %w", err)
	}
	if err != nil {
		return fmt.Errorf("quarantine restore: %w", err)
	}
	fmt.Fprintf(e.stdout, "user %s restored: %s (provider %s)\n", *user, rec.State, rec.Provider)
	return nil
}
