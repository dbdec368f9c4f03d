package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// pickProvider returns the named provider, or the only one.
func pickProvider(ps []config.ProviderConfig, name string) (config.ProviderConfig, error) {
	if name == "" {
		if len(ps) == 1 {
			return ps[0], nil
		}
		return config.ProviderConfig{}, badInput("--provider is required: %d providers are configured", len(ps))
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return config.ProviderConfig{}, badInput("--provider: unknown provider %q", name)
}

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

	// Stream in SCAN batches: nothing proportional to the user count is
	// held in memory.
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if *asJSON {
		fmt.Fprint(e.stdout, "[")
	} else {
		fmt.Fprintln(tw, "USER\tPROVIDER\tSTATE\tSINCE\tACCESS EXPIRES\tFAILURES")
	}
	n, malformed := 0, 0
	var cursor uint64
	now := time.Now()
	for {
		recs, bad, next, err := d.store.Scan(ctx, cursor, 500)
		if err != nil {
			return fmt.Errorf("users list: %w", err)
		}
		malformed += len(bad)
		for _, rec := range recs {
			if want != "" && rec.State != want {
				continue
			}
			if *asJSON {
				if n > 0 {
					fmt.Fprint(e.stdout, ",")
				}
				fmt.Fprintln(e.stdout)
				st := tokens.StatusOf(rec, time.Time{}, now)
				st.NextRefresh = nil
				b, _ := json.Marshal(st)
				fmt.Fprintf(e.stdout, "  %s", b)
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", rec.UserID, rec.Provider, rec.State,
					fmtTime(rec.StateAt), fmtTime(rec.AccessExpiry), rec.Failures)
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
	q, bad, err := d.store.ReauthQueueChecked(ctx)
	if err != nil {
		return fmt.Errorf("reauth list: %w", err)
	}
	warnMalformed(e, len(bad))
	if *links {
		if d.cfg.Authorize.RedirectURI == "" {
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

func cmdKeysRotate(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("keys rotate", e)
	batch := fs.Int64("batch", 500, "records per SCAN batch")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *batch < 1 {
		return badInput("keys rotate: --batch must be at least 1, got %d", *batch)
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	last := time.Now()
	st, err := tokens.Rotate(ctx, d.store, d.keys, *batch, func(s tokens.RotateStats) {
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			fmt.Fprintf(e.stderr, "syncd: keys rotate: %d scanned, %d re-encrypted\n", s.Scanned, s.Rekeyed)
		}
	})
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, st); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "keys rotate: primary key %s: %d scanned, %d re-encrypted, %d already current, %d unreadable, %d malformed; %d re-encrypted to bind their provider\n",
			d.keys.Primary(), st.Scanned, st.Rekeyed, st.Current, st.Unreadable, st.Malformed, st.Upgraded)
	}
	if st.Unreadable > 0 {
		return fmt.Errorf("keys rotate: %d records are sealed with a key that is not configured or are corrupt; keep their key listed", st.Unreadable)
	}
	return nil
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
	if err := requireUser(name, *user); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	r, err := d.refresher(nil, refresher.Options{})
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
		rec, err := d.store.Load(ctx, *user)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(e.stdout, "user %s unchanged: %s\n", *user, rec.State)
		return nil
	}
	fmt.Fprintf(e.stdout, "user %s: %s -> %s\n", *user, tr.From, tr.To)
	return nil
}
