package digime

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/syncd/syncd/internal/clip"
	"github.com/syncd/syncd/internal/provider"
)

// File-list states (status.state).
const (
	statePending   = "pending"
	stateRunning   = "running"
	statePartial   = "partial"
	stateCompleted = "completed"
)

// errMaxDuration is the cancel cause when a pull exceeds MaxDuration.
var errMaxDuration = errors.New("pull exceeded its maximum duration")

// Pull triggers a sync for the user (POST permission-access/trigger with
// sourceFetch), polls the file list (GET permission-access/query/{key})
// every PollInterval while it is pending or running, and once it is
// completed or partial downloads, decrypts and delivers every listed file
// after cursor, in (updatedDate, name) order, one at a time. Files are
// fetched only after the sync has finished so a high-water cursor cannot
// skip a file that shows up late with an older date.
//
// The cursor is "<updatedDate in ms>:<file name>" of the last delivered
// file ("" means from the start); a file is after the cursor when its
// (updatedDate, name) is greater. The returned Cursor covers exactly the
// items deliver accepted: at the first deliver error Pull stops and
// returns that error as is, with the result so far. A malformed cursor is
// a permanent *provider.Error.
//
// For a partial sync, AccountErrors lists the accounts digi.me reported
// (a 511 ServiceAuthorizationError with Reauth means the user must
// reconnect that source; it is not a token problem), and the files listed
// are still delivered. More than MaxPolls polls or MaxDuration is a
// transient *provider.Error (Op "pull"). A 401 is handled as in the SDKs:
// one Rejected call and one retry per request.
func (c *Client) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	res := provider.PullResult{Cursor: cursor}
	after, err := parseCursor(cursor)
	if err != nil {
		return res, &provider.Error{Op: "pull", Permanent: true, Err: err}
	}
	start := c.clock.Now()
	deadline := start.Add(c.maxDuration)
	ctx, cancel := context.WithTimeoutCause(ctx, c.maxDuration, errMaxDuration)
	defer cancel()
	s := c.session(user, src)

	key, err := s.trigger(ctx)
	if err != nil {
		return res, c.pullErr(ctx, err)
	}
	list, polls, err := s.poll(ctx, key, deadline)
	if err != nil {
		return res, c.pullErr(ctx, err)
	}
	res.Status = list.Status.State
	res.AccountErrors = accountErrors(list.Status.Details, list.Status.State)
	for _, ae := range res.AccountErrors {
		s.log.Info().Str("account", ae.Account).Str(fieldCode, ae.Code).Int(fieldStatus, ae.Status).
			Bool("reauth", ae.Reauth).Msg("source account reported an error")
	}
	files, err := filesAfter(list.FileList, after)
	if err != nil {
		return res, err
	}
	for _, f := range files {
		item, err := s.download(ctx, key, f)
		if err != nil {
			return res, c.pullErr(ctx, err)
		}
		if err := deliver(item); err != nil {
			s.log.Debug().Str(fieldFile, f.Name).Err(err).Msg("deliver refused an item; pull stopped")
			return res, err
		}
		res.Delivered++
		res.Cursor = formatCursor(f.updated, f.Name)
	}
	s.log.Debug().Str(fieldState, res.Status).Int(fieldPolls, polls).Int(fieldDelivered, res.Delivered).
		Dur("took", c.clock.Now().Sub(start)).Msg("pull finished")
	return res, nil
}

// pullErr turns the cancellation caused by MaxDuration into the pull's
// give-up error.
func (c *Client) pullErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errMaxDuration) {
		return &provider.Error{Op: "pull", Err: fmt.Errorf("gave up after %v: %w", c.maxDuration, errMaxDuration)}
	}
	return err
}

