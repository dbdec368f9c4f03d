package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/tokens"
)

// openFlow opens storage and the providers' consent flows.
func openFlow(ctx context.Context, cfgPath string, e env) (*daemon.Offline, *authflow.Flow, error) {
	d, err := openCmd(ctx, cfgPath, e)
	if err != nil {
		return nil, nil, err
	}
	flow, err := d.Flow()
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, flow, nil
}

func cmdAuthorizeStart(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("authorize start", e)
	var req authflow.Request
	fs.StringVar(&req.User, "user", "", "the user to authorize (required)")
	fs.StringVar(&req.Provider, "provider", "", "provider name (default: the only one)")
	fs.StringVar(&req.RedirectURI, "redirect-uri", "", "where the provider sends the user back (default authorize.redirect_uri)")
	fs.StringVar(&req.State, "state", "", "state to use: 32 to 256 characters of A-Z a-z 0-9 _ - (default: random)")
	reauth := fs.Bool("reauth", false, "a re-authorization link for a user in reauth_required")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if req.User == "" {
		return badInput("authorize start: --user is required")
	}
	d, flow, err := openFlow(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	var l authflow.Link
	if *reauth {
		l, err = flow.Reauthorize(ctx, req)
	} else {
		l, err = flow.Authorize(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("authorize start: %w", err)
	}
	if *asJSON {
		return writeJSON(e.stdout, l)
	}
	fmt.Fprintf(e.stdout, "%s\nstate %s, %s flow, expires %s\n", l.URL, l.State, l.Flow, fmtTime(l.ExpiresAt))
	return nil
}

func cmdAuthorizeExchange(ctx context.Context, args []string, e env) error {
	fs, cfgPath := flags("authorize exchange", e)
	var cb authflow.Callback
	fs.StringVar(&cb.State, "state", "", "the callback's state (required)")
	fs.StringVar(&cb.Code, "code", "", "the callback's authorization code")
	fs.StringVar(&cb.Error, "error", "", "the callback's error (error or errorCode), if consent failed")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cb.State == "" || (cb.Code == "" && cb.Error == "") {
		return badInput("authorize exchange: --state and --code (or --error) are required")
	}
	d, flow, err := openFlow(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer d.Close()
	res, err := flow.Finish(ctx, cb)
	if err != nil {
		return fmt.Errorf("authorize exchange: %w", err)
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "user %s: %s (provider %s, %s flow)\n", res.User, res.State, res.Provider, res.Flow)
	return nil
}

// reauthLink is a re-auth queue entry with a fresh link.
type reauthLink struct {
	tokens.ReauthEntry
	Link          string    `json:"link,omitempty"`
	LinkExpiresAt time.Time `json:"link_expires_at,omitzero"`
	LinkError     string    `json:"link_error,omitempty"`
}

// reauthLinks makes a link per queued user (reauth list --links).
func reauthLinks(ctx context.Context, d *daemon.Offline, e env, q []tokens.ReauthEntry, asJSON bool) error {
	flow, err := d.Flow()
	if err != nil {
		return err
	}
	out := make([]reauthLink, len(q))
	for i, x := range q {
		out[i].ReauthEntry = x
		l, err := flow.Reauthorize(ctx, authflow.Request{User: x.UserID})
		if err != nil {
			out[i].LinkError = err.Error()
			continue
		}
		out[i].Link, out[i].LinkExpiresAt = l.URL, l.ExpiresAt
	}
	if asJSON {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tPROVIDER\tSINCE\tREASON\tLINK")
	for _, x := range out {
		link := x.Link
		if x.LinkError != "" {
			link = "error: " + x.LinkError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.UserID, x.Provider, fmtTime(x.Since), x.Reason, link)
	}
	return tw.Flush()
}
