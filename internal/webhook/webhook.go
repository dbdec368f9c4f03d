package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/syncd/syncd/internal/clock"
)

// SignatureHeader carries Sign's value on every request Post sends.
const SignatureHeader = "X-Syncd-Signature"

// Sign returns the X-Syncd-Signature value for body at time t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>", so the
// receiver can check origin and freshness.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Client posts signed bodies to webhook receivers.
type Client struct {
	HTTP   *http.Client
	Secret []byte
	// Clock dates each attempt's signature.
	Clock clock.Clock
	// Initial and Max bound the exponential backoff between attempts
	// (the backoff library's defaults when 0).
	Initial, Max time.Duration
}

// Post sends body to url with header and a fresh signature on every
// attempt. A 2xx returns nil; 429, 5xx and network errors are retried
// until ctx ends; any other status returns at once. The error is
// "http <status>", the client's error, or ctx's.
func (c *Client) Post(ctx context.Context, url string, header http.Header, body []byte) error {
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
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set(SignatureHeader, Sign(c.Secret, body, c.Clock.Now()))
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
