package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/webhook"
)

func TestSign(t *testing.T) {
	got := webhook.Sign([]byte("hook-secret"), []byte("payload"), time.Unix(1_780_000_000, 0))
	want := "t=1780000000,v1=d038dc6156b0d726cd21c9bc4722f3860bf4a7ca2f354971b496e9b6bf52b8cc"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestPost(t *testing.T) {
	type bundle struct {
		calls chan *http.Request // each request, with its body read
		clk   *clock.Fake
		url   string
	}
	// setup serves statuses in turn (the last one from then on).
	setup := func(t *testing.T, statuses ...int) (*webhook.Client, bundle) {
		t.Helper()
		b := bundle{calls: make(chan *http.Request, 100), clk: clock.NewFake(time.Unix(1_780_000_000, 0))}
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			i := int(n.Add(1)) - 1
			b.calls <- r
			w.WriteHeader(statuses[min(i, len(statuses)-1)])
		}))
		t.Cleanup(srv.Close)
		b.url = srv.URL
		return &webhook.Client{HTTP: srv.Client(), Secret: []byte("hook-secret"), Clock: b.clk, Initial: time.Millisecond, Max: time.Millisecond}, b
	}

	t.Run("retries a 503, signs every attempt, keeps the headers", func(t *testing.T) {
		c, b := setup(t, http.StatusServiceUnavailable, http.StatusNoContent)
		h := http.Header{"Content-Type": {"application/json"}, "X-Syncd-Job": {"pull"}}
		if err := c.Post(context.Background(), b.url, h, []byte("payload")); err != nil {
			t.Fatal(err)
		}
		if got := len(b.calls); got != 2 {
			t.Fatalf("%d calls, want 2", got)
		}
		for range 2 {
			r := <-b.calls
			body, _ := io.ReadAll(r.Body)
			if got, want := r.Header.Get(webhook.SignatureHeader), webhook.Sign([]byte("hook-secret"), body, b.clk.Now()); got != want {
				t.Errorf("signature %q, want %q", got, want)
			}
			if string(body) != "payload" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Syncd-Job") != "pull" {
				t.Errorf("request %v %q", r.Header, body)
			}
		}
	})

	t.Run("a 4xx is not retried", func(t *testing.T) {
		c, b := setup(t, http.StatusUnauthorized)
		err := c.Post(context.Background(), b.url, nil, []byte("payload"))
		if err == nil || err.Error() != "http 401" {
			t.Fatalf("got %v, want http 401", err)
		}
		if got := len(b.calls); got != 1 {
			t.Fatalf("%d calls, want 1", got)
		}
	})

	t.Run("429 is retried", func(t *testing.T) {
		c, b := setup(t, http.StatusTooManyRequests, http.StatusOK)
		if err := c.Post(context.Background(), b.url, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := len(b.calls); got != 2 {
			t.Fatalf("%d calls, want 2", got)
		}
	})

	t.Run("retries end with ctx", func(t *testing.T) {
		c, b := setup(t, http.StatusBadGateway)
		c.Initial, c.Max = time.Hour, time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- c.Post(ctx, b.url, nil, nil) }()
		select {
		case <-b.calls:
		case <-time.After(10 * time.Second):
			t.Fatal("no request")
		}
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Post did not return when ctx ended")
		}
	})
}
