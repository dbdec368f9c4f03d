package digime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clip"
	"github.com/syncd/syncd/internal/provider"
)

const (
	// maxJSONBody bounds JSON responses (tokens, file lists, errors).
	maxJSONBody = 4 << 20
	// maxFileSize bounds a downloaded file, both as sent and after
	// decompression, so a hostile or broken answer cannot exhaust memory.
	maxFileSize = 1 << 30
	// maxMessage bounds a server message copied into an error.
	maxMessage = 200
)

var errTooLarge = errors.New("response body too large")

// call is one HTTP request to digi.me. It holds an access token: never
// log or print it.
type call struct {
	op     string // for errors and logs: "refresh", "trigger", "file list", ...
	method string
	url    string // absolute
	// sign adds a Bearer request JWT (fresh on every attempt) with claims
	// plus access_token when access is set.
	sign   bool
	access string
	claims map[string]any
	header http.Header
	body   []byte
	limit  int64 // response body limit, default maxJSONBody
	// log carries the caller's fields (user); nil means the client's.
	log *zerolog.Logger
}

// response is a complete HTTP response.
type response struct {
	status     int
	header     http.Header
	body       []byte
	retryAfter time.Duration // 0 when absent
	hasRetry   bool          // Retry-After was present and valid
}

func (r *response) ok() bool { return r.status >= 200 && r.status < 300 }

// do sends cl and returns the response, whatever its status, or the
// transport error of the last attempt. Idempotent requests (GET, HEAD) are
// retried as got 11 does for the Node SDK; POSTs are sent exactly once.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	retries := 0
	if cl.method == http.MethodGet || cl.method == http.MethodHead {
		retries = c.getRetries
	}
	log := &c.log
	if cl.log != nil {
		log = cl.log
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, cl)
		if ctx.Err() != nil {
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		}
		if attempt > retries {
			return resp, err
		}
		delay, retry := c.retryDelay(attempt, resp, err)
		if !retry {
			return resp, err
		}
		ev := log.Debug().Str(fieldOp, cl.op).Int(fieldAttempt, attempt).Dur(fieldDelay, delay)
		if resp != nil {
			ev = ev.Int(fieldStatus, resp.status)
		} else {
			ev = ev.Err(err)
		}
		ev.Msg("retrying request")
		if err := wait(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// once makes one attempt.
func (c *Client) once(ctx context.Context, cl call) (*response, error) {
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, cl.url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", stripURL(err))
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "syncd/"+c.agentVersion)
	if cl.sign {
		tok, err := c.requestJWT(cl.access, cl.claims)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, stripURL(err)
	}
	defer res.Body.Close()
	limit := cl.limit
	if limit <= 0 {
		limit = maxJSONBody
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", stripURL(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w (limit %d bytes)", errTooLarge, limit)
	}
	r := &response{status: res.StatusCode, header: res.Header, body: b}
	r.retryAfter, r.hasRetry = provider.ParseRetryAfter(res.Header.Get("Retry-After"), c.clock.Now())
	if s := res.Header.Get("x-digi-sdk-status"); s != "" {
		log := &c.log
		if cl.log != nil {
			log = cl.log
		}
		log.Debug().Str(fieldOp, cl.op).Str("sdk_status", s).
			Str("sdk_status_message", clip.String(res.Header.Get("x-digi-sdk-status-message"), maxMessage)).
			Msg("digi.me reported an sdk status")
	}
	return r, nil
}

// retryDelay decides whether attempt (1-based) is retried and after how
// long, as got 11: network errors and the retryable statuses, Retry-After
// over the exponential backoff, 413 only with a Retry-After. A Retry-After
// above RetryAfterCap ends the call so the caller can schedule it.
func (c *Client) retryDelay(attempt int, resp *response, err error) (time.Duration, bool) {
	backoff := c.retryBackoff << (attempt - 1)
	backoff += c.jitter(c.retryBackoff / 10)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return 0, false
		}
		return backoff, true
	}
	switch resp.status {
	case 408, 429, 500, 502, 503, 504, 521, 522, 524:
	case 413:
		if !resp.hasRetry {
			return 0, false
		}
	default:
		return 0, false
	}
	if resp.hasRetry {
		if resp.retryAfter > c.retryAfterCap {
			return 0, false
		}
		return resp.retryAfter, true
	}
	return backoff, true
}

// wait blocks for d or until ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// stripURL drops the URL net/http puts in its errors (it holds session
// keys); the op names the endpoint instead.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseErrorBody reads digi.me's two error shapes:
// {"error":{"code","message"}} and the storage API's
// {"error":"code","message"}. ok is false when the body is neither (empty,
// not JSON, no code).
func parseErrorBody(b []byte) (code, message string, ok bool) {
	var top struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if len(bytes.TrimSpace(b)) == 0 || json.Unmarshal(b, &top) != nil || len(top.Error) == 0 {
		return "", "", false
	}
	var nested struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(top.Error, &nested) == nil && nested.Code != "" {
		return nested.Code, nested.Message, true
	}
	var s string
	if json.Unmarshal(top.Error, &s) == nil && s != "" {
		return s, top.Message, true
	}
	return "", "", false
}

// jwtLike matches anything shaped like a compact JWS.
var jwtLike = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)

// scrub makes a server message safe to put in an error or a log: no JWT,
// none of the given secrets, bounded length, one line.
func scrub(msg string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
	}
	msg = jwtLike.ReplaceAllString(msg, "REDACTED")
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	return clip.String(msg, maxMessage)
}

// httpError turns a non-2xx data-call response into a *provider.Error.
func httpError(op string, r *response, secrets ...string) *provider.Error {
	code, msg, _ := parseErrorBody(r.body)
	e := &provider.Error{
		Op:         op,
		Status:     r.status,
		Code:       scrub(code, secrets...),
		RetryAfter: r.retryAfter,
		Permanent:  provider.Permanent4xx(r.status),
	}
	if msg != "" {
		e.Err = errors.New(scrub(msg, secrets...))
	}
	return e
}
