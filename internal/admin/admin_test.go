package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/tokens"
)

// backend is a hand-written fake of the daemon.
type backend struct {
	ready   error
	puts    []string
	paused  map[string]bool
	lastPut []byte
	// triggerErr, if set, is what Trigger fails with.
	triggerErr error
}

func (b *backend) Ready(context.Context) error { return b.ready }
func (b *backend) User(_ context.Context, id string) (admin.UserView, error) {
	if id != "alice" {
		return admin.UserView{}, tokens.ErrNotFound
	}
	return admin.UserView{Status: tokens.Status{User: "alice", State: tokens.Active}}, nil
}
func (b *backend) Users(context.Context, tokens.State, uint64, int) ([]tokens.Status, uint64, int, error) {
	return []tokens.Status{{User: "alice"}}, 42, 0, nil
}
func (b *backend) PutToken(_ context.Context, id, _ string, body []byte) (admin.UserView, error) {
	if !strings.HasPrefix(string(body), "{") {
		return admin.UserView{}, tokens.ErrBadToken
	}
	b.puts = append(b.puts, id)
	b.lastPut = body
	return admin.UserView{Status: tokens.Status{User: id}}, nil
}
func (b *backend) Reauth(context.Context) ([]tokens.ReauthEntry, int, error) {
	return []tokens.ReauthEntry{{UserID: "bob", Reason: "invalid_grant", Since: time.Unix(1_780_000_000, 0).UTC()}}, 0, nil
}
func (b *backend) Quarantine(context.Context) ([]tokens.QuarantineEntry, error) {
	return []tokens.QuarantineEntry{{UserID: "dan", Reason: "wrong_type", Since: time.Unix(1_780_000_000, 0).UTC()}}, nil
}
func (b *backend) Restore(_ context.Context, id string) (admin.UserView, error) {
	switch id {
	case "dan":
		return admin.UserView{Status: tokens.Status{User: "dan", State: tokens.Active}}, nil
	case "eve":
		return admin.UserView{}, fmt.Errorf("%w: user \"eve\": field \"ae\": %w", admin.ErrConflict, tokens.ErrMalformedRecord)
	}
	return admin.UserView{}, fmt.Errorf("%w: user %q: %w", admin.ErrNotFound, id, tokens.ErrNotQuarantined)
}
func (b *backend) Jobs(context.Context) ([]jobs.JobView, error) {
	return []jobs.JobView{{Name: "pull"}}, nil
}
func (b *backend) Trigger(_ context.Context, job, _ string) (int, error) {
	if b.triggerErr != nil {
		return 0, b.triggerErr
	}
	if job != "pull" {
		return 0, jobs.ErrUnknownJob
	}
	return 3, nil
}
func (b *backend) Pause(_ context.Context, job string, p bool) error {
	b.paused[job] = p
	return nil
}

func (b *backend) Authorize(_ context.Context, req authflow.Request) (authflow.Link, error) {
	if req.RedirectURI == "" {
		return authflow.Link{}, &authflow.Error{Kind: authflow.KindBadRequest, Msg: "redirect_uri: required"}
	}
	return authflow.Link{User: req.User, Flow: authflow.FlowAuthorize, URL: "https://consent.example/?s=" + req.State, State: req.State}, nil
}
func (b *backend) Reauthorize(_ context.Context, req authflow.Request) (authflow.Link, error) {
	if req.User != "bob" {
		return authflow.Link{}, &authflow.Error{Kind: authflow.KindConflict, Msg: "user is active"}
	}
	return authflow.Link{User: req.User, Flow: authflow.FlowReauthorize, URL: "https://consent.example/reauth"}, nil
}
func (b *backend) FinishAuthorization(_ context.Context, cb authflow.Callback) (authflow.Result, error) {
	switch {
	case cb.Error != "":
		return authflow.Result{User: "carol"}, &authflow.Error{Kind: authflow.KindDenied, Msg: "consent refused by the provider: " + cb.Error}
	case cb.State != "s1":
		return authflow.Result{}, &authflow.Error{Kind: authflow.KindStateUnknown, Msg: "state: unknown, expired or already used"}
	}
	return authflow.Result{User: "carol", State: tokens.Active, Flow: authflow.FlowAuthorize}, nil
}

// writeCred is a write credential named "write".
func writeCred(token string) []admin.Credential {
	return []admin.Credential{{Name: "write", Token: token, Scope: admin.Write}}
}

