package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// dirSink writes one file per item: root/<user>/<job>/<item>, each part
// made a safe file name by pathPart, atomically (temporary file, fsync,
// rename), so a reader never sees half an item. Every write goes through
// an os.Root, so nothing is written outside root, not even through a
// symbolic link planted under it.
type dirSink struct{ root string }

func (s *dirSink) Deliver(_ context.Context, user, job string, it provider.Item) error {
	dir, name := dirSinkPath(user, job, it)
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	defer root.Close()
	if err := root.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	tmp := filepath.Join(dir, ".tmp-"+rand.Text())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	_, werr := f.Write(it.Data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = root.Rename(tmp, filepath.Join(dir, name))
	}
	if werr != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("dir sink: %w", werr)
	}
	return nil
}

// dirSinkPath returns where the dir sink writes an item, relative to its
// root: the directory <user>/<job> and the file name, each a pathPart.
// An item without a name is named item-<updated, unix ms>.
func dirSinkPath(user, job string, it provider.Item) (dir, name string) {
	name = "item-" + strconv.FormatInt(it.UpdatedAt.UnixMilli(), 10)
	if it.Name != "" {
		name = pathPart(it.Name)
	}
	return filepath.Join(pathPart(user), pathPart(job)), name
}

// maxPathPart is the longest name pathPart returns, in bytes: under the
// 255 bytes file systems allow, with room for the temporary names.
const maxPathPart = 200

// pathPart makes s one file name, the same for the same s and different
// for different s: s escaped as a URL path segment (url.PathEscape: '/',
// '\\', '%', control bytes, spaces and non-ASCII become %XX), with '~' and
// a leading '.' escaped too (so no name is "." or "..", hidden, or taken
// for a temporary file). A result over maxPathPart bytes is cut to a
// readable prefix, '~' and 16 hex digits of the SHA-256 of s; the '~'
// tells it from a name that was not cut.
func pathPart(s string) string {
	if s == "" {
		return "%" // escapes never end in a lone '%': unlike any other part
	}
	e := strings.ReplaceAll(url.PathEscape(s), "~", "%7E")
	if e[0] == '.' {
		e = "%2E" + e[1:]
	}
	if len(e) <= maxPathPart {
		return e
	}
	sum := sha256.Sum256([]byte(s))
	keep := e[:maxPathPart-1-16]
	if i := strings.LastIndexByte(keep, '%'); i >= len(keep)-2 {
		keep = keep[:i] // do not cut an escape in two
	}
	return keep + "~" + hex.EncodeToString(sum[:8])
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
	h.Set("X-Syncd-User", headerValue(user))
	h.Set("X-Syncd-Job", headerValue(job))
	h.Set("X-Syncd-Item", headerValue(it.Name))
	if !it.UpdatedAt.IsZero() {
		h.Set("X-Syncd-Updated", it.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	if err := s.client.Post(ctx, s.url, h, it.Data); err != nil {
		return fmt.Errorf("webhook sink: %w", err)
	}
	return nil
}

// headerValue percent-encodes s for a header: '%' and every byte that is
// not visible ASCII (CR, LF, control bytes, spaces, non-ASCII) become
// %XX, so a provider's item name can neither break the request nor
// inject a header, and receivers decode it with any URL unescape
// (url.PathUnescape, decodeURIComponent). Plain names are sent as they
// are.
func headerValue(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)+16), s[:i]...)
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&0xf])
	}
	if b == nil {
		return s
	}
	return string(b)
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
