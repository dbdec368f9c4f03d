package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// cmdDemo runs the whole daemon on one machine with nothing installed: an
// embedded Redis (miniredis), the fake digi.me server on loopback, users
// with short-lived tokens, pull and push jobs every few seconds, and a
// few users whose consent is revoked so the re-auth path shows. The admin
// server listens on loopback (curl /metrics works).
func cmdDemo(ctx context.Context, args []string, e env) error {
	fs, _ := flags("demo", e)
	users := fs.Int("users", 25, "number of demo users")
	revoked := fs.Int("revoked", 3, "of which this many have their consent revoked")
	duration := fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
	lifetime := fs.Duration("lifetime", 20*time.Second, "access-token lifetime the fake digi.me issues")
	every := fs.Duration("every", 5*time.Second, "pull and push job interval")
	redisURL := fs.String("redis-url", "", "use this Redis instead of an embedded one (keys under a demo prefix)")
	adminListen := fs.String("admin", "127.0.0.1:9464", "admin server address (a free port is used if it is taken)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *users < 1 || *revoked < 0 || *revoked > *users {
		return badInput("demo: want --users >= 1 and 0 <= --revoked <= --users, got %d and %d", *users, *revoked)
	}
	if *lifetime < 4*time.Second || *every < time.Second {
		return badInput("demo: --lifetime must be at least 4s and --every at least 1s, got %s and %s", *lifetime, *every)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "syncd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	url := *redisURL
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("demo: embedded redis: %w", err)
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
	}

	// The contract's key pair and the fake digi.me server.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "contract.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	fake, err := digimefake.New(digimefake.Options{AppID: "demo-app", ContractID: "demo-contract", ContractKey: &key.PublicKey,
		AccessLifetime: *lifetime, PendingPolls: -1, RunningPolls: 1, FailRate: 0.02, Seed: 42})
	if err != nil {
		return err
	}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fctx, stopFake := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFake()
	go func() { _ = fake.Serve(fctx, fln, io.Discard) }()

	admin := *adminListen
	if l, err := net.Listen("tcp", admin); err == nil {
		l.Close()
	} else {
		admin = "127.0.0.1:0"
	}
	// A job refreshes a token first if it would expire during the run:
	// keep the run's timeout well under the short demo lifetimes.
	jobTimeout := min(4*time.Second, *lifetime/4)
	ekey := make([]byte, 32)
	_, _ = rand.Read(ekey)
	doc := fmt.Sprintf(`redis: {url: %q, prefix: "syncd-demo-%d:", shards: 4}
log: {level: error, format: console}
encryption: {keys: [{id: demo, secret: %q}]}
admin: {listen: %q}
shutdown_grace: 3s
stats_interval: 2s
refresher: {poll_interval: 200ms, lease: 10s}
runner: {poll_interval: 200ms, lease: 10s, workers: 16}
providers:
  - name: digime
    kind: digime
    lead: %s
    jitter: %s
    default_lifetime: %s
    timeout: 3s
    retry_initial: 1s
    retry_max: 5s
    retry_after_cap: 10s
    degraded_after: 2
    digime: {base_url: %q, onboard_url: %q, app_id: demo-app, contract_id: demo-contract, private_key_file: contract.pem, poll_interval: 100ms, max_duration: 5s}
authorize: {redirect_uri: "https://demo-app.example/digime/callback"}
jobs:
  - {name: pull, kind: pull, schedule: "@every %s", timeout: %s, retry: {attempts: 2, initial: 1s, max: 2s}}
  - {name: push, kind: push, schedule: "@every %s", timeout: %s, retry: {attempts: 2, initial: 1s, max: 2s}}
`, url, time.Now().UnixNano(), base64.StdEncoding.EncodeToString(ekey), admin, *lifetime/2, *lifetime/5, *lifetime,
		"http://"+fln.Addr().String()+digimefake.PathPrefix, "http://"+fln.Addr().String()+digimefake.OnboardPrefix, *every, jobTimeout, *every, jobTimeout)
	cfg, err := config.Parse(strings.NewReader(doc), dir, func(string) string { return "" })
	if err != nil {
		return fmt.Errorf("demo: config: %w", err)
	}

	// Refreshes are counted at the provider: scheduled ones and those a
	// job makes on use (a token that would expire during the run, a 401).
	var transient, pulls, pushes, failed atomic.Int64
	h := hooks{
		observeRefresh: func(r refresher.Result) {
			if r.Outcome == refresher.OutcomeTransient {
				transient.Add(1)
			}
		},
		observeRun: func(r jobs.Run) {
			switch {
			case r.Result == jobs.ResultOK && r.Job == "pull":
				pulls.Add(1)
			case r.Result == jobs.ResultOK && r.Job == "push":
				pushes.Add(1)
			case r.Result == jobs.ResultFailed:
				failed.Add(1)
			}
		},
	}
	start := time.Now()
	// The driver and the progress view stop (and are waited for) before
	// the summary is printed.
	var wg sync.WaitGroup
	gctx, stopGoroutines := context.WithCancel(ctx)
	defer stopGoroutines()
	h.started = func(d *daemon, adminAddr string) {
		fmt.Fprintf(e.stdout, "syncd demo: %d users (%d will have their consent revoked), tokens live %s, pull and push every %s\n",
			*users, *revoked, *lifetime, *every)
		fmt.Fprintf(e.stdout, "  fake digi.me at http://%s%s; admin at http://%s (try: curl http://%s/metrics, /v1/jobs, /v1/reauth)\n",
			fln.Addr(), digimefake.PathPrefix, adminAddr, adminAddr)
		wg.Add(2)
		go func() { defer wg.Done(); demoDriver(gctx, d, fake, *users, *revoked, *every) }()
		go func() {
			defer wg.Done()
			demoProgress(gctx, d, fake, e.stdout, start, &transient, &pulls, &pushes, &failed)
		}()
	}
	err = serve(ctx, cfg, "", e, h)
	stopGoroutines()
	wg.Wait()
	if err != nil {
		return err
	}

	// Summary (the daemon has stopped; Redis is still up).
	rdb := redis.NewClient(redisOptions(cfg))
	defer rdb.Close()
	pulled, _ := rdb.XLen(context.Background(), cfg.Redis.Prefix+"pulled").Result()
	imported := 0
	for i := range *users {
		imported += len(fake.Imports(demoUser(i)))
	}
	fmt.Fprintf(e.stdout, "\nsummary after %s: %d refreshes (%d retried transiently), %d pulls delivering %d files, %d pushes importing %d items, %d failed runs retried\n",
		time.Since(start).Round(time.Second), fake.Stats().Refreshes, transient.Load(), pulls.Load(), pulled, pushes.Load(), imported, failed.Load())
	store := newStoreFor(rdb, cfg, zerolog.Nop())
	q, _ := store.ReauthQueue(context.Background())
	fmt.Fprintf(e.stdout, "%d users in the re-auth queue, each with a fresh re-authorization link (POST /v1/users/ID/reauthorize):\n", len(q))
	// As `syncd reauth list --links` makes them (the daemon has stopped).
	keys, _ := keyring(cfg)
	flow, err := (&deps{cfg: cfg, rdb: rdb, store: store, keys: keys, log: zerolog.Nop()}).cliFlow()
	if err != nil {
		return err
	}
	for _, x := range q {
		link := ""
		for range 3 { // the fake digi.me fails a few requests on purpose
			l, err := flow.Reauthorize(context.Background(), authflow.Request{User: x.UserID})
			if err == nil {
				link = l.URL
				break
			}
			link = "(no link: " + err.Error() + ")"
		}
		fmt.Fprintf(e.stdout, "  %s  since %s  reason %s\n    %s\n", x.UserID, x.Since.Local().Format(time.TimeOnly), x.Reason, link)
	}
	fmt.Fprintln(e.stdout, "users were onboarded through the consent flow (syncd made the PKCE link and exchanged the code); tokens are encrypted at rest.")
	return nil
}

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
func demoConsent(ctx context.Context, d *daemon, link, user string) error {
	cb, err := followConsent(ctx, link, neturl.Values{"user": {user}})
	if err != nil {
		return err
	}
	_, err = d.FinishAuthorization(ctx, authflow.ParseCallback(cb.Query()))
	return err
}

