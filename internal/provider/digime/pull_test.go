package digime

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// threeFiles: a, b and c; b and c share an updatedDate.
func threeFiles() []apiFile {
	return []apiFile{
		{name: "c.json", updated: 2000, data: []byte(`{"c":3}`), compression: "brotli", metadata: map[string]any{"mimetype": "application/json"}},
		{name: "a.json", updated: 1000, data: []byte(`{"a":1}`), compression: "gzip", metadata: map[string]any{"mimeType": "application/fhir+json", "objectType": "Patient"}},
		{name: "b.json", updated: 2000, data: []byte(`{"b":2}`), metadata: map[string]any{"objectCount": 1}},
	}
}

type collector struct {
	items []provider.Item
	// failAt makes deliver refuse the item with this index (0-based).
	failAt int
	err    error
}

func newCollector() *collector { return &collector{failAt: -1} }

func (c *collector) deliver(it provider.Item) error {
	if len(c.items) == c.failAt {
		return c.err
	}
	c.items = append(c.items, it)
	return nil
}

func (c *collector) names() []string {
	var out []string
	for _, it := range c.items {
		out = append(out, it.Name)
	}
	return out
}

func TestPull(t *testing.T) {
	t.Run("pending running completed, then nothing new", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{statePending, stateRunning, stateCompleted}
		a.files = threeFiles()
		c := a.client()
		src := &testSource{tok: userToken("acc", "ref")}
		col := newCollector()
		res, err := c.Pull(waitCtx(t), "u1", src, "", col.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := col.names(), []string{"a.json", "b.json", "c.json"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("delivered %v, want %v", got, want)
		}
		if res.Cursor != "2000:c.json" || res.Delivered != 3 || res.Status != stateCompleted || res.AccountErrors != nil {
			t.Fatalf("result %+v", res)
		}
		if a.polls != 3 {
			t.Fatalf("polls %d, want 3", a.polls)
		}
		a0 := col.items[0]
		if string(a0.Data) != `{"a":1}` || a0.MimeType != "application/fhir+json" || !a0.UpdatedAt.Equal(time.UnixMilli(1000)) {
			t.Fatalf("item a: %+v", a0)
		}
		var meta map[string]any
		if err := json.Unmarshal(a0.Metadata, &meta); err != nil || meta["objectType"] != "Patient" {
			t.Fatalf("item a metadata %s", a0.Metadata)
		}
		if col.items[1].MimeType != "" || string(col.items[2].Data) != `{"c":3}` || col.items[2].MimeType != "application/json" {
			t.Fatalf("items b, c: %+v %+v", col.items[1], col.items[2])
		}
		// The trigger body.
		var body map[string]any
		if err := json.Unmarshal(a.triggerReq, &body); err != nil {
			t.Fatal(err)
		}
		sdk := body["agent"].(map[string]any)["sdk"].(map[string]any)
		if sdk["name"] != DefaultAgentName || sdk["version"] == "" || !reflect.DeepEqual(sdk["meta"], map[string]any{}) || body["sourceFetch"] != true {
			t.Fatalf("trigger body %s", a.triggerReq)
		}

		// Again from the cursor: nothing new, nothing downloaded.
		a.polls = 0
		col2 := newCollector()
		res2, err := c.Pull(waitCtx(t), "u1", src, res.Cursor, col2.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if len(col2.items) != 0 || res2.Cursor != res.Cursor || res2.Delivered != 0 {
			t.Fatalf("second pull delivered %v, result %+v", col2.names(), res2)
		}
		if n := len(a.recorded("file")); n != 3 {
			t.Fatalf("%d downloads in total, want 3", n)
		}
	})

	t.Run("cursor in the middle", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		col := newCollector()
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "2000:b.json", col.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if got := col.names(); !reflect.DeepEqual(got, []string{"c.json"}) || res.Cursor != "2000:c.json" {
			t.Fatalf("delivered %v, cursor %q", got, res.Cursor)
		}
	})

	t.Run("an updated file is delivered again", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		a.files[1].updated = 3000 // a.json changed after the cursor
		col := newCollector()
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "2000:c.json", col.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if got := col.names(); !reflect.DeepEqual(got, []string{"a.json"}) || res.Cursor != "3000:a.json" {
			t.Fatalf("delivered %v, cursor %q", got, res.Cursor)
		}
	})

	t.Run("deliver error stops the pull", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		col := newCollector()
		col.failAt, col.err = 1, errors.New("disk full")
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", col.deliver)
		if !errors.Is(err, col.err) {
			t.Fatalf("err %v, want the deliver error", err)
		}
		if res.Cursor != "1000:a.json" || res.Delivered != 1 {
			t.Fatalf("result %+v: the cursor must cover only a.json", res)
		}
		if n := len(a.recorded("file")); n != 2 {
			t.Fatalf("%d downloads, want 2 (nothing after the refused item)", n)
		}
	})

	t.Run("partial with account errors", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{stateRunning, statePartial}
		a.files = threeFiles()[1:2]
		retryAt := testEpoch.Add(time.Hour)
		a.details = map[string]any{
			"acc-ok": map[string]any{"state": "completed"},
			"acc-reauth": map[string]any{"state": "partial", "error": map[string]any{
				"code": "ServiceAuthorizationError", "statusCode": 511, "message": "reauthorize the source",
				"reauth": true, "retryAfter": retryAt.UnixMilli(),
			}},
			"acc-nested": map[string]any{"state": "partial", "error": map[string]any{
				"error": map[string]any{"code": "ServiceAuthorizationError", "statusCode": 511, "reauth": true},
			}},
			"acc-throttled": map[string]any{"state": "partial", "error": map[string]any{
				"code": "SourceRateLimited", "statusCode": "429",
			}},
		}
		col := newCollector()
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", col.deliver)
		if err != nil {
			t.Fatal(err)
		}
		want := []provider.AccountError{
			{Account: "acc-nested", Code: "ServiceAuthorizationError", Status: 511, Reauth: true},
			{Account: "acc-reauth", Code: "ServiceAuthorizationError", Status: 511, Message: "reauthorize the source", Reauth: true, RetryAfter: retryAt},
			{Account: "acc-throttled", Code: "SourceRateLimited", Status: 429},
		}
		if res.Status != statePartial || !reflect.DeepEqual(res.AccountErrors, want) {
			t.Fatalf("status %q account errors\n%+v\nwant\n%+v", res.Status, res.AccountErrors, want)
		}
		if res.Delivered != 1 || len(col.items) != 1 {
			t.Fatalf("partial pull delivered %d", res.Delivered)
		}
	})

	t.Run("max polls", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{statePending}
		res, err := a.client(func(c *Config) { c.MaxPolls = 3 }).Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "7:x", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "pull" || pe.Permanent || !strings.Contains(err.Error(), "gave up after 3 polls") {
			t.Fatalf("err %v, want a transient pull error after 3 polls", err)
		}
		if a.polls != 3 || res.Cursor != "7:x" {
			t.Fatalf("polls %d cursor %q", a.polls, res.Cursor)
		}
	})

	t.Run("max duration by the clock", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{statePending}
		a.onPoll = func(int) { a.clk.Advance(time.Minute) }
		_, err := a.client(func(c *Config) { c.MaxDuration = 2 * time.Minute }).Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "pull" || !errors.Is(err, errMaxDuration) {
			t.Fatalf("err %v, want a max-duration pull error", err)
		}
		if a.polls != 2 {
			t.Fatalf("polls %d, want 2", a.polls)
		}
	})

	t.Run("max duration in real time", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{statePending}
		c := a.client(func(c *Config) { c.MaxDuration = 50 * time.Millisecond; c.PollInterval = time.Hour })
		_, err := c.Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		if !errors.Is(err, errMaxDuration) {
			t.Fatalf("err %v, want a max-duration pull error", err)
		}
	})

	t.Run("unknown state", func(t *testing.T) {
		a := newAPI(t)
		a.states = []string{"exploded"}
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "file list" {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("malformed cursor", func(t *testing.T) {
		a := newAPI(t)
		for _, cur := range []string{"abc", "12", "-1:x", ":x"} {
			_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, cur, newCollector().deliver)
			var pe *provider.Error
			if !errors.As(err, &pe) || !pe.Permanent {
				t.Errorf("cursor %q: err %v, want permanent", cur, err)
			}
		}
		if n := len(a.recorded("trigger")); n != 0 {
			t.Fatalf("%d triggers for malformed cursors", n)
		}
	})

	t.Run("corrupt file stops the pull with the cursor before it", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		a.files[2].corrupt = true // b.json
		col := newCollector()
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", col.deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "file" || pe.Code != "decrypt" || !strings.Contains(err.Error(), "b.json") {
			t.Fatalf("err %v", err)
		}
		if res.Cursor != "1000:a.json" || res.Delivered != 1 {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("file 404 is a permanent file error", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		a.fault("file", fault{status: 404, body: `{"error":{"code":"NotFound","message":"gone"}}`})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "file" || pe.Status != 404 || pe.Code != "NotFound" || !pe.Permanent {
			t.Fatalf("err %#v", err)
		}
	})
}

func TestPull401(t *testing.T) {
	t.Run("401 on trigger refreshes once and retries", func(t *testing.T) {
		for name, body := range map[string]string{
			"InvalidToken": `{"error":{"code":"InvalidToken","message":"The token (access_token) is invalid"}}`,
			"empty body":   "",
			"not json":     "Unauthorized",
		} {
			t.Run(name, func(t *testing.T) {
				a := newAPI(t)
				a.files = threeFiles()
				a.access = map[string]bool{"new-acc": true}
				a.unauthBody = body
				src := &testSource{tok: userToken("old-acc", "ref"), next: []tokens.Token{userToken("new-acc", "ref2")}}
				col := newCollector()
				res, err := a.client().Pull(waitCtx(t), "u1", src, "", col.deliver)
				if err != nil {
					t.Fatal(err)
				}
				rej := src.rejections()
				if len(rej) != 1 || rej[0].AccessToken != "old-acc" {
					t.Fatalf("rejections %v, want one with the old token", rej)
				}
				trig := a.recorded("trigger")
				if len(trig) != 2 || trig[0].access != "old-acc" || trig[1].access != "new-acc" || trig[0].nonce == trig[1].nonce {
					t.Fatalf("triggers %+v", trig)
				}
				for _, op := range []string{"list", "file"} {
					for _, r := range a.recorded(op) {
						if r.access != "new-acc" {
							t.Fatalf("%s used access %q after the refresh", op, r.access)
						}
					}
				}
				if res.Delivered != 3 {
					t.Fatalf("delivered %d", res.Delivered)
				}
			})
		}
	})

	t.Run("second 401 is an error", func(t *testing.T) {
		a := newAPI(t)
		a.access = map[string]bool{}
		src := &testSource{tok: userToken("old-acc", "ref"), next: []tokens.Token{userToken("new-acc", "ref2")}}
		_, err := a.client().Pull(waitCtx(t), "u1", src, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 401 || pe.Code != "InvalidToken" || pe.Permanent {
			t.Fatalf("err %v", err)
		}
		if n := len(src.rejections()); n != 1 {
			t.Fatalf("%d rejections, want 1", n)
		}
		if n := len(a.recorded("trigger")); n != 2 {
			t.Fatalf("%d triggers, want 2", n)
		}
	})

	t.Run("401 with another code is not refreshed", func(t *testing.T) {
		a := newAPI(t)
		a.fault("trigger", fault{status: 401, body: `{"error":{"code":"InsufficientScope","message":"one-off contract"}}`})
		src := &testSource{tok: userToken("acc", "ref")}
		_, err := a.client().Pull(waitCtx(t), "u1", src, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 401 || pe.Code != "InsufficientScope" {
			t.Fatalf("err %v", err)
		}
		if n := len(src.rejections()); n != 0 {
			t.Fatalf("%d rejections, want 0", n)
		}
	})

	t.Run("401 on a file download", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		a.fault("file", fault{status: 401})
		src := &testSource{tok: userToken("acc", "ref"), next: []tokens.Token{userToken("acc2", "ref2")}}
		res, err := a.client().Pull(waitCtx(t), "u1", src, "", newCollector().deliver)
		if err != nil || res.Delivered != 3 {
			t.Fatalf("res %+v err %v", res, err)
		}
		if n := len(src.rejections()); n != 1 {
			t.Fatalf("%d rejections", n)
		}
	})

	t.Run("token source errors are returned as is", func(t *testing.T) {
		a := newAPI(t)
		errReauth := errors.New("user must re-authorize")
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tokenErr: errReauth}, "", newCollector().deliver)
		if !errors.Is(err, errReauth) {
			t.Fatalf("err %v", err)
		}
		var pe *provider.Error
		if errors.As(err, &pe) {
			t.Fatalf("token trouble wrapped in a provider.Error: %v", err)
		}
		if n := len(a.recorded("trigger")); n != 0 {
			t.Fatalf("%d triggers without a token", n)
		}

		a.access = map[string]bool{}
		_, err = a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref"), rejectErr: errReauth}, "", newCollector().deliver)
		if !errors.Is(err, errReauth) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestRetries(t *testing.T) {
	t.Run("GET retried on 503 with fresh nonces", func(t *testing.T) {
		a := newAPI(t)
		a.fault("list", fault{status: 503}, fault{status: 502})
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		if err != nil || res.Status != stateCompleted {
			t.Fatalf("res %+v err %v", res, err)
		}
		lists := a.recorded("list")
		if len(lists) != 3 {
			t.Fatalf("%d file-list attempts, want 3", len(lists))
		}
		seen := map[string]bool{}
		for _, r := range lists {
			if seen[r.nonce] {
				t.Fatalf("nonce reused across retries: %+v", lists)
			}
			seen[r.nonce] = true
		}
	})

	t.Run("GET gives up after GetRetries", func(t *testing.T) {
		a := newAPI(t)
		a.fault("list", fault{status: 503}, fault{status: 503}, fault{status: 503, header: map[string]string{"Retry-After": "0"}})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 503 || pe.Op != "file list" || pe.Permanent {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("list")); n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
	})

	t.Run("Retry-After above the cap ends the call", func(t *testing.T) {
		a := newAPI(t)
		a.fault("list", fault{status: 429, header: map[string]string{"Retry-After": "3600"}})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 429 || pe.RetryAfter != time.Hour {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("list")); n != 1 {
			t.Fatalf("%d attempts, want 1", n)
		}
	})

	t.Run("Retry-After within the cap is waited out", func(t *testing.T) {
		a := newAPI(t)
		a.fault("list", fault{status: 413, header: map[string]string{"Retry-After": "0"}})
		if _, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver); err != nil {
			t.Fatal(err)
		}
		if n := len(a.recorded("list")); n != 2 {
			t.Fatalf("%d attempts, want 2", n)
		}
	})

	t.Run("413 without Retry-After is not retried", func(t *testing.T) {
		a := newAPI(t)
		a.fault("list", fault{status: 413})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		if err == nil || len(a.recorded("list")) != 1 {
			t.Fatalf("err %v, attempts %d", err, len(a.recorded("list")))
		}
	})

	t.Run("network error on GET is retried", func(t *testing.T) {
		a := newAPI(t)
		a.files = threeFiles()
		a.fault("file", fault{drop: true})
		res, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		if err != nil || res.Delivered != 3 {
			t.Fatalf("res %+v err %v", res, err)
		}
	})

	t.Run("POST not retried on 503", func(t *testing.T) {
		a := newAPI(t)
		a.fault("trigger", fault{status: 503, header: map[string]string{"Retry-After": "0"}})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 503 || pe.Op != "trigger" || pe.Permanent {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("trigger")); n != 1 {
			t.Fatalf("%d triggers, want 1", n)
		}
	})

	t.Run("POST not retried on a network error", func(t *testing.T) {
		a := newAPI(t)
		a.fault("trigger", fault{drop: true})
		_, err := a.client().Pull(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, "", newCollector().deliver)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Status != 0 {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("trigger")); n != 1 {
			t.Fatalf("%d triggers, want 1", n)
		}
	})

	t.Run("retry delays", func(t *testing.T) {
		testKeys(t)
		c, err := New(Config{AppID: "a", ContractID: "c", PrivateKey: contractKey})
		if err != nil {
			t.Fatal(err)
		}
		c.jitter = func(max time.Duration) time.Duration {
			if max != 100*time.Millisecond {
				t.Errorf("jitter bound %v, want 100ms", max)
			}
			return max
		}
		for _, tc := range []struct {
			attempt int
			resp    *response
			err     error
			want    time.Duration
			retry   bool
		}{
			{1, &response{status: 503}, nil, 1100 * time.Millisecond, true},
			{2, &response{status: 500}, nil, 2100 * time.Millisecond, true},
			{1, nil, errors.New("reset"), 1100 * time.Millisecond, true},
			{1, &response{status: 429, retryAfter: 7 * time.Second, hasRetry: true}, nil, 7 * time.Second, true},
			{1, &response{status: 429, retryAfter: 31 * time.Second, hasRetry: true}, nil, 0, false},
			{1, &response{status: 404}, nil, 0, false},
			{1, &response{status: 401}, nil, 0, false},
			{1, &response{status: 413}, nil, 0, false},
		} {
			d, ok := c.retryDelay(tc.attempt, tc.resp, tc.err)
			if d != tc.want || ok != tc.retry {
				t.Errorf("attempt %d %+v %v: got %v %v, want %v %v", tc.attempt, tc.resp, tc.err, d, ok, tc.want, tc.retry)
			}
		}
	})
}

func TestCursor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cursorPos
	}{
		{"", cursorPos{}},
		{"1568716294874:file.json", cursorPos{set: true, updated: 1568716294874, name: "file.json"}},
		{"5:a:b:c", cursorPos{set: true, updated: 5, name: "a:b:c"}},
		{"0:", cursorPos{set: true}},
	} {
		got, err := parseCursor(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v %v", tc.in, got, err)
		}
		if tc.in != "" && formatCursor(got.updated, got.name) != tc.in {
			t.Errorf("%q does not round-trip", tc.in)
		}
	}
}
