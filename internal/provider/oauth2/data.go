package oauth2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Ops of the *provider.Error values Pull and Push return.
const (
	OpPull = "pull"
	OpPush = "push"
)

// Error codes of data-call failures that have no provider code.
const (
	// CodeTooLarge: the pull response exceeds MaxItemBytes (Permanent).
	CodeTooLarge = "too_large"
	// CodeBadItem: a push item cannot be sent as HTTP headers (Permanent).
	CodeBadItem = "bad_item"
)

const (
	// StatusCompleted is the PullResult.Status of every pull that ends.
	StatusCompleted = "completed"
	defaultMimeType = "application/octet-stream"
	maxErrorBody    = 64 << 10
	maxNameCursor   = 64
)

// response is one data call's answer.
type response struct {
	status     int
	header     http.Header
	body       []byte // the body of a 200 pull; nil otherwise
	code       string // provider error code of a failure, if any
	retryAfter time.Duration
	sent       time.Time // when the request was sent
}

// Pull fetches what is new for user since cursor: one GET of the rendered
// PullURL with the user's bearer token. 200 delivers one Item and, once
// deliver accepts it, returns the next cursor (see Config.CursorHeader);
// 204 means nothing new and keeps cursor. A 401 asks src for a refreshed
// token once and retries once. 408, 429, 5xx and network errors are
// retried (Config.GetRetries). Token trouble comes back from src as is;
// every other failure is a *provider.Error with Op OpPull. A deliver
// error is returned wrapped, with a zero PullResult.
//
// The Item is named "<cursor or 'initial'>-<first 16 hex digits of the
// SHA-256 of the data>": the same answer to the same request gets the
// same name, different data a different one. Its UpdatedAt is the
// response's Last-Modified, else the time the request was sent.
func (c *Client) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	if c.pullURL == nil {
		return provider.PullResult{}, &provider.Error{Op: OpPull, Permanent: true, Err: ErrNotConfigured}
	}
	u, err := render(c.pullURL, pullData{User: url.QueryEscape(user), Cursor: url.QueryEscape(cursor)})
	if err != nil {
		return provider.PullResult{}, &provider.Error{Op: OpPull, Permanent: true, Err: err}
	}
	log := c.log.With().Str(fieldUser, user).Logger()
	res, err := c.withToken(ctx, log, src, func(tok tokens.Token) (*response, error) {
		return c.get(ctx, log, u, tok)
	})
	if err != nil {
		return provider.PullResult{}, err
	}
	switch res.status {
	case http.StatusOK:
	case http.StatusNoContent:
		log.Debug().Int(fieldStatus, res.status).Int(fieldDelivered, 0).Msg("pull done")
		return provider.PullResult{Cursor: cursor, Status: StatusCompleted}, nil
	default:
		return provider.PullResult{}, statusError(OpPull, res)
	}

	item := provider.Item{
		Name:      itemName(cursor, res.body),
		Data:      res.body,
		MimeType:  res.header.Get("Content-Type"),
		UpdatedAt: res.sent.UTC(),
	}
	if lm, err := http.ParseTime(res.header.Get("Last-Modified")); err == nil {
		item.UpdatedAt = lm.UTC()
	}
	next := c.nextCursor(res)
	if err := deliver(item); err != nil {
		return provider.PullResult{}, fmt.Errorf("deliver %s: %w", item.Name, err)
	}
	log.Debug().Int(fieldStatus, res.status).Int(fieldDelivered, 1).Str(fieldItem, item.Name).
		Int(fieldBytes, len(item.Data)).Msg("pull done")
	return provider.PullResult{Cursor: next, Delivered: 1, Status: StatusCompleted}, nil
}

