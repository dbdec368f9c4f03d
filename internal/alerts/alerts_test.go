package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/webhook"
)

// hookSecret and oldHookSecret are webhook secrets of the minimum length.
const (
	hookSecret    = "hook-secret-0123456789abcdefghij"
	oldHookSecret = "old-hook-secret-0123456789abcdef"
)

func TestBatchesSignsAndRetries(t *testing.T) {
	var mu sync.Mutex
	var got [][]alerts.Flag
	var ids []string // delivery ids of the verified requests
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		// Either secret verifies during a rotation; each batch is one
		// delivery, with one id on all its attempts.
		for _, secret := range []string{hookSecret, oldHookSecret} {
			if webhook.Verify([][]byte{[]byte(secret)}, r.Header, body, time.Now(), time.Minute) != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		ids = append(ids, r.Header.Get(webhook.DeliveryHeader))
		var doc struct {
			Event string
			Users []alerts.Flag
		}
		_ = json.Unmarshal(body, &doc)
		got = append(got, doc.Users)
	}))
	defer srv.Close()
	n := alerts.New(alerts.Options{URL: srv.URL, Secrets: [][]byte{[]byte(hookSecret), []byte(oldHookSecret)}, Batch: 3, Wait: time.Hour, Logger: zerolog.Nop()})
	for _, u := range []string{"a", "b", "c", "d"} {
		n.Notify(alerts.Flag{User: u, Provider: "digime", At: time.Now()})
	}
	if err := n.Close(context.Background()); err != nil { // flushes the partial batch
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 1 || got[1][0].User != "d" {
		t.Fatalf("batches %v, want [a b c] then [d]", got)
	}
	if calls != 3 {
		t.Fatalf("%d calls, want 3 (one retried 502)", calls)
	}
	if len(ids) != 2 || ids[0] == "" || ids[0] == ids[1] {
		t.Fatalf("delivery ids %q, want one per batch", ids)
	}
}

func TestCloseEndsWithCtx(t *testing.T) {
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release // never answers while the test runs
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets srv.Close return
	// logs is read only once Close has returned: the notifier writes no more.
	var logs bytes.Buffer
	n := alerts.New(alerts.Options{URL: srv.URL, Secrets: [][]byte{[]byte(hookSecret)}, Batch: 1, Wait: time.Hour, Logger: zerolog.New(&logs)})
	for _, u := range []string{"a", "b", "c"} {
		n.Notify(alerts.Flag{User: u, Provider: "digime", At: time.Now()})
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Close(ctx) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Close: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return when its ctx ended")
	}
	if got := logs.String(); !strings.Contains(got, `"dropped":3`) {
		t.Fatalf("log %q, want 3 flags dropped", got)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
