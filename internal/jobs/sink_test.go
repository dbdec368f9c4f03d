package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/webhook"
)

func TestDirSink(t *testing.T) {
	root := t.TempDir()
	s, err := jobs.NewSink(config.SinkConfig{Kind: "dir", Path: root}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	it := provider.Item{Name: "posts/2026.json", Data: []byte(`{"a":1}`)}
	if err := s.Deliver(context.Background(), "user/1", "pull", it); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "user%2F1", "pull", "posts%2F2026.json"))
	if err != nil || string(got) != `{"a":1}` {
		t.Fatalf("file: %q %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "user%2F1", "pull"))
	if len(entries) != 1 {
		t.Fatalf("leftover temporary files: %v", entries)
	}
}

// hookSecret and oldHookSecret are webhook secrets of the minimum length.
const (
	hookSecret    = "hook-secret-0123456789abcdefghij"
	oldHookSecret = "old-hook-secret-0123456789abcdef"
)

func TestWebhookSinkSignsAndRetries(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_780_000_000, 0))
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if webhook.Verify([][]byte{[]byte(hookSecret)}, r.Header, body, clk.Now(), 0) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Header.Get("X-Syncd-User") != "u1" || r.Header.Get("X-Syncd-Job") != "pull" || string(body) != "payload" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: hookSecret}, nil, srv.Client(), clk)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), "u1", "pull", provider.Item{Name: "x", Data: []byte("payload")}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want a retry after the 503", calls.Load())
	}
	// A 4xx is not retried.
	bad, _ := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: "wrong-secret-0123456789abcdefghi"}, nil, srv.Client(), clk)
	before := calls.Load()
	if err := bad.Deliver(context.Background(), "u1", "pull", provider.Item{Data: []byte("payload")}); err == nil || !strings.Contains(err.Error(), "http 401") {
		t.Fatalf("wrong secret: %v", err)
	}
	if calls.Load() != before+1 {
		t.Fatal("a 401 was retried")
	}
}

// TestWebhookSinkBindsDelivery: the signature binds the delivery to its
// user, job, item and delivery id, so a captured delivery replayed with
// X-Syncd-User: bob does not verify; during a rotation (previous_secret)
// a receiver holding either secret verifies.
func TestWebhookSinkBindsDelivery(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_780_000_000, 0))
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header, body}
	}))
	defer srv.Close()
	s, err := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: hookSecret, PreviousSecret: oldHookSecret}, nil, srv.Client(), clk)
	if err != nil {
		t.Fatal(err)
	}
	it := provider.Item{Name: "posts/1.json", Data: []byte{0, 1, 0xff}, UpdatedAt: time.Unix(1_779_000_000, 0)}
	if err := s.Deliver(context.Background(), "alice", "pull", it); err != nil {
		t.Fatal(err)
	}
	d := <-got
	if d.header.Get(webhook.DeliveryHeader) == "" || d.header.Get("X-Syncd-Item") != "posts/1.json" || string(d.body) != string(it.Data) {
		t.Fatalf("delivery %v %q", d.header, d.body)
	}
	for _, secret := range []string{hookSecret, oldHookSecret} {
		if err := webhook.Verify([][]byte{[]byte(secret)}, d.header, d.body, clk.Now(), time.Minute); err != nil {
			t.Errorf("genuine delivery, secret %.3s...: %v", secret, err)
		}
	}
	for _, name := range []string{"X-Syncd-User", "X-Syncd-Job", "X-Syncd-Item", "X-Syncd-Delivery", "X-Syncd-Updated"} {
		h := d.header.Clone()
		h.Set(name, "bob")
		if err := webhook.Verify([][]byte{[]byte(hookSecret)}, h, d.body, clk.Now(), time.Minute); err == nil {
			t.Errorf("replayed with %s: bob: verified", name)
		}
	}
}

// outside lists the files under parent that are not under root.
func outside(t *testing.T, parent, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, root+string(filepath.Separator)) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// checkUnderRoot fails unless every file and directory under root has a
// name a file system takes (at most 255 bytes, no separator).
func checkNames(t *testing.T, root string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		if n := d.Name(); len(n) > 255 || strings.ContainsAny(n, "/\\\x00") {
			t.Errorf("name %q", n)
		}
		return nil
	})
}