// trigger starts a sync and returns its session key.
func (s *session) trigger(ctx context.Context) (string, error) {
	body, err := json.Marshal(map[string]any{"agent": s.c.agent(), "sourceFetch": true})
	if err != nil {
		return "", &provider.Error{Op: "trigger", Err: err}
	}
	resp, err := s.call(ctx, call{
		op: "trigger", method: http.MethodPost, url: s.c.endpoint("permission-access/trigger"),
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		body:   body,
	})
	if err != nil {
		return "", err
	}
	var out struct {
		Session struct {
			Key string `json:"key"`
		} `json:"session"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil || out.Session.Key == "" {
		return "", &provider.Error{Op: "trigger", Status: resp.status, Code: codeBadResponse,
			Err: errors.New("answer has no session key")}
	}
	return out.Session.Key, nil
}

// fileList is GET permission-access/query/{key}.
type fileList struct {
	Status struct {
		State   string                     `json:"state"`
		Details map[string]json.RawMessage `json:"details"`
	} `json:"status"`
	FileList []fileEntry `json:"fileList"`
}

type fileEntry struct {
	Name        string      `json:"name"`
	UpdatedDate json.Number `json:"updatedDate"`
	updated     int64       // ms, from UpdatedDate
}

// parseFileList reads a file-list answer; its state must be one of the
// four known.
func parseFileList(body []byte) (*fileList, error) {
	var list fileList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, errors.New("answer is not a file list")
	}
	switch st := list.Status.State; st {
	case stateCompleted, statePartial, statePending, stateRunning:
		return &list, nil
	default:
		return nil, fmt.Errorf("unknown state %q", clip.String(st, 32))
	}
}

// poll reads the file list until it is completed or partial.
func (s *session) poll(ctx context.Context, key string, deadline time.Time) (*fileList, int, error) {
	for n := 1; ; n++ {
		resp, err := s.call(ctx, call{
			op: "file list", method: http.MethodGet,
			url:    s.c.endpoint("permission-access/query/" + url.PathEscape(key)),
			header: http.Header{"Accept": {"application/json"}},
		})
		if err != nil {
			return nil, n, err
		}
		list, err := parseFileList(resp.body)
		if err != nil {
			return nil, n, &provider.Error{Op: "file list", Status: resp.status, Code: codeBadResponse, Err: err}
		}
		if st := list.Status.State; st == stateCompleted || st == statePartial {
			return list, n, nil
		}
		if n >= s.c.maxPolls {
			return nil, n, &provider.Error{Op: "pull", Err: fmt.Errorf("gave up after %d polls (state %s)", n, list.Status.State)}
		}
		if !s.c.clock.Now().Before(deadline) {
			return nil, n, &provider.Error{Op: "pull", Err: fmt.Errorf("gave up after %v and %d polls (state %s): %w",
				s.c.maxDuration, n, list.Status.State, errMaxDuration)}
		}
		if err := wait(ctx, s.c.pollInterval); err != nil {
			return nil, n, err
		}
	}
}

// download fetches, decrypts and decodes one file.
func (s *session) download(ctx context.Context, key string, f fileEntry) (provider.Item, error) {
	resp, err := s.call(ctx, call{
		op: "file", method: http.MethodGet,
		url:    s.c.endpoint("permission-access/query/" + url.PathEscape(key) + "/" + url.PathEscape(f.Name)),
		header: http.Header{"Accept": {"application/octet-stream"}},
		limit:  maxFileSize,
	})
	if err != nil {
		return provider.Item{}, err
	}
	fail := func(code string, err error) (provider.Item, error) {
		return provider.Item{}, &provider.Error{Op: "file", Status: resp.status, Code: code,
			Err: fmt.Errorf("%q: %w", f.Name, err)}
	}
	meta, err := parseXMetadata(resp.header.Get("x-metadata"))
	if err != nil {
		return fail("metadata", err)
	}
	plain, err := decrypt(s.c.key, resp.body)
	if err != nil {
		return fail("decrypt", err)
	}
	data, err := decompress(meta.Compression, plain, maxFileSize)
	if err != nil {
		return fail("decompress", err)
	}
	return provider.Item{
		Name:      f.Name,
		Data:      data,
		MimeType:  meta.mimeType(),
		Metadata:  meta.Metadata,
		UpdatedAt: time.UnixMilli(f.updated).UTC(),
	}, nil
}

// cursorPos is a position in (updatedDate, name) order.
type cursorPos struct {
	set     bool
	updated int64
	name    string
}

// parseCursor reads "<updatedDate ms>:<name>"; "" is the start. The name
// may itself contain ':'.
func parseCursor(s string) (cursorPos, error) {
	if s == "" {
		return cursorPos{}, nil
	}
	ms, name, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || n < 0 {
		return cursorPos{}, fmt.Errorf("malformed cursor %q: want <updatedDateMs>:<name>", clip.String(s, 100))
	}
	return cursorPos{set: true, updated: n, name: name}, nil
}

func formatCursor(updated int64, name string) string {
	return strconv.FormatInt(updated, 10) + ":" + name
}

// filesAfter returns the files after the cursor in (updatedDate, name)
// order. Nameless entries are skipped; an entry whose updatedDate is not a
// number is an error (it cannot be placed).
func filesAfter(list []fileEntry, after cursorPos) ([]fileEntry, error) {
	out := make([]fileEntry, 0, len(list))
	for _, f := range list {
		if f.Name == "" {
			continue
		}
		ms, err := millis(f.UpdatedDate)
		if err != nil {
			return nil, &provider.Error{Op: "file list", Code: codeBadResponse,
				Err: fmt.Errorf("file %q: updatedDate: %w", f.Name, err)}
		}
		f.updated = ms
		if after.set && (ms < after.updated || (ms == after.updated && f.Name <= after.name)) {
			continue
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b fileEntry) int {
		if c := cmp.Compare(a.updated, b.updated); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return slices.CompactFunc(out, func(a, b fileEntry) bool { return a.updated == b.updated && a.Name == b.Name }), nil
}

// millis reads a millisecond timestamp; absent is 0.
func millis(n json.Number) (int64, error) {
	if n == "" {
		return 0, nil
	}
	if v, err := n.Int64(); err == nil && v >= 0 {
		return v, nil
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > math.MaxInt64/2 || math.IsNaN(f) {
		return 0, errors.New("not a millisecond timestamp")
	}
	return int64(f), nil
}

// accountDetail is one entry of status.details.
type accountDetail struct {
	State string        `json:"state"`
	Error *accountError `json:"error"`
}

// accountError is details[account].error. reauth (and the other fields)
// are read at error.X and, as the digi.me docs show it, error.error.X.
type accountError struct {
	Code       string        `json:"code"`
	StatusCode json.Number   `json:"statusCode"`
	Message    string        `json:"message"`
	Reauth     bool          `json:"reauth"`
	RetryAfter json.Number   `json:"retryAfter"`
	Error      *accountError `json:"error"`
}

// accountErrors lists the accounts of status.details with an error (or in
// state partial without one, as code "partial"), sorted by account.
func accountErrors(details map[string]json.RawMessage, state string) []provider.AccountError {
	var out []provider.AccountError
	for acct, raw := range details {
		var d accountDetail
		if json.Unmarshal(raw, &d) != nil {
			if state == statePartial {
				out = append(out, provider.AccountError{Account: acct, Code: "unknown"})
			}
			continue
		}
		if d.Error == nil {
			if d.State == statePartial {
				out = append(out, provider.AccountError{Account: acct, Code: statePartial})
			}
			continue
		}
		e, inner := d.Error, d.Error.Error
		if inner == nil {
			inner = &accountError{}
		}
		ae := provider.AccountError{
			Account: acct,
			Code:    firstNonEmpty(e.Code, inner.Code),
			Message: clip.String(firstNonEmpty(e.Message, inner.Message), maxMessage),
			Reauth:  e.Reauth || inner.Reauth,
		}
		if ae.Code == "" {
			ae.Code = "unknown"
		}
		if st, err := strconv.Atoi(string(firstNonEmpty(e.StatusCode, inner.StatusCode))); err == nil {
			ae.Status = st
		}
		ae.RetryAfter = retryAfterTime(firstNonEmpty(e.RetryAfter, inner.RetryAfter))
		out = append(out, ae)
	}
	slices.SortFunc(out, func(a, b provider.AccountError) int { return strings.Compare(a.Account, b.Account) })
	return out
}

// retryAfterTime reads details' retryAfter: milliseconds since the epoch
// (as iOS decodes it), seconds when at most 1e11. Zero when absent or
// unreadable.
func retryAfterTime(n json.Number) time.Time {
	f, err := n.Float64()
	if err != nil || f <= 0 || math.IsInf(f, 0) {
		return time.Time{}
	}
	if f > 1e11 {
		return time.UnixMilli(int64(f)).UTC()
	}
	if f > 253402300799 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0).UTC()
}

func firstNonEmpty[T ~string](a, b T) T {
	if a != "" {
		return a
	}
	return b
}
