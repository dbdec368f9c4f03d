package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

func cmdTokenPut(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("token put", e)
	user := fs.String("user", "", "user id (required)")
	file := fs.String("file", "", "read the token JSON from this file (default stdin)")
	provider := fs.String("provider", "", "provider name (default: the only configured provider)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireUser("token put", *user); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	prov, err := pickProvider(cfg.Providers, *provider)
	if err != nil {
		return err
	}
	data, err := readInput(*file, e.stdin)
	if err != nil {
		return err
	}
	tok, err := tokens.ParseToken(data, tokens.ParseOptions{UserID: *user, Now: time.Now(), DefaultLifetime: prov.DefaultLifetime})
	if err != nil {
		return inputError{err}
	}
	d, err := open(ctx, cfg, e)
	if err != nil {
		return err
	}
	defer d.Close()
	r, err := d.refresher(nil, refresher.Options{})
	if err != nil {
		return err
	}
	if _, err := r.Put(ctx, prov.Name, tok); err != nil {
		return fmt.Errorf("token put: %w", err)
	}
	rec, err := d.store.Load(ctx, *user)
	if err != nil {
		return fmt.Errorf("token put: %w", err)
	}
	next, _ := d.store.DueAt(ctx, tokens.RefreshSet, *user)
	fmt.Fprintf(e.stdout, "stored token for user %s (provider %s, state %s, access expires %s, next refresh %s)\n",
		*user, prov.Name, rec.State, rec.AccessExpiry.Format(time.RFC3339), fmtTime(next))
	return nil
}

// readInput reads a token document from a file or stdin, bounded.
func readInput(file string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, inputError{fmt.Errorf("token put: %w", err)}
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, tokens.MaxTokenInput+1))
	if err != nil {
		return nil, inputError{fmt.Errorf("token put: read token: %w", err)}
	}
	if len(data) == 0 {
		return nil, badInput("token put: no token given (pipe the JSON to stdin or use --file)")
	}
	return data, nil
}

func cmdTokenShow(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("token show", e)
	user := fs.String("user", "", "user id (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireUser("token show", *user); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	rec, err := d.store.Load(ctx, *user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("token show: no token stored for user %q", *user)
	}
	if err != nil {
		return fmt.Errorf("token show: %w", err)
	}
	next, err := d.store.DueAt(ctx, tokens.RefreshSet, *user)
	if err != nil {
		return fmt.Errorf("token show: %w", err)
	}
	st := tokens.StatusOf(rec, next, time.Now())
	if *asJSON {
		return writeJSON(e.stdout, st)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("user", st.User)
	row("provider", st.Provider)
	row("state", string(st.State))
	row("state reason", st.StateReason)
	row("state since", fmtPtr(st.StateSince))
	row("access expires", fmtTime(st.AccessExpiry))
	row("refresh expires", fmtPtr(st.RefreshExpiry))
	row("next refresh", fmtPtr(st.NextRefresh))
	row("last refresh", fmtPtr(st.LastRefresh))
	row("failures", fmt.Sprint(st.Failures))
	row("last error", st.LastError)
	row("key id", st.KeyID)
	row("version", fmt.Sprint(st.Version))
	if st.RefreshingBy != "" {
		row("refreshing by", st.RefreshingBy)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}