// TestDirSinkStaysUnderRoot: whatever the user id (one stored before the
// id grammar may be "..") or the provider's item name, the dir sink writes
// under its root, and no name is a poison item that fails every pull.
func TestDirSinkStaysUnderRoot(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s, err := jobs.NewSink(config.SinkConfig{Kind: "dir", Path: root}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 300)
	users := []string{"..", ".", "../..", "a/../../b", `..\..`, "Ünïcødé-名前", strings.Repeat("é", 100)}
	items := []string{"..", ".", "../../escape", "/etc/passwd", "a\r\nX-Evil: 1", "nul\x00byte", ".tmp-x", "~", long, long + "/../y", strings.Repeat("%", 200), ""}
	for _, u := range users {
		for _, name := range items {
			it := provider.Item{Name: name, Data: []byte(u + "|" + name), UpdatedAt: time.UnixMilli(1)}
			if err := s.Deliver(context.Background(), u, "pull", it); err != nil {
				t.Errorf("Deliver(user %q, item %q): %v", u, name, err)
			}
		}
	}
	if files := outside(t, parent, root); len(files) != 0 {
		t.Fatalf("files written outside the root: %q", files)
	}
	checkNames(t, root)
	// Distinct names stay distinct files: 2 long names sharing a prefix.
	n := 0
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if want := len(users) * len(items); n != want {
		t.Errorf("%d files, want %d (one per user and item)", n, want)
	}
}

// TestDirSinkLayout pins the names of the dir sink: each part escaped as a
// URL path segment, plus a leading '.' and '~' escaped, and a long name cut
// to a readable prefix, '~' and a hash of the whole.
func TestDirSinkLayout(t *testing.T) {
	root := t.TempDir()
	s, err := jobs.NewSink(config.SinkConfig{Kind: "dir", Path: root}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("y", 300)
	for _, tc := range []struct{ user, item, want string }{
		{"alice@example.com", "posts/2026.json", "alice@example.com/pull/posts%2F2026.json"},
		{"..", "..", "%2E./pull/%2E."},
		{"u1", ".hidden", "u1/pull/%2Ehidden"},
		{"u1", "a~b c", "u1/pull/a%7Eb%20c"},
		{"u1", "", "u1/pull/item-1000"},
		{"u1", long, "u1/pull/" + strings.Repeat("y", 183) + "~" + shortHash(long)},
	} {
		if err := s.Deliver(context.Background(), tc.user, "pull", provider.Item{Name: tc.item, Data: []byte("d"), UpdatedAt: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(tc.want))); err != nil {
			t.Errorf("user %q item %q: %v", tc.user, tc.item, err)
		}
	}
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// TestWebhookSinkEncodesHeaders: an item name no header may carry (CR,
// LF, control bytes, non-ASCII, hundreds of bytes) is sent
// percent-encoded, so it is delivered instead of failing every pull.
func TestWebhookSinkEncodesHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: "hook-secret"}, nil, srv.Client(), clock.NewFake(time.Unix(1_780_000_000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	name := "a\r\nX-Evil: 1\x00é 100%" + strings.Repeat("z", 300)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a refused header is retried until then
	defer cancel()
	if err := s.Deliver(ctx, "Ünïcødé", "pull", provider.Item{Name: name, Data: []byte("x")}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	h := <-got
	if h.Get("X-Evil") != "" {
		t.Fatal("the item name injected a header")
	}
	for key, want := range map[string]string{"X-Syncd-Item": name, "X-Syncd-User": "Ünïcødé", "X-Syncd-Job": "pull"} {
		v := h.Get(key)
		dec, err := url.PathUnescape(v)
		if err != nil || dec != want {
			t.Errorf("%s = %q, decodes to %q (%v), want %q", key, v, dec, err, want)
		}
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] >= 0x7f {
				t.Errorf("%s = %q: byte %#x not encoded", key, v, v[i])
			}
		}
	}
}
