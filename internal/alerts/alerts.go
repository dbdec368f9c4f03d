package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/jobs"
)

// Flag is one user flagged for re-authorization.
type Flag struct {
	User     string    `json:"user"`
	Provider string    `json:"provider"`
	At       time.Time `json:"at"`
	// Link is a fresh re-authorization link (alerts.links), valid until
	// LinkExpiresAt; empty when links are off or one could not be made.
	Link          string    `json:"link,omitempty"`
	LinkExpiresAt time.Time `json:"link_expires_at,omitzero"`
}

// Options configure a Notifier.
type Options struct {
	URL    string
	Secret []byte
	// Batch is the most flags per request (default 100); Wait is how
	// long a flag waits for company (default 2s).
	Batch      int
	Wait       time.Duration
	MaxQueue   int // default 10000
	HTTPClient *http.Client
	Clock      clock.Clock
	Logger     zerolog.Logger
	// Enrich, if set, is called on each batch before it is sent (off the
	// path that flags users): it adds the re-authorization links.
	Enrich func(ctx context.Context, batch []Flag)
}

// Notifier batches flags and posts them.
type Notifier struct {
	opt  Options
	in   chan Flag
	done chan struct{}
	once sync.Once
}

// New starts a Notifier; Close flushes and stops it.
func New(opt Options) *Notifier {
	if opt.Batch <= 0 {
		opt.Batch = 100
	}
	if opt.Wait <= 0 {
		opt.Wait = 2 * time.Second
	}
	if opt.MaxQueue <= 0 {
		opt.MaxQueue = 10000
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	n := &Notifier{opt: opt, in: make(chan Flag, opt.MaxQueue), done: make(chan struct{})}
	go n.loop()
	return n
}

// Notify queues a flag; it never blocks.
func (n *Notifier) Notify(f Flag) {
	select {
	case n.in <- f:
	default:
		n.opt.Logger.Error().Str("user", f.User).Msg("re-auth webhook queue full; flag not sent (it is in the re-auth queue)")
	}
}

// Close sends what is queued and stops.
func (n *Notifier) Close() {
	n.once.Do(func() { close(n.in) })
	<-n.done
}

func (n *Notifier) loop() {
	defer close(n.done)
	var batch []Flag
	var timer <-chan time.Time
	for {
		select {
		case f, ok := <-n.in:
			if !ok {
				n.send(batch)
				return
			}
			batch = append(batch, f)
			if len(batch) >= n.opt.Batch {
				n.send(batch)
				batch, timer = nil, nil
			} else if timer == nil {
				timer = time.After(n.opt.Wait)
			}
		case <-timer:
			n.send(batch)
			batch, timer = nil, nil
		}
	}
}

func (n *Notifier) send(batch []Flag) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if n.opt.Enrich != nil {
		n.opt.Enrich(ctx, batch)
	}
	body, _ := json.Marshal(map[string]any{"event": "reauth_required", "users": batch})
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = time.Second, time.Minute
	err := backoff.Retry(func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opt.URL, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Syncd-Signature", jobs.Sign(n.opt.Secret, body, n.opt.Clock.Now()))
		resp, err := n.opt.HTTPClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return fmt.Errorf("http %d", resp.StatusCode)
		}
		return backoff.Permanent(fmt.Errorf("http %d", resp.StatusCode))
	}, backoff.WithContext(bo, ctx))
	if err != nil {
		var pe *backoff.PermanentError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		n.opt.Logger.Error().Err(err).Int("users", len(batch)).Msg("re-auth webhook failed; the users remain in the re-auth queue")
	}
}