// Push writes item for user: one POST of item.Data to the rendered
// PushURL with Content-Type item.MimeType (default
// application/octet-stream) and the headers X-Syncd-Item-Id,
// X-Syncd-Tags and X-Syncd-Accounts (comma-joined; a tag or account with
// a comma or a control character makes the item poison). Any 2xx is
// success. A 401 asks src for a refreshed token once and retries once;
// nothing else is retried, since a POST may have landed. Token trouble
// comes back from src as is; every other failure is a *provider.Error
// with Op OpPush, Permanent for a poison item or a 4xx other than
// 401/408/429.
func (c *Client) Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error {
	if c.pushURL == nil {
		return &provider.Error{Op: OpPush, Permanent: true, Err: ErrNotConfigured}
	}
	u, err := render(c.pushURL, pushData{User: url.QueryEscape(user)})
	if err != nil {
		return &provider.Error{Op: OpPush, Permanent: true, Err: err}
	}
	hdr, err := pushHeaders(item)
	if err != nil {
		return &provider.Error{Op: OpPush, Code: CodeBadItem, Permanent: true, Err: err}
	}
	log := c.log.With().Str(fieldUser, user).Logger()
	res, err := c.withToken(ctx, log, src, func(tok tokens.Token) (*response, error) {
		r, err := c.send(ctx, http.MethodPost, u, tok, item.Data, hdr, false)
		if err != nil {
			return nil, &provider.Error{Op: OpPush, Err: err}
		}
		return r, nil
	})
	if err != nil {
		return err
	}
	if res.status < 200 || res.status > 299 {
		return statusError(OpPush, res)
	}
	log.Debug().Int(fieldStatus, res.status).Str(fieldItem, item.ID).Int(fieldBytes, len(item.Data)).Msg("push done")
	return nil
}

// withToken makes call with the user's token and, if it is answered 401,
// once more with the token src.Rejected returns. Errors from src are
// returned as they are; a second 401 is returned as a response.
func (c *Client) withToken(ctx context.Context, log zerolog.Logger, src provider.TokenSource, call func(tokens.Token) (*response, error)) (*response, error) {
	tok, err := src.Token(ctx)
	if err != nil {
		return nil, err
	}
	res, err := call(tok)
	if err != nil || res.status != http.StatusUnauthorized {
		return res, err
	}
	log.Debug().Msg("access token rejected, refreshing")
	if tok, err = src.Rejected(ctx, tok); err != nil {
		return nil, err
	}
	return call(tok)
}

// get is the pull GET with retries. Failures are *provider.Error.
func (c *Client) get(ctx context.Context, log zerolog.Logger, u string, tok tokens.Token) (*response, error) {
	hint := &hintedBackOff{BackOff: backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.retryInitial),
		backoff.WithMaxInterval(retryMax),
		backoff.WithMaxElapsedTime(0),
	), uint64(c.retries))}
	var res *response
	op := func() error {
		r, err := c.send(ctx, http.MethodGet, u, tok, nil, nil, true)
		switch {
		case err != nil && ctx.Err() != nil:
			return backoff.Permanent(&provider.Error{Op: OpPull, Err: ctx.Err()})
		case err != nil:
			var pe *provider.Error
			if errors.As(err, &pe) {
				return backoff.Permanent(err)
			}
			return &provider.Error{Op: OpPull, Err: err}
		case retryable(r.status):
			perr := statusError(OpPull, r)
			if r.retryAfter > MaxRetryAfter {
				return backoff.Permanent(perr)
			}
			hint.next = r.retryAfter
			return perr
		}
		res = r
		return nil
	}
	notify := func(err error, wait time.Duration) {
		log.Warn().Err(err).Dur(fieldWait, wait).Msg("pull request failed, retrying")
	}
	var timer backoff.Timer
	if c.newTimer != nil {
		timer = c.newTimer()
	}
	if err := backoff.RetryNotifyWithTimer(op, backoff.WithContext(hint, ctx), notify, timer); err != nil {
		if _, ok := errors.AsType[*provider.Error](err); !ok {
			err = &provider.Error{Op: OpPull, Err: err} // the context ended during a wait
		}
		return nil, err
	}
	return res, nil
}

// hintedBackOff waits at least the server's Retry-After before the next
// attempt.
type hintedBackOff struct {
	backoff.BackOff
	next time.Duration
}

func (b *hintedBackOff) NextBackOff() time.Duration {
	d := b.BackOff.NextBackOff()
	if d != backoff.Stop && b.next > d {
		d = b.next
	}
	b.next = 0
	return d
}

func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// send makes one data call. With readBody, a 200's body is read (up to
// MaxItemBytes); otherwise the body is only searched for an error code.
// Errors never quote the URL.
func (c *Client) send(ctx context.Context, method, u string, tok tokens.Token, body []byte, hdr http.Header, readBody bool) (*response, error) {
	var rd io.Reader
	if method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, errors.New("cannot build request")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	sent := c.clock.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	r := &response{status: resp.StatusCode, header: resp.Header, sent: sent}
	r.retryAfter, _ = provider.ParseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now())
	if readBody && resp.StatusCode == http.StatusOK {
		data, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.maxItem)+1))
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if len(data) > c.maxItem {
			return nil, &provider.Error{Op: OpPull, Status: resp.StatusCode, Code: CodeTooLarge, Permanent: true,
				Err: fmt.Errorf("response exceeds %d bytes", c.maxItem)}
		}
		r.body = data
		return r, nil
	}
	r.code = responseCode(resp)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return r, nil
}

