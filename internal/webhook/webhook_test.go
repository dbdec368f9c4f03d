package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/webhook"
)

var (
	newSecret = []byte("new-secret-0123456789abcdef01234")
	oldSecret = []byte("old-secret-0123456789abcdef01234")
	at        = time.Unix(1_780_000_000, 0)
)

// delivery is a signed item delivery as the job sink sends it.
func delivery() http.Header {
	return http.Header{
		"Content-Type":     {"application/json"},
		"X-Syncd-Delivery": {"0123456789abcdef0123456789abcdef"},
		"X-Syncd-User":     {"alice"},
		"X-Syncd-Job":      {"pull"},
		"X-Syncd-Item":     {"posts/1.json"},
		"X-Syncd-Updated":  {"2026-01-02T03:04:05Z"},
	}
}

// TestSign: the expected values come from openssl, not from Sign:
// printf 'v2\n1780000000\n<delivery>\nalice\npull\nposts/1.json\n2026-01-02T03:04:05Z\npayload' | openssl dgst -sha256 -hmac <secret>
func TestSign(t *testing.T) {
	got := webhook.Sign([][]byte{newSecret, oldSecret}, delivery(), []byte("payload"), at)
	want := "t=1780000000,v2=6af13a9dfe5ed8e39dc0a557f7186cc3a75cfb288d643d536793361d651ab24d" +
		",v2=0b52807ea817d250b8d3dbf6f2b8e1c5eab471f5f57b130c925079ec540c48e1"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	body := []byte("payload")
	signed := func(secrets ...[]byte) http.Header {
		h := delivery()
		h.Set(webhook.SignatureHeader, webhook.Sign(secrets, h, body, at))
		return h
	}
	ok := func(t *testing.T, secrets [][]byte, h http.Header, body []byte, now time.Time) error {
		t.Helper()
		return webhook.Verify(secrets, h, body, now, 5*time.Minute)
	}

	t.Run("a genuine delivery verifies, with either secret during a rotation", func(t *testing.T) {
		h := signed(newSecret, oldSecret)
		for _, secrets := range [][][]byte{{newSecret}, {oldSecret}, {[]byte("unrelated-secret-0123456789abcdef"), oldSecret}} {
			if err := ok(t, secrets, h, body, at.Add(4*time.Minute)); err != nil {
				t.Errorf("secrets %q: %v", secrets, err)
			}
		}
	})

	t.Run("a delivery signed with a secret the receiver does not hold is refused", func(t *testing.T) {
		if err := ok(t, [][]byte{newSecret}, signed(oldSecret), body, at); err == nil {
			t.Fatal("verified")
		}
	})

	// The finding: a captured delivery replayed with another user (or job,
	// item, delivery id, update time) must not verify.
	for _, name := range []string{"X-Syncd-User", "X-Syncd-Job", "X-Syncd-Item", "X-Syncd-Delivery", "X-Syncd-Updated"} {
		t.Run("changing "+name+" breaks the signature", func(t *testing.T) {
			h := signed(newSecret)
			h.Set(name, "bob")
			if err := ok(t, [][]byte{newSecret}, h, body, at); err == nil {
				t.Fatal("verified")
			}
			h = signed(newSecret)
			h.Del(name)
			if err := ok(t, [][]byte{newSecret}, h, body, at); err == nil {
				t.Fatal("verified without the header")
			}
			h = signed(newSecret)
			h.Add(name, "bob") // a second value a receiver might read
			if err := ok(t, [][]byte{newSecret}, h, body, at); err == nil {
				t.Fatal("verified with a repeated header")
			}
		})
	}

	t.Run("fields cannot be shifted into each other", func(t *testing.T) {
		h := signed(newSecret)
		h.Set("X-Syncd-User", "alicepull")
		h.Set("X-Syncd-Job", "")
		if err := ok(t, [][]byte{newSecret}, h, body, at); err == nil {
			t.Fatal("verified")
		}
	})

	t.Run("a changed body breaks the signature", func(t *testing.T) {
		if err := ok(t, [][]byte{newSecret}, signed(newSecret), []byte("payloaf"), at); err == nil {
			t.Fatal("verified")
		}
	})

	t.Run("a timestamp outside the tolerance is refused", func(t *testing.T) {
		h := signed(newSecret)
		for _, now := range []time.Time{at.Add(6 * time.Minute), at.Add(-6 * time.Minute)} {
			if err := ok(t, [][]byte{newSecret}, h, body, now); err == nil {
				t.Errorf("verified at %v", now)
			}
		}
	})

	t.Run("no or a malformed signature is refused", func(t *testing.T) {
		for _, sig := range []string{"", "t=1780000000", "v2=6af13a9dfe5ed8e39dc0a557f7186cc3a75cfb288d643d536793361d651ab24d", "t=x,v2=00", "garbage"} {
			h := delivery()
			h.Set(webhook.SignatureHeader, sig)
			if err := ok(t, [][]byte{newSecret}, h, body, at); err == nil {
				t.Errorf("%q verified", sig)
			}
		}
	})
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
		b := bundle{calls: make(chan *http.Request, 100), clk: clock.NewFake(at)}
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
		return &webhook.Client{HTTP: srv.Client(), Secrets: [][]byte{newSecret, oldSecret}, Clock: b.clk, Initial: time.Millisecond, Max: time.Millisecond}, b
	}

	t.Run("retries a 503, signs every attempt with one delivery id, keeps the headers", func(t *testing.T) {
		c, b := setup(t, http.StatusServiceUnavailable, http.StatusNoContent)
		h := http.Header{"Content-Type": {"application/json"}, "X-Syncd-Job": {"pull"}}
		if err := c.Post(context.Background(), b.url, h, []byte("payload")); err != nil {
			t.Fatal(err)
		}
		if got := len(b.calls); got != 2 {
			t.Fatalf("%d calls, want 2", got)
		}
		var ids []string
		for range 2 {
			r := <-b.calls
			body, _ := io.ReadAll(r.Body)
			for _, secret := range [][]byte{newSecret, oldSecret} {
				if err := webhook.Verify([][]byte{secret}, r.Header, body, b.clk.Now(), time.Minute); err != nil {
					t.Errorf("verify with %q: %v", secret, err)
				}
			}
			if string(body) != "payload" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Syncd-Job") != "pull" {
				t.Errorf("request %v %q", r.Header, body)
			}
			ids = append(ids, r.Header.Get(webhook.DeliveryHeader))
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ids[0]) || ids[1] != ids[0] {
			t.Fatalf("delivery ids %q, want the same 128-bit hex id on both attempts", ids)
		}
		if h.Get(webhook.DeliveryHeader) != "" {
			t.Fatal("Post changed the caller's header")
		}
		if err := c.Post(context.Background(), b.url, h, []byte("payload")); err != nil {
			t.Fatal(err)
		}
		if r := <-b.calls; r.Header.Get(webhook.DeliveryHeader) == ids[0] {
			t.Fatal("a second delivery reused the delivery id")
		}
	})

	t.Run("a header a receiver would read differently is refused, not retried", func(t *testing.T) {
		c, b := setup(t, http.StatusNoContent)
		for _, v := range []string{" padded", "tab\tinside", "del\x7f"} {
			err := c.Post(context.Background(), b.url, http.Header{"X-Syncd-Item": {v}}, nil)
			if err == nil {
				t.Errorf("%q: sent", v)
			}
		}
		if got := len(b.calls); got != 0 {
			t.Fatalf("%d calls, want 0", got)
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
