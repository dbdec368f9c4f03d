package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/tokens"
)

// UserView is everything about one user.
type UserView struct {
	tokens.Status
	Jobs []jobs.UserJob `json:"jobs"`
}

// Backend is what the API serves.
type Backend interface {
	// Ready is nil when Redis answers and the config is applied.
	Ready(ctx context.Context) error
	User(ctx context.Context, id string) (UserView, error)
	// Users lists users (optionally in one state) from a SCAN cursor;
	// next is 0 at the end. malformed counts the records of the page
	// that could not be read (left out of users).
	Users(ctx context.Context, state tokens.State, cursor uint64, limit int) (users []tokens.Status, next uint64, malformed int, err error)
	// PutToken parses body (same formats and checks as token put) and
	// stores it for id under provider ("" for the only provider).
	PutToken(ctx context.Context, id, provider string, body []byte) (UserView, error)
	// Reauth lists the re-auth queue; malformed counts queued users whose
	// record could not be read (left out).
	Reauth(ctx context.Context) (q []tokens.ReauthEntry, malformed int, err error)
	// Quarantine lists quarantined users, oldest first.
	Quarantine(ctx context.Context) ([]tokens.QuarantineEntry, error)
	// Restore brings a quarantined user back (an error of kind Conflict
	// when the record still does not read or a live record exists,
	// NotFound when the user is not quarantined).
	Restore(ctx context.Context, id string) (UserView, error)
	Jobs(ctx context.Context) ([]jobs.JobView, error)
	Trigger(ctx context.Context, job, user string) (int, error)
	Pause(ctx context.Context, job string, paused bool) error
	// Authorize and Reauthorize make consent links; FinishAuthorization
	// exchanges a callback's code and stores the token. Their refusals
	// are *authflow.Error, answered with its code.
	Authorize(ctx context.Context, req authflow.Request) (authflow.Link, error)
	Reauthorize(ctx context.Context, req authflow.Request) (authflow.Link, error)
	FinishAuthorization(ctx context.Context, cb authflow.Callback) (authflow.Result, error)
}

// Options configure a Server.
type Options struct {
	// Credentials are the bearer tokens /v1 accepts (SetCredentials
	// replaces them); none: every /v1 request is answered 401.
	Credentials []Credential
	// Listen is the address served (admin.listen) and AllowedHosts more
	// names (admin.allowed_hosts): the Host check (see hosts) passes them.
	Listen       string
	AllowedHosts []string
	Backend      Backend
	Gatherer     prometheus.Gatherer
	Logger       zerolog.Logger
	// CallbackPath, if set, serves the public authorization callback
	// (GET, no bearer token: the state is the credential).
	CallbackPath string
	// DoneURL is where the public callback sends the browser afterwards;
	// empty shows a short page.
	DoneURL string
	// DoneURLSecret, if set, signs the results added to DoneURL (t and
	// sig, see authorize.go doneQuery).
	DoneURLSecret string
	// Clock dates signed results; default the real clock.
	Clock clock.Clock
}

// MaxBody bounds request bodies.
const MaxBody = 64 << 10

// Server is the admin HTTP server.
type Server struct {
	opt   Options
	mux   *http.ServeMux
	log   zerolog.Logger
	creds atomic.Pointer[[]credential]
	hosts hosts
}

