package alerts_test

import (
	"encoding/json"
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
	"github.com/syncd/syncd/internal/jobs"
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
		if sig != jobs.Sign([]byte("s3cret"), body, time.Unix(ts, 0)) {
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
	n.Close() // flushes the partial batch
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 1 || got[1][0].User != "d" {
		t.Fatalf("batches %v, want [a b c] then [d]", got)
	}
	if calls != 3 {
		t.Fatalf("%d calls, want 3 (one retried 502)", calls)
	}
}