// responseCode finds the provider's error code: the error parameter of a
// Bearer challenge (RFC 6750 §3), else a JSON body's "error" or "code".
func responseCode(resp *http.Response) string {
	if resp.StatusCode < 400 {
		return ""
	}
	if code := challengeError(resp.Header.Get("WWW-Authenticate")); code != "" {
		return code
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return ""
	}
	var body struct {
		Error any `json:"error"`
		Code  any `json:"code"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&body); err != nil {
		return ""
	}
	for _, v := range []any{body.Error, body.Code} {
		if s, ok := v.(string); ok && errorCode(s) != "" {
			return s
		}
	}
	return ""
}

// challengeError returns the error="..." parameter of a WWW-Authenticate
// value, sanitized.
func challengeError(v string) string {
	i := strings.Index(v, "error=")
	for i > 0 && v[i-1] != ' ' && v[i-1] != ',' {
		next := strings.Index(v[i+1:], "error=")
		if next < 0 {
			return ""
		}
		i += 1 + next
	}
	if i < 0 {
		return ""
	}
	rest := v[i+len("error="):]
	if strings.HasPrefix(rest, `"`) {
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return ""
		}
		return errorCode(rest[1 : 1+end])
	}
	if end := strings.IndexAny(rest, ", "); end >= 0 {
		rest = rest[:end]
	}
	return errorCode(rest)
}

// statusError turns an unsuccessful answer into a *provider.Error.
func statusError(op string, r *response) *provider.Error {
	return &provider.Error{
		Op:         op,
		Status:     r.status,
		Code:       r.code,
		RetryAfter: r.retryAfter,
		Permanent:  provider.Permanent4xx(r.status),
	}
}

// nextCursor is the cursor after a 200: the cursor header, else
// Last-Modified, else the time the request was sent.
func (c *Client) nextCursor(r *response) string {
	if v := strings.TrimSpace(r.header.Get(c.cursorHeader)); v != "" {
		return v
	}
	if lm, err := http.ParseTime(r.header.Get("Last-Modified")); err == nil {
		return lm.UTC().Format(time.RFC3339)
	}
	return r.sent.UTC().Format(time.RFC3339)
}

// itemName names a pulled item by the request's cursor and the data.
func itemName(cursor string, data []byte) string {
	sum := sha256.Sum256(data)
	prefix := "initial"
	if cursor != "" {
		b := []byte(cursor)
		if len(b) > maxNameCursor {
			b = b[:maxNameCursor]
		}
		for i, ch := range b {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
				b[i] = '_'
			}
		}
		prefix = string(b)
	}
	return prefix + "-" + hex.EncodeToString(sum[:8])
}

// pushHeaders builds the item's headers, rejecting values HTTP cannot
// carry or that the comma-joined lists would garble.
func pushHeaders(item provider.PushItem) (http.Header, error) {
	h := make(http.Header)
	mt := item.MimeType
	if mt == "" {
		mt = defaultMimeType
	}
	if _, _, err := mime.ParseMediaType(mt); err != nil || !headerSafe(mt) {
		return nil, errors.New("mime type is not a valid media type")
	}
	h.Set("Content-Type", mt)
	if item.ID != "" {
		if !headerSafe(item.ID) {
			return nil, errors.New("item id contains a control character")
		}
		h.Set(HeaderItemID, item.ID)
	}
	for _, l := range []struct {
		name, header string
		values       []string
	}{{"tag", HeaderTags, item.Tags}, {"account", HeaderAccounts, item.Accounts}} {
		for i, v := range l.values {
			if v == "" || strings.Contains(v, ",") || !headerSafe(v) {
				return nil, fmt.Errorf("%s %d: must be non-empty, without commas or control characters", l.name, i)
			}
		}
		if len(l.values) > 0 {
			h.Set(l.header, strings.Join(l.values, ","))
		}
	}
	return h, nil
}

func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
