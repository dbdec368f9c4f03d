package jobs_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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

func TestWebhookSinkSignsAndRetries(t *testing.T) {
	secret := "hook-secret"
	clk := clock.NewFake(time.Unix(1_780_000_000, 0))
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		sig := r.Header.Get("X-Syncd-Signature")
		ts := strings.TrimPrefix(strings.Split(sig, ",")[0], "t=")
		sec, _ := strconv.ParseInt(ts, 10, 64)
		if sig != webhook.Sign([]byte(secret), body, time.Unix(sec, 0)) || sec != clk.Now().Unix() {
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
	s, err := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: secret}, nil, srv.Client(), clk)
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
	bad, _ := jobs.NewSink(config.SinkConfig{Kind: "webhook", URL: srv.URL, Secret: "wrong"}, nil, srv.Client(), clk)
	before := calls.Load()
	if err := bad.Deliver(context.Background(), "u1", "pull", provider.Item{Data: []byte("payload")}); err == nil || !strings.Contains(err.Error(), "http 401") {
		t.Fatalf("wrong secret: %v", err)
	}
	if calls.Load() != before+1 {
		t.Fatal("a 401 was retried")
	}
}
