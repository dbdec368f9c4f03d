package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/syncd/syncd/internal/clock"
)

// The headers of a delivery. Every X-Syncd-* header but the signature
// is signed (see Sign); Content-Type is not.
const (
	SignatureHeader = "X-Syncd-Signature"
	// DeliveryHeader is a random 128-bit hex id, the same on every
	// attempt of one Post, so a receiver can drop repeats.
	DeliveryHeader = "X-Syncd-Delivery"
	UserHeader     = "X-Syncd-User"
	JobHeader      = "X-Syncd-Job"
	ItemHeader     = "X-Syncd-Item"
	UpdatedHeader  = "X-Syncd-Updated"
)

// signedHeaders are the headers Sign covers, in the order it covers them.
var signedHeaders = []string{DeliveryHeader, UserHeader, JobHeader, ItemHeader, UpdatedHeader}

// ErrUnsafeHeader is returned by Post, before sending, for a signed
// header whose value a receiver would not read back byte for byte
// (control characters, leading or trailing blanks, several values), so
// its signature could not verify.
var ErrUnsafeHeader = errors.New("webhook: header value not safe to sign")

// Sign returns the X-Syncd-Signature value for a delivery of body with
// header at time t: "t=<unix seconds>" then ",v2=<hex>" per secret, where
// <hex> is HMAC-SHA256(secret, "v2\n<t>\n<delivery>\n<user>\n<job>\n<item>\n<updated>\n<body>")
// over the values of the signed headers ("" when absent). Header values
// cannot hold a newline, so the fields cannot shift into each other.
// Several secrets give several v2 entries: a receiver holding any one
// verifies (rotation). Verify is the receiver's side.
func Sign(secrets [][]byte, header http.Header, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	msg := "v2\n" + ts
	for _, k := range signedHeaders {
		msg += "\n" + header.Get(k)
	}
	msg += "\n"
	var b strings.Builder
	b.WriteString("t=" + ts)
	for _, secret := range secrets {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(msg))
		m.Write(body)
		b.WriteString(",v2=" + hex.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}

// Verify checks a syncd webhook delivery: its X-Syncd-Signature must hold
// a v2 entry equal to HMAC-SHA256 under one of secrets over
// "v2\n<t>\n<X-Syncd-Delivery>\n<X-Syncd-User>\n<X-Syncd-Job>\n<X-Syncd-Item>\n<X-Syncd-Updated>\n"
// followed by the raw body (an absent header counts as ""), and its
// t must be within tolerance of now. Also drop a delivery id already seen.
// It is the README's Go snippet, so it uses only the standard library.
func Verify(secrets [][]byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, kv := range strings.Split(header.Get("X-Syncd-Signature"), ",") {
		switch k, v, _ := strings.Cut(kv, "="); k {
		case "t":
			ts = v
		case "v2":
			sigs = append(sigs, v)
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("webhook: no signature")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: timestamp outside the tolerance")
	}
	msg := "v2\n" + ts
	for _, k := range []string{"X-Syncd-Delivery", "X-Syncd-User", "X-Syncd-Job", "X-Syncd-Item", "X-Syncd-Updated"} {
		if len(header.Values(k)) > 1 {
			return errors.New("webhook: repeated " + k)
		}
		msg += "\n" + header.Get(k)
	}
	for _, secret := range secrets {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(msg + "\n"))
		m.Write(body)
		want := []byte(hex.EncodeToString(m.Sum(nil)))
		for _, sig := range sigs {
			if hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return errors.New("webhook: bad signature")
}

// Client posts signed bodies to webhook receivers.
type Client struct {
	HTTP *http.Client
	// Secrets sign every request, one v2 entry each: the current secret,
	// and during a rotation the previous one.
	Secrets [][]byte
	// Clock dates each attempt's signature.
	Clock clock.Clock
	// Initial and Max bound the exponential backoff between attempts
	// (the backoff library's defaults when 0).
	Initial, Max time.Duration
}

// Post sends body to url with header, a new delivery id (DeliveryHeader)
// and a fresh signature on every attempt. A 2xx returns nil; 429, 5xx
// and network errors are retried, with the same delivery id, until ctx
// ends; any other status returns at once. The error is "http <status>",
// ErrUnsafeHeader, the client's error, or ctx's.
func (c *Client) Post(ctx context.Context, url string, header http.Header, body []byte) error {
	for _, k := range signedHeaders {
		if !headerSafe(header.Values(k)) {
			return fmt.Errorf("%w: %s", ErrUnsafeHeader, k)
		}
	}
	header = header.Clone()
	if header == nil {
		header = http.Header{}
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	header.Set(DeliveryHeader, hex.EncodeToString(id[:]))
	bo := backoff.NewExponentialBackOff()
	if c.Initial > 0 {
		bo.InitialInterval = c.Initial
	}
	if c.Max > 0 {
		bo.MaxInterval = c.Max
	}
	bo.MaxElapsedTime = 0 // ctx bounds the attempts
	return backoff.Retry(func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(err)
		}
		req.Header = header.Clone()
		req.Header.Set(SignatureHeader, Sign(c.Secrets, header, body, c.Clock.Now()))
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return fmt.Errorf("http %d", resp.StatusCode)
		}
		return backoff.Permanent(fmt.Errorf("http %d", resp.StatusCode))
	}, backoff.WithContext(bo, ctx))
}

// headerSafe reports whether values is at most one value that a receiver
// reads back unchanged: no control characters (HTTP forbids CR, LF and
// NUL; tabs are allowed but easily mangled) and no leading or trailing
// blanks (receivers trim them).
func headerSafe(values []string) bool {
	if len(values) > 1 {
		return false
	}
	for _, v := range values {
		if strings.Trim(v, " ") != v || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return false
		}
	}
	return true
}
