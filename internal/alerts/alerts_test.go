package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/webhook"
)

func TestBatchesSignsAndRetries(t *testing.T) {
	var mu sync.Mutex
	var got [][]alerts.Flag
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
		sig := r.Header.Get("X-Syncd-Signature")
		ts, _ := strconv.ParseInt(strings.TrimPrefix(strings.Split(sig, ",")[0], "t="), 10, 64)
		if sig != webhook.Sign([]byte("s3cret"), body, time.Unix(ts, 0)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var doc struct {
			Event string
			Users []alerts.Flag
		}
		_ = json.Unmarshal(body, &doc)
		got = append(got, doc.Users)
	}))
	defer srv.Close()
	n := alerts.New(alerts.Options{URL: srv.URL, Secret: []byte("s3cret"), Batch: 3, Wait: time.Hour, Logger: zerolog.Nop()})
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
	n := alerts.New(alerts.Options{URL: srv.URL, Secret: []byte("s3cret"), Batch: 1, Wait: time.Hour, Logger: zerolog.New(&logs)})
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
