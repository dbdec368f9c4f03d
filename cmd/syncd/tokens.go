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

	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/errkind"
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
	if err := requireUser("token put", *user, tokens.ValidateUserID); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	prov, err := daemon.PickProvider(cfg.Providers, *provider)
	if err != nil {
		return errkind.Mark(errkind.Invalid, err)
	}
	data, err := readInput(*file, e.stdin)
	if err != nil {
		return err
	}
	tok, err := tokens.ParseToken(data, tokens.ParseOptions{UserID: *user, Now: time.Now(), DefaultLifetime: prov.DefaultLifetime})
	if err != nil {
		return errkind.Mark(errkind.Invalid, err)
	}
	d, err := daemon.Open(ctx, cfg, newLogger(cfg.Log, e.stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	v, err := d.Put(ctx, prov.Name, tok)
	if err != nil {
		return fmt.Errorf("token put: %w", err)
	}
	fmt.Fprintf(e.stdout, "stored token for user %s (provider %s, state %s, access expires %s, next refresh %s)\n",
		*user, prov.Name, v.State, v.AccessExpiry.Format(time.RFC3339), fmtPtr(v.NextRefresh))
	return nil
}

// readInput reads a token document from a file or stdin, bounded.
func readInput(file string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "token put: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, tokens.MaxTokenInput+1))
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "token put: read token: %w", err)
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
	if err := requireUser("token show", *user, tokens.ValidateExistingUserID); err != nil {
		return err
	}
	d, err := openCmd(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	v, err := d.User(ctx, *user)
	if errors.Is(err, tokens.ErrNotFound) {
		return badInput("token show: no token stored for user %q", *user)
	}
	if err != nil {
		return fmt.Errorf("token show: %w", err)
	}
	st := v.Status
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
	st, err := tokens.Rotate(ctx, d.Store, d.Keys, *batch, func(s tokens.RotateStats) {
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
			d.Keys.Primary(), st.Scanned, st.Rekeyed, st.Current, st.Unreadable, st.Malformed, st.Upgraded)
	}
	if st.Unreadable > 0 {
		return fmt.Errorf("keys rotate: %d records are sealed with a key that is not configured or are corrupt; keep their key listed", st.Unreadable)
	}
	return nil
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