// New returns a Server.
func New(opt Options) *Server {
	s := &Server{opt: opt, mux: http.NewServeMux(), log: opt.Logger.With().Str("component", "admin").Logger(),
		hosts: newHosts(opt.Listen, opt.AllowedHosts)}
	s.SetCredentials(opt.Credentials)
	s.handle("GET /healthz", open, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.handle("GET /readyz", open, s.ready)
	if opt.Gatherer != nil {
		s.handle("GET /metrics", open, promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	}
	s.handle("GET /v1/users/{id}", read, s.user)
	s.handle("GET /v1/users", read, s.users)
	s.handle("PUT /v1/users/{id}/token", write, s.putToken)
	s.handle("GET /v1/reauth", read, s.reauth)
	s.handle("GET /v1/quarantine", read, s.quarantine)
	s.handle("POST /v1/users/{id}/restore", write, s.restore)
	s.handle("GET /v1/jobs", read, s.jobs)
	s.handle("POST /v1/jobs/{name}/trigger", write, s.trigger)
	s.handle("POST /v1/jobs/{name}/pause", write, s.pause(true))
	s.handle("POST /v1/jobs/{name}/resume", write, s.pause(false))
	s.handle("POST /v1/users/{id}/authorize", write, s.link(false))
	s.handle("POST /v1/users/{id}/reauthorize", write, s.link(true))
	s.handle("POST /v1/authorize/callback", write, s.callback)
	if opt.CallbackPath != "" {
		s.handle("GET "+opt.CallbackPath, public, s.publicCallback)
	}
	// Any other /v1 request: the read credential first, so an anonymous
	// caller learns nothing of the routes.
	s.handle("/v1/", read, func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
	})
	return s
}

// Handler returns the server's handler.
func (s *Server) Handler() http.Handler { return nosniff(s.mux) }

// PublicHandler serves only the public callback path (for
// authorize.public_listen).
func (s *Server) PublicHandler() http.Handler {
	m := http.NewServeMux()
	if s.opt.CallbackPath != "" {
		m.HandleFunc("GET "+s.opt.CallbackPath, s.publicCallback)
	}
	return nosniff(m)
}

// Serve serves on ln until ctx ends, then shuts down within 5s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, s.Handler())
}

// ServePublic serves PublicHandler on ln (for authorize.public_listen)
// until ctx ends.
func (s *Server) ServePublic(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, s.PublicHandler())
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opt.Backend.Ready(ctx); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	v, err := s.opt.Backend.User(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, v)
}

func (s *Server) users(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var st tokens.State
	if v := q.Get("state"); v != "" {
		var err error
		if st, err = tokens.ParseState(v); err != nil {
			writeErr(w, http.StatusBadRequest, "state: "+err.Error())
			return
		}
	}
	limit := 500
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1..10000, got %q", v))
			return
		}
		limit = n
	}
	var cursor uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("cursor: not a number: %q", v))
			return
		}
		cursor = n
	}
	list, next, malformed, err := s.opt.Backend.Users(r.Context(), st, cursor, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []tokens.Status{}
	}
	out := map[string]any{"users": list}
	if next != 0 {
		out["next_cursor"] = strconv.FormatUint(next, 10)
	}
	if malformed > 0 {
		out["malformed"] = malformed
	}
	writeJSON(w, 200, out)
}

func (s *Server) putToken(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody))
		return
	}
	v, err := s.opt.Backend.PutToken(r.Context(), r.PathValue("id"), r.URL.Query().Get("provider"), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, v)
}

func (s *Server) reauth(w http.ResponseWriter, r *http.Request) {
	q, malformed, err := s.opt.Backend.Reauth(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if q == nil {
		q = []tokens.ReauthEntry{}
	}
	out := map[string]any{"size": len(q), "users": q}
	if malformed > 0 {
		out["malformed"] = malformed
	}
	writeJSON(w, 200, out)
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request) {
	q, err := s.opt.Backend.Quarantine(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if q == nil {
		q = []tokens.QuarantineEntry{}
	}
	writeJSON(w, 200, map[string]any{"size": len(q), "users": q})
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	v, err := s.opt.Backend.Restore(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, v)
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) {
	v, err := s.opt.Backend.Jobs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]any{"jobs": v})
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	n, err := s.opt.Backend.Trigger(r.Context(), r.PathValue("name"), r.URL.Query().Get("user"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]any{"job": r.PathValue("name"), "triggered": n})
}

func (s *Server) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.opt.Backend.Pause(r.Context(), r.PathValue("name"), paused); err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, 200, map[string]any{"job": r.PathValue("name"), "paused": paused})
	}
}
