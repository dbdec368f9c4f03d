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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
)

// cmdDemo runs the whole daemon on one machine with nothing installed: an
// embedded Redis (miniredis), the fake digi.me server on loopback, users
// with short-lived tokens, pull and push jobs every few seconds, and a
// few users whose consent is revoked so the re-auth path shows. The admin
// server listens on loopback (curl /metrics works); its /v1 API takes the
// read and write tokens generated for the run, which it prints.
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
	// The admin API is closed without a credential, as in syncd run: this
	// run's read and write tokens, printed below for the curl commands.
	readToken, writeToken := rand.Text(), rand.Text()
	for name, tok := range map[string]string{"read-token": readToken, "write-token": writeToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	doc := fmt.Sprintf(`redis: {url: %q, prefix: "syncd-demo-%d:", shards: 4}
log: {level: error, format: console}
encryption: {keys: [{id: demo, secret: %q}]}
admin: {listen: %q, read_token_file: read-token, write_token_file: write-token}
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
	log := newLogger(cfg.Log, e.stderr)
	d, err := daemon.New(cfg, daemon.Options{Version: version, Logger: log,
		ObserveRefresh: func(r refresher.Result) {
			if r.Outcome == "transient" {
				transient.Add(1)
			}
		},
		ObserveRun: func(r jobs.Run) {
			switch {
			case r.Result == "ok" && r.Job == "pull":
				pulls.Add(1)
			case r.Result == "ok" && r.Job == "push":
				pushes.Add(1)
			case r.Result == "failed":
				failed.Add(1)
			}
		},
	})
	if err != nil {
		return err
	}
	// The demo's own view of the data: outbox items, progress, summary.
	o, err := daemon.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		return err
	}
	defer o.Close()
	start := time.Now()
	// The driver and the progress view stop (and are waited for) before
	// the summary is printed.
	var wg sync.WaitGroup
	gctx, stopGoroutines := context.WithCancel(ctx)
	defer stopGoroutines()
	err = serve(ctx, d, nil, func() {
		fmt.Fprintf(e.stdout, "syncd demo: %d users (%d will have their consent revoked), tokens live %s, pull and push every %s\n",
			*users, *revoked, *lifetime, *every)
		fmt.Fprintf(e.stdout, "  fake digi.me at http://%s%s; admin at http://%s, its /v1 API behind this run's tokens (read %s, write %s); try:\n",
			fln.Addr(), digimefake.PathPrefix, d.Addr(), readToken, writeToken)
		fmt.Fprintf(e.stdout, "    curl http://%s/metrics\n", d.Addr())
		for _, p := range []string{"jobs", "reauth"} {
			fmt.Fprintf(e.stdout, "    curl -H 'Authorization: Bearer %s' http://%s/v1/%s\n", readToken, d.Addr(), p)
		}
		wg.Add(2)
		go func() { defer wg.Done(); demoDriver(gctx, d, o.Store, log, fake, *users, *revoked, *every) }()
		go func() {
			defer wg.Done()
			demoProgress(gctx, o.Store, fake, e.stdout, start, &transient, &pulls, &pushes, &failed)
		}()
	})
	stopGoroutines()
	wg.Wait()
	if err != nil {
		return err
	}

	// Summary (the daemon has stopped; Redis is still up).
	bg := context.Background()
	rdb := redisstore.NewClient(cfg.Redis.ClientOptions(), 0, 0)
	defer rdb.Close()
	pulled, _ := rdb.XLen(bg, cfg.Redis.Prefix+"pulled").Result()
	imported := 0
	for i := range *users {
		imported += len(fake.Imports(demoUser(i)))
	}
	fmt.Fprintf(e.stdout, "\nsummary after %s: %d refreshes (%d retried transiently), %d pulls delivering %d files, %d pushes importing %d items, %d failed runs retried\n",
		time.Since(start).Round(time.Second), fake.Stats().Refreshes, transient.Load(), pulls.Load(), pulled, pushes.Load(), imported, failed.Load())
	q, _ := o.Store.ReauthQueue(bg)
	fmt.Fprintf(e.stdout, "%d users in the re-auth queue, each with a fresh re-authorization link (POST /v1/users/ID/reauthorize):\n", len(q))
	// As `syncd reauth list --links` makes them (the daemon has stopped).
	flow, err := o.Flow()
	if err != nil {
		return err
	}
	for _, x := range q {
		link := ""
		for range 3 { // the fake digi.me fails a few requests on purpose
			l, err := flow.Reauthorize(bg, authflow.Request{User: x.UserID})
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