// demoOnboard takes a user through the consent flow; the fake digi.me
// fails a few requests on purpose, so it tries again.
func demoOnboard(ctx context.Context, d *daemon, user string) error {
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
func demoDriver(ctx context.Context, d *daemon, fake *digimefake.Server, users, revoked int, every time.Duration) {
	for i := range users {
		u := demoUser(i)
		fake.AddFile(u, digimefake.File{Name: "profile.json", Data: []byte(`{"user":"` + u + `"}`), MimeType: "application/json"})
		if err := demoOnboard(ctx, d, u); err != nil && ctx.Err() == nil {
			d.log.Error().Err(err).Str("user", u).Msg("demo: onboarding failed")
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
			_ = d.store.AppendOutbox(ctx, u, map[string]any{"data": fmt.Sprintf("note %d for %s", n, u), "mime_type": "text/plain", "id": fmt.Sprint(n)})
		}
	}
}

func demoProgress(ctx context.Context, d *daemon, fake *digimefake.Server, w io.Writer, start time.Time, transient, pulls, pushes, failed *atomic.Int64) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		counts, _ := tokens.CountStates(ctx, d.store)
		size, _, _ := d.store.ReauthStats(ctx)
		fmt.Fprintf(w, "%5.0fs  active %-3d degraded %-3d reauth %-3d | refreshes %-4d (transient %d) | pulls %-4d pushes %-4d failed %-3d | re-auth queue %d\n",
			time.Since(start).Seconds(), counts[string(tokens.Active)], counts[string(tokens.Degraded)], counts[string(tokens.ReauthRequired)],
			fake.Stats().Refreshes, transient.Load(), pulls.Load(), pushes.Load(), failed.Load(), size)
	}
}