func do(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1:9464"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestAPI(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	const token = "an-admin-token-123456"
	h := admin.New(admin.Options{Credentials: writeCred(token), Backend: be, Gatherer: prometheus.NewRegistry(), Logger: zerolog.Nop()}).Handler()
	tests := []struct {
		method, path, token, body string
		code                      int
		want                      string
	}{
		{"GET", "/healthz", "", "", 200, `"ok"`},
		{"GET", "/readyz", "", "", 200, `"ready"`},
		{"GET", "/metrics", "", "", 200, ""},
		{"GET", "/v1/users/alice", token, "", 200, `"user":"alice"`},
		{"GET", "/v1/users/zed", token, "", 404, `"error"`},
		{"GET", "/v1/users?state=active&limit=10", token, "", 200, `"next_cursor":"42"`},
		{"GET", "/v1/users?state=sleepy", token, "", 400, `unknown state \"sleepy\"`},
		{"GET", "/v1/users?limit=0", token, "", 400, "limit: want 1..10000"},
		{"GET", "/v1/reauth", token, "", 200, `"size":1`},
		{"GET", "/v1/jobs", token, "", 200, `"name":"pull"`},
		{"GET", "/v1/quarantine", token, "", 200, `"users":[{"user":"dan","reason":"wrong_type","since":"2026-05-28T20:26:40Z"}]`},
		{"POST", "/v1/users/dan/restore", token, "", 200, `"state":"active"`},
		{"POST", "/v1/users/eve/restore", token, "", 409, `field \"ae\"`},
		{"POST", "/v1/users/zed/restore", token, "", 404, "not quarantined"},
		{"POST", "/v1/users/dan/restore", "", "", 401, "bearer token"},
		{"PUT", "/v1/users/carol/token", "", "{}", 401, "bearer token"},
		{"PUT", "/v1/users/carol/token", "wrong-token-1234567", "{}", 401, "bearer token"},
		{"PUT", "/v1/users/carol/token", token, "not json", 400, "bad token"},
		{"PUT", "/v1/users/carol/token", token, `{"access_token":"x"}`, 200, `"user":"carol"`},
		{"PUT", "/v1/users/carol/token", token, "{" + strings.Repeat(" ", admin.MaxBody) + "}", 413, "larger than"},
		{"POST", "/v1/jobs/pull/trigger", token, "", 200, `"triggered":3`},
		{"POST", "/v1/jobs/nope/trigger", token, "", 404, "unknown job"},
		{"POST", "/v1/jobs/pull/pause", token, "", 200, `"paused":true`},
		{"POST", "/v1/jobs/pull/pause", "", "", 401, ""},
		{"POST", "/v1/users/carol/authorize", token, `{"redirect_uri":"https://app.example/cb","state":"s1"}`, 200, `"url":"https://consent.example/?s=s1"`},
		{"POST", "/v1/users/carol/authorize", token, "", 400, `"code":"bad_request"`},
		{"POST", "/v1/users/carol/authorize", token, `{"redirect":"x"}`, 400, `unknown field`},
		{"POST", "/v1/users/carol/authorize", "", `{}`, 401, "bearer token"},
		{"POST", "/v1/users/bob/reauthorize", token, "", 200, `"flow":"reauthorize"`},
		{"POST", "/v1/users/carol/reauthorize", token, "", 409, `"code":"conflict"`},
		{"POST", "/v1/authorize/callback?state=s1&code=c", token, "", 200, `"state":"active"`},
		{"POST", "/v1/authorize/callback?state=s2&code=c", token, "", 400, `"code":"state_unknown"`},
		{"POST", "/v1/authorize/callback?success=false&errorCode=access_denied&state=s1", token, "", 403, `"code":"access_denied"`},
		{"POST", "/v1/authorize/callback?state=s1&code=c", "", "", 401, "bearer token"},
		{"GET", "/cb?state=s1&code=c", "", "", 404, ""},
		{"DELETE", "/v1/users/alice", token, "", 404, "no route DELETE /v1/users/alice"},
		{"GET", "/v1/nothing", token, "", 404, "no route"},
	}
	for _, tc := range tests {
		code, body := do(t, h, tc.method, tc.path, tc.token, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}
	if len(be.puts) != 1 || !be.paused["pull"] {
		t.Fatalf("puts %v paused %v", be.puts, be.paused)
	}
	be.ready = errors.New("not ready: redis unavailable")
	if code, body := do(t, h, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(body, "redis unavailable") {
		t.Fatalf("readyz: %d %s", code, body)
	}
}

func TestPublicCallback(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	h := admin.New(admin.Options{Backend: be, CallbackPath: "/cb"}).Handler()
	if code, body := do(t, h, "GET", "/cb?state=s1&code=c", "", ""); code != 200 || !strings.Contains(body, "Authorization complete") {
		t.Fatalf("ok: %d %s", code, body)
	}
	// The provider's error reaches the page escaped: the query is anyone's.
	code, body := do(t, h, "GET", "/cb?state=s1&error=%3Cscript%3E", "", "")
	if code != 403 || strings.Contains(body, "<script>") || !strings.Contains(body, "Authorization failed") {
		t.Fatalf("denied: %d %s", code, body)
	}
	h = admin.New(admin.Options{Backend: be, CallbackPath: "/cb", DoneURL: "https://app.example/done?x=1"}).Handler()
	req := httptest.NewRequest("GET", "/cb?state=s2&code=c", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); rec.Code != 303 || loc != "https://app.example/done?error=state_unknown&result=error&x=1" {
		t.Fatalf("redirect: %d %q", rec.Code, loc)
	}
	req = httptest.NewRequest("GET", "/cb?state=s1&code=c", nil)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); rec.Code != 303 || loc != "https://app.example/done?result=ok&user=carol&x=1" {
		t.Fatalf("redirect ok: %d %q", rec.Code, loc)
	}
}

// TestErrorStatus: the API answers an error by its kind (an authflow
// refusal by its code), with the error's message; an error it does not
// know, or an outage, with a message that tells nothing of it.
func TestErrorStatus(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	const token = "an-admin-token-123456"
	h := admin.New(admin.Options{Credentials: writeCred(token), Backend: be, Logger: zerolog.Nop()}).Handler()
	const internal = "10.9.8.7:6379"
	for _, tc := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"invalid", errkind.New(errkind.Invalid, "user id is empty"), 400, `{"error":"user id is empty"}`},
		{"bad request", fmt.Errorf("%w: %w", admin.ErrBadRequest, errkind.New(errkind.Invalid, "user id is empty")), 400, `{"error":"bad request: user id is empty"}`},
		{"bad token", fmt.Errorf("token: %w", tokens.ErrBadToken), 400, `"token: bad token"`},
		{"not found", fmt.Errorf("user %q: %w", "zed", tokens.ErrNotFound), 404, `no token stored for user`},
		{"unknown job", fmt.Errorf("job %q: %w", "nope", jobs.ErrUnknownJob), 404, `job \"nope\": unknown job`},
		{"not quarantined", fmt.Errorf("%w: %w", admin.ErrNotFound, tokens.ErrNotQuarantined), 404, `"not found: user is not quarantined"`},
		{"malformed", fmt.Errorf("user %q: field %q: %w", "eve", "ae", tokens.ErrMalformedRecord), 409, `field \"ae\"`},
		{"live record", fmt.Errorf("%w: %w", admin.ErrConflict, tokens.ErrLiveRecord), 409, `"conflict: a live record exists`},
		{"unavailable", errkind.Mark(errkind.Unavailable, errors.New("load token: dial tcp "+internal+": connect: connection refused")), 503, `"error"`},
		{"unknown", errors.New("rescore " + internal + ": something broke"), 500, `"internal error; see the daemon's log"`},
		{"authflow bad_request", &authflow.Error{Kind: authflow.KindBadRequest, Msg: "redirect_uri: required"}, 400, `{"code":"bad_request","error":"redirect_uri: required"}`},
		{"authflow not_found", &authflow.Error{Kind: authflow.KindNotFound, Msg: "no token"}, 404, `"code":"not_found"`},
		{"authflow conflict", &authflow.Error{Kind: authflow.KindConflict, Msg: "user is active"}, 409, `"code":"conflict"`},
		{"authflow state_unknown", &authflow.Error{Kind: authflow.KindStateUnknown, Msg: "state: unknown"}, 400, `"code":"state_unknown"`},
		{"authflow state_expired", &authflow.Error{Kind: authflow.KindStateExpired, Msg: "state: expired"}, 410, `"code":"state_expired"`},
		{"authflow access_denied", &authflow.Error{Kind: authflow.KindDenied, Msg: "consent refused"}, 403, `"code":"access_denied"`},
		{"authflow code_rejected", &authflow.Error{Kind: authflow.KindRejected, Msg: "code rejected"}, 400, `"code":"code_rejected"`},
		{"authflow provider_unavailable", &authflow.Error{Kind: authflow.KindUnavailable, Msg: "the provider is unavailable, try again"}, 502, `"code":"provider_unavailable"`},
		{"authflow wrapped", fmt.Errorf("finish: %w", &authflow.Error{Kind: authflow.KindStateExpired, Msg: "state: expired"}), 410, `"error":"state: expired"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be.triggerErr = tc.err
			code, body := do(t, h, "POST", "/v1/jobs/pull/trigger", token, "")
			if code != tc.code || !strings.Contains(body, tc.want) || strings.Contains(body, internal) {
				t.Errorf("%d %s, want %d containing %s and nothing of %s", code, body, tc.code, tc.want, internal)
			}
		})
	}
}
