package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/tokens"
)

func cmdUsersList(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("users list", e)
	stateFlag := fs.String("state", "", "only users in this state: active, degraded, reauth_required, disabled")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var want tokens.State
	if *stateFlag != "" {
		st, err := tokens.ParseState(*stateFlag)
		if err != nil {
			return badInput("users list: --state: %v", err)
		}
		want = st
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()

	// Page through in SCAN batches: nothing proportional to the user
	// count is held in memory.
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if *asJSON {
		fmt.Fprint(e.stdout, "[")
	} else {
		fmt.Fprintln(tw, "USER\tPROVIDER\tSTATE\tSINCE\tACCESS EXPIRES\tFAILURES")
	}
	n, malformed := 0, 0
	var cursor uint64
	for {
		page, next, bad, err := d.Users(ctx, want, cursor, 500)
		if err != nil {
			return fmt.Errorf("users list: %w", err)
		}
		malformed += bad
		for _, st := range page {
			if *asJSON {
				if n > 0 {
					fmt.Fprint(e.stdout, ",")
				}
				fmt.Fprintln(e.stdout)
				b, _ := json.Marshal(st)
				fmt.Fprintf(e.stdout, "  %s", b)
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", st.User, st.Provider, st.State,
					fmtPtr(st.StateSince), fmtTime(st.AccessExpiry), st.Failures)
			}
			n++
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if *asJSON {
		if n > 0 {
			fmt.Fprintln(e.stdout)
		}
		fmt.Fprintln(e.stdout, "]")
	} else if err := tw.Flush(); err != nil {
		return err
	}
	warnMalformed(e, malformed)
	return nil
}

// warnMalformed tells on stderr how many records a listing skipped
// because they could not be read.
func warnMalformed(e env, n int) {
	switch {
	case n == 1:
		fmt.Fprintln(e.stderr, "syncd: warning: 1 malformed record skipped; syncd run quarantines it (see syncd quarantine list)")
	case n > 1:
		fmt.Fprintf(e.stderr, "syncd: warning: %d malformed records skipped; syncd run quarantines them (see syncd quarantine list)\n", n)
	}
}

func cmdReauthList(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("reauth list", e)
	asJSON := fs.Bool("json", false, "print JSON")
	links := fs.Bool("links", false, "add a fresh re-authorization link per user (needs authorize.redirect_uri)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	q, bad, err := d.Store.ReauthQueueChecked(ctx)
	if err != nil {
		return fmt.Errorf("reauth list: %w", err)
	}
	warnMalformed(e, len(bad))
	if *links {
		if d.Config.Authorize.RedirectURI == "" {
			return badInput("reauth list: --links needs authorize.redirect_uri in the config")
		}
		return reauthLinks(ctx, d, e, q, *asJSON)
	}
	if *asJSON {
		return writeJSON(e.stdout, q)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tPROVIDER\tSINCE\tWAITING\tREASON")
	now := time.Now()
	for _, x := range q {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.UserID, x.Provider, fmtTime(x.Since), now.Sub(x.Since).Round(time.Second), x.Reason)
	}
	return tw.Flush()
}

func cmdUsersDisable(ctx context.Context, args []string, e env) error {
	return setUserState(ctx, "users disable", args, e, tokens.Disabled)
}

func cmdUsersEnable(ctx context.Context, args []string, e env) error {
	return setUserState(ctx, "users enable", args, e, tokens.Active)
}

func setUserState(ctx context.Context, name string, args []string, e env, to tokens.State) error {
	fs, cfgPath := flags(name, e)
	user := fs.String("user", "", "user id (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireUser(name, *user, tokens.ValidateExistingUserID); err != nil {
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
	op := r.Disable
	if to == tokens.Active {
		op = r.Enable
	}
	tr, err := op(ctx, *user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("%s: no token stored for user %q", name, *user)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if tr == nil {
		rec, err := d.Store.Load(ctx, *user)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(e.stdout, "user %s unchanged: %s\n", *user, rec.State)
		return nil
	}
	fmt.Fprintf(e.stdout, "user %s: %s -> %s\n", *user, tr.From, tr.To)
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
	v, err := d.User(ctx, user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("users show: no token stored for user %q", user)
	}
	if err != nil {
		return fmt.Errorf("users show: %w", err)
	}
	if *asJSON {
		return writeJSON(e.stdout, v)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "user\t%s\nprovider\t%s\nstate\t%s (%s since %s)\naccess expires\t%s\nnext refresh\t%s\nrefresh failures\t%d %s\n",
		v.User, v.Provider, v.State, v.StateReason, fmtPtr(v.StateSince), fmtTime(v.AccessExpiry), fmtPtr(v.NextRefresh), v.Failures, v.LastError)
	if !v.State.Runnable() {
		fmt.Fprintf(tw, "jobs\tnot running: the user is %s\n", v.State)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nJOB\tNEXT RUN\tLAST RUN\tLAST SUCCESS\tFAILURES\tLAST ERROR")
	for _, j := range v.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", j.Job, fmtPtr(j.NextRun), fmtPtr(j.LastRun), fmtPtr(j.LastSuccess), j.Failures, j.LastError)
	}
	return tw.Flush()
}
