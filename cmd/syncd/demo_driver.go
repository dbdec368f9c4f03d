package main

// The demo's app and users, played against the fake digi.me while the
// daemon runs (cmdDemo).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/tokens"
)

// followConsent plays the user's browser on a fake provider's consent
// link: it adds the fake's simulation knobs (user=, consent=deny), opens
// the link and returns where the provider redirected, without following.
func followConsent(ctx context.Context, link string, knobs neturl.Values) (*neturl.URL, error) {
	u, err := neturl.Parse(link)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	for k, v := range knobs {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := neturl.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("consent page answered %d", resp.StatusCode)
	}
	return loc, nil
}

// demoConsent has user consent on the fake digi.me and hands the callback
// to syncd, as the app would.
func demoConsent(ctx context.Context, d *daemon.Daemon, link, user string) error {
	cb, err := followConsent(ctx, link, neturl.Values{"user": {user}})
	if err != nil {
		return err
	}
	_, err = d.FinishAuthorization(ctx, authflow.ParseCallback(cb.Query()))
	return err
}

// demoOnboard takes a user through the consent flow; the fake digi.me
// fails a few requests on purpose, so it tries again.
func demoOnboard(ctx context.Context, d *daemon.Daemon, user string) error {
	var err error
	for range 5 {
		var l authflow.Link
		if l, err = d.Authorize(ctx, authflow.Request{User: user}); err == nil {
			if err = demoConsent(ctx, d, l.URL, user); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}

func demoUser(i int) string { return fmt.Sprintf("demo-user-%02d", i+1) }

// demoDriver plays the app and the users: onboarding, new files to pull,
// items to push, and consent revoked for a few.
func demoDriver(ctx context.Context, d *daemon.Daemon, store *redisstore.Store, log zerolog.Logger, fake *digimefake.Server, users, revoked int, every time.Duration) {
	for i := range users {
		u := demoUser(i)
		fake.AddFile(u, digimefake.File{Name: "profile.json", Data: []byte(`{"user":"` + u + `"}`), MimeType: "application/json"})
		if err := demoOnboard(ctx, d, u); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Str("user", u).Msg("demo: onboarding failed")
		}
	}
	for i := range revoked {
		// The user withdraws consent and the access token dies with it:
		// the next refresh fails for good.
		fake.Revoke(demoUser(i))
		fake.InvalidateAccess(demoUser(i))
	}
	t := time.NewTicker(2 * every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := range users {
			u := demoUser(i)
			fake.AddFile(u, digimefake.File{Name: fmt.Sprintf("posts-%d.json", n), Data: []byte(fmt.Sprintf(`{"n":%d}`, n)),
				MimeType: "application/json", Compression: "gzip"})
			_ = store.AppendOutbox(ctx, u, map[string]any{"data": fmt.Sprintf("note %d for %s", n, u), "mime_type": "text/plain", "id": fmt.Sprint(n)})
		}
	}
}

func demoProgress(ctx context.Context, store *redisstore.Store, fake *digimefake.Server, w io.Writer, start time.Time, transient, pulls, pushes, failed *atomic.Int64) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		counts, _ := tokens.CountStates(ctx, store)
		size, _, _ := store.ReauthStats(ctx)
		fmt.Fprintf(w, "%5.0fs  active %-3d degraded %-3d reauth %-3d | refreshes %-4d (transient %d) | pulls %-4d pushes %-4d failed %-3d | re-auth queue %d\n",
			time.Since(start).Seconds(), counts[string(tokens.Active)], counts[string(tokens.Degraded)], counts[string(tokens.ReauthRequired)],
			fake.Stats().Refreshes, transient.Load(), pulls.Load(), pushes.Load(), failed.Load(), size)
	}
}
