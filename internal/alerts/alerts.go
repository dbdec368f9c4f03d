package alerts

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/webhook"
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
	URL string
	// Secrets sign each request (webhook.Sign): the current secret, and
	// during a rotation the previous one.
	Secrets [][]byte
	// Batch is the most flags per request (default 100); Wait is how
	// long a flag waits for company (default 2s).
	Batch      int
	Wait       time.Duration
	MaxQueue   int // default 10000
	HTTPClient *http.Client
	Clock      clock.Clock
	Logger     zerolog.Logger
	// Enrich, if set, is called on each batch before it is sent (off the
	// path that flags users): it adds the re-authorization links. It must
	// return when its ctx ends, or Close cannot.
	Enrich func(ctx context.Context, batch []Flag)
}

// Notifier batches flags and posts them.
type Notifier struct {
	opt    Options
	client *webhook.Client
	in     chan Flag
	done   chan struct{}
	once   sync.Once
	// ctx bounds every send; Close cancels it when its own ctx ends.
	ctx    context.Context
	cancel context.CancelFunc
	// dropped counts the flags not sent because Close gave up; only the
	// loop goroutine touches it.
	dropped int
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
	n := &Notifier{opt: opt, in: make(chan Flag, opt.MaxQueue), done: make(chan struct{}),
		client: &webhook.Client{HTTP: opt.HTTPClient, Secrets: opt.Secrets, Clock: opt.Clock, Initial: time.Second, Max: time.Minute}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
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

// Close sends what is queued and stops, waiting no longer than ctx: when
// ctx ends first, the send in flight is abandoned, the flags not sent are
// logged as dropped (their users stay in the re-auth queue) and Close
// returns ctx's error. Calls after the first return at once.
func (n *Notifier) Close(ctx context.Context) error {
	n.once.Do(func() { close(n.in) })
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
	}
	n.cancel()
	<-n.done
	return ctx.Err()
}

func (n *Notifier) loop() {
	defer close(n.done)
	defer n.cancel()
	var batch []Flag
	var timer <-chan time.Time
	for {
		select {
		case f, ok := <-n.in:
			if !ok {
				n.send(batch)
				if n.dropped > 0 {
					n.opt.Logger.Error().Int("dropped", n.dropped).Msg("re-auth webhook stopped before every flag was sent; the users remain in the re-auth queue")
				}
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
	if n.ctx.Err() != nil {
		n.dropped += len(batch)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Minute)
	defer cancel()
	if n.opt.Enrich != nil {
		n.opt.Enrich(ctx, batch)
	}
	body, _ := json.Marshal(map[string]any{"event": "reauth_required", "users": batch})
	err := n.client.Post(ctx, n.opt.URL, http.Header{"Content-Type": {"application/json"}}, body)
	switch {
	case err == nil:
	case n.ctx.Err() != nil:
		n.dropped += len(batch)
	default:
		n.opt.Logger.Error().Err(err).Int("users", len(batch)).Msg("re-auth webhook failed; the users remain in the re-auth queue")
	}
}
