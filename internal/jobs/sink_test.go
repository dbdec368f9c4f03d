package jobs_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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
