package jobs

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/webhook"
)

// Sink receives pulled items. Deliver returns nil only once the item is
// safely accepted: the pull's cursor moves past it only then.
type Sink interface {
	Deliver(ctx context.Context, user, job string, it provider.Item) error
}

// NewSink builds the sink a job's config describes.
func NewSink(cfg config.SinkConfig, store Store, hc *http.Client, clk clock.Clock) (Sink, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	switch cfg.Kind {
	case "dir":
		return &dirSink{root: cfg.Path}, nil
	case "webhook":
		if hc == nil {
			hc = &http.Client{Timeout: 30 * time.Second}
		}
		return &webhookSink{url: cfg.URL, client: &webhook.Client{HTTP: hc, Secrets: cfg.Secrets(), Clock: clk,
			Initial: 500 * time.Millisecond, Max: 30 * time.Second}}, nil
	case "redis", "":
		stream, maxLen := cfg.Stream, cfg.MaxLen
		if stream == "" {
			stream, maxLen = "pulled", 100000
		}
		return &redisSink{store: store, stream: stream, maxLen: maxLen, clock: clk}, nil
	}
	return nil, fmt.Errorf("sink: unknown kind %q", cfg.Kind)
}

// dirSink writes one file per item: root/<user>/<job>/<item>, atomically
// (temporary file, fsync, rename), so a reader never sees half an item.
type dirSink struct{ root string }

func (s *dirSink) Deliver(_ context.Context, user, job string, it provider.Item) error {
	dir := filepath.Join(s.root, url.PathEscape(user), url.PathEscape(job))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	name := url.PathEscape(it.Name)
	if name == "" || name == "." || name == ".." {
		name = "item-" + strconv.FormatInt(it.UpdatedAt.UnixMilli(), 10)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(it.Data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(dir, name))
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("dir sink: %w", werr)
	}
	return nil
}

// webhookSink POSTs each item, signed (webhook.Sign) over the body and
// the user, job, item and update time headers. 5xx, 429 and network
// errors are retried with backoff until the job's timeout.
type webhookSink struct {
	url    string
	client *webhook.Client
}

func (s *webhookSink) Deliver(ctx context.Context, user, job string, it provider.Item) error {
	ct := it.MimeType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := http.Header{}
	h.Set("Content-Type", ct)
	h.Set("X-Syncd-User", user)
	h.Set("X-Syncd-Job", job)
	h.Set("X-Syncd-Item", it.Name)
	if !it.UpdatedAt.IsZero() {
		h.Set("X-Syncd-Updated", it.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	if err := s.client.Post(ctx, s.url, h, it.Data); err != nil {
		return fmt.Errorf("webhook sink: %w", err)
	}
	return nil
}

// redisSink appends each item to a capped stream: fields user, job, name,
// mime_type, updated (RFC 3339), metadata (JSON), data.
type redisSink struct {
	store  Store
	stream string
	maxLen int64
	clock  clock.Clock
}

func (s *redisSink) Deliver(ctx context.Context, user, job string, it provider.Item) error {
	v := map[string]any{"user": user, "job": job, "name": it.Name, "mime_type": it.MimeType, "data": it.Data}
	if !it.UpdatedAt.IsZero() {
		v["updated"] = it.UpdatedAt.UTC().Format(time.RFC3339Nano)
	}
	if len(it.Metadata) > 0 {
		v["metadata"] = string(it.Metadata)
	}
	return s.store.SinkAdd(ctx, s.stream, s.maxLen, v)
}
