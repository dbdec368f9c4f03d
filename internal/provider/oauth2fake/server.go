package oauth2fake

import (
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/tokens"
)

// Auth styles: how the client authenticates at the token endpoint.
const (
	// AuthBasic is client_secret_basic: HTTP Basic with the form-encoded
	// client id and secret (RFC 6749 §2.3.1).
	AuthBasic = "basic"
	// AuthPost is client_secret_post: client_id and client_secret in the
	// form body.
	AuthPost = "post"
)

// Header names of the data API.
const (
	// HeaderNextCursor carries the cursor of the next pull.
	HeaderNextCursor = "X-Next-Cursor"
	// HeaderItemID, HeaderTags and HeaderAccounts describe a pushed item;
	// tags and accounts are comma-separated.
	HeaderItemID   = "X-Syncd-Item-Id"
	HeaderTags     = "X-Syncd-Tags"
	HeaderAccounts = "X-Syncd-Accounts"
)

const (
	realm           = "oauth2fake"
	maxFormBytes    = 64 << 10
	maxPushBytes    = 64 << 20
	tokenBytes      = 16
	accessPrefix    = "o2-at-"
	refreshPrefix   = "o2-rt-"
	defaultLife     = time.Hour
	contentTypeJSON = "application/json;charset=UTF-8"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	// ClientID and ClientSecret are the only client the server knows.
	ClientID     string
	ClientSecret string
	// AuthStyle is the one client authentication method accepted: AuthPost,
	// or AuthBasic for anything else (the default). The other method is
	// answered 401 invalid_client, both at once 400 invalid_request.
	AuthStyle string
	// AccessLifetime of issued access tokens (default 1h); also sent as
	// expires_in.
	AccessLifetime time.Duration
	// KeepRefreshToken turns rotation off: refresh responses then omit
	// refresh_token and the presented one stays valid. False (the
	// default) rotates on every refresh, and the old refresh token is
	// answered invalid_grant from then on.
	KeepRefreshToken bool
	// AllowNoPKCE lets GET /authorize go without code_challenge (the code
	// is then exchanged without code_verifier). False (the default)
	// requires PKCE S256.
	AllowNoPKCE bool
	// Clock reads the time for expiries, authorization codes' included
	// (default the system clock).
	Clock clock.Clock
	// Seed makes token values repeatable.
	Seed uint64
}

// Push is one item received on POST /push/{user}.
type Push struct {
	ID       string
	Data     []byte
	MimeType string
	Tags     []string
	Accounts []string
}

// Stats is what the server has seen.
type Stats struct {
	// Calls counts token endpoint requests, including failed ones.
	Calls int
	// Refreshes counts successful refreshes.
	Refreshes int
	// Rejected counts token requests answered with an OAuth error
	// (invalid_grant, invalid_client, ...), not counting outages.
	Rejected int
	// Reused counts, of those, the ones that presented a rotated
	// refresh token.
	Reused int
	// DataCalls counts data API requests (pulls and pushes), any outcome.
	DataCalls int
	// Unauthorized counts data calls answered 401.
	Unauthorized int
	// Authorizations counts authorization codes issued (consents given
	// on GET /authorize).
	Authorizations int
	// Exchanges counts successful authorization_code grants.
	Exchanges int
	// ExchangeRejected counts authorization_code token requests answered
	// with an OAuth error (also counted in Rejected).
	ExchangeRejected int
}

type refreshGrant struct {
	user    string
	current bool
	code    string // the authorization code the grant stems from, "" for Issue
}

type accessGrant struct {
	user    string
	expires time.Time
	invalid bool
	code    string // as in refreshGrant
}

type dataSet struct {
	body     []byte
	next     string
	modified time.Time
}

// Server is the fake authorization and resource server. Safe for
// concurrent use.
type Server struct {
	opt     Options
	handler http.Handler

	mu       sync.Mutex
	rng      *rand.Rand
	refresh  map[string]*refreshGrant
	access   map[string]*accessGrant
	revoked  map[string]bool
	data     map[string]dataSet
	pushes   map[string][]Push
	outage   int
	outageRA time.Duration
	stats    Stats
	secrets  []string
	codes    map[string]*authCode
	lastAuth url.Values
	users    int // default consenting users named so far
}

// New returns a server; mount Handler on an httptest.Server.
func New(opt Options) *Server {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.AccessLifetime <= 0 {
		opt.AccessLifetime = defaultLife
	}
	if opt.AuthStyle == "" {
		opt.AuthStyle = AuthBasic
	}
	s := &Server{
		opt:     opt,
		rng:     rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x0a2f)),
		refresh: make(map[string]*refreshGrant),
		access:  make(map[string]*accessGrant),
		revoked: make(map[string]bool),
		data:    make(map[string]dataSet),
		pushes:  make(map[string][]Push),
		codes:   make(map[string]*authCode),
	}
	if opt.ClientSecret != "" {
		s.secrets = append(s.secrets, opt.ClientSecret)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.serveAuthorize)
	mux.HandleFunc("POST /token", s.serveToken)
	mux.HandleFunc("GET /data/{user}", s.serveData)
	mux.HandleFunc("POST /push/{user}", s.servePush)
	s.handler = mux
	return s
}

// Handler serves GET /authorize, POST /token, GET /data/{user}?since=...
// and POST /push/{user}.
func (s *Server) Handler() http.Handler { return s.handler }

// Issue is a new consent for user: it lifts a revocation, supersedes the
// user's earlier refresh tokens and returns fresh tokens (what an app
// hands to syncd). A successful authorization_code grant does the same.
func (s *Server) Issue(user string) tokens.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(user, "")
}

// issueLocked is Issue for tokens stemming from code ("" for none).
func (s *Server) issueLocked(user, code string) tokens.Token {
	delete(s.revoked, user)
	for _, g := range s.refresh {
		if g.user == user {
			g.current = false
		}
	}
	at, exp := s.mintAccess(user, code)
	return tokens.Token{
		UserID:       user,
		AccessToken:  at,
		RefreshToken: s.mintRefresh(user, code),
		TokenType:    "Bearer",
		AccessExpiry: exp,
	}
}

// Revoke withdraws user's consent: every refresh token of the user is
// answered invalid_grant and every access token 401, until the next Issue
// or authorization_code grant; the user's authorization codes not yet
// exchanged are forgotten (invalid_grant).
func (s *Server) Revoke(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[user] = true
	s.invalidateLocked(user)
	for v, c := range s.codes {
		if c.user == user && !c.spent {
			delete(s.codes, v)
		}
	}
}

// SetOutage makes the token endpoint answer every request with status
// and, when retryAfter > 0, Retry-After in whole seconds. A 503 carries
// {"error":"temporarily_unavailable"}; other statuses (e.g. 429) an empty
// body. Status 0 ends the outage. The data API is not affected.
func (s *Server) SetOutage(status int, retryAfter time.Duration) {
	s.mu.Lock()
	s.outage, s.outageRA = status, retryAfter
	s.mu.Unlock()
}

// InvalidateAccess makes the data API reject the access tokens user holds
// now with 401 and WWW-Authenticate: Bearer error="invalid_token", as if
// they expired early. Tokens issued afterwards work.
func (s *Server) InvalidateAccess(user string) {
	s.mu.Lock()
	s.invalidateLocked(user)
	s.mu.Unlock()
}

func (s *Server) invalidateLocked(user string) {
	for _, g := range s.access {
		if g.user == user {
			g.invalid = true
		}
	}
}

// SetData sets what GET /data/{user} returns: body, with X-Next-Cursor:
// nextCursor. A pull whose since equals nextCursor gets 204. With
// nextCursor "" no cursor header is sent, Last-Modified is the time of
// this call, and a since (RFC 3339) at or after it gets 204. A user
// without data always gets 204.
func (s *Server) SetData(user string, body []byte, nextCursor string) {
	s.mu.Lock()
	s.data[user] = dataSet{
		body:     append([]byte(nil), body...),
		next:     nextCursor,
		modified: s.opt.Clock.Now().UTC().Truncate(time.Second),
	}
	s.mu.Unlock()
}

// Pushes returns the items pushed for user, oldest first.
func (s *Server) Pushes(user string) []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Push, len(s.pushes[user]))
	copy(out, s.pushes[user])
	return out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Secrets returns the client secret and every token value and
// authorization code issued, for tests that check nothing leaked into logs
// or errors.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

func (s *Server) random(prefix string) string {
	var b [tokenBytes]byte
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	v := prefix + hex.EncodeToString(b[:])
	s.secrets = append(s.secrets, v)
	return v
}

func (s *Server) mintAccess(user, code string) (string, time.Time) {
	v := s.random(accessPrefix)
	exp := s.opt.Clock.Now().Add(s.opt.AccessLifetime).UTC().Truncate(time.Second)
	s.access[v] = &accessGrant{user: user, expires: exp, code: code}
	return v, exp
}

func (s *Server) mintRefresh(user, code string) string {
	v := s.random(refreshPrefix)
	s.refresh[v] = &refreshGrant{user: user, current: true, code: code}
	return v
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Calls++
	status, ra := s.outage, s.outageRA
	s.mu.Unlock()
	if status != 0 {
		if ra > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10))
		}
		if status == http.StatusServiceUnavailable {
			writeJSON(w, status, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		w.WriteHeader(status)
		return
	}

	form, oerr := s.readForm(w, r)
	if oerr == nil {
		oerr = s.authenticate(r, form)
	}
	if oerr == nil {
		var resp tokenResponse
		resp, oerr = s.grant(form)
		if oerr == nil {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Pragma", "no-cache")
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	s.mu.Lock()
	s.stats.Rejected++
	if form.Get("grant_type") == grantCode {
		s.stats.ExchangeRejected++
	}
	s.mu.Unlock()
	if oerr.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, oerr.status, map[string]string{"error": oerr.code, "error_description": oerr.desc})
}

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func badRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

func badClient(desc string) *oauthError {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: desc}
}

func badGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

// readForm reads the form body strictly: the right media type, nothing in
// the query string (RFC 6749 §2.3.1: credentials never in the URI), no
// repeated parameter (§3.2).
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("content type must be application/x-www-form-urlencoded")
	}
	if r.URL.RawQuery != "" {
		return nil, badRequest("parameters must be sent in the request body")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		return nil, badRequest("unreadable request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, badRequest("parameter " + k + " repeated")
		}
	}
	return form, nil
}

// authenticate checks the client exactly per Options.AuthStyle.
func (s *Server) authenticate(r *http.Request, form url.Values) *oauthError {
	hasHeader := r.Header.Get("Authorization") != ""
	_, hasSecret := form["client_secret"]
	if hasHeader && hasSecret {
		return badRequest("more than one client authentication method")
	}
	var id, secret string
	switch s.opt.AuthStyle {
	case AuthPost:
		if hasHeader {
			return badClient("unsupported client authentication method")
		}
		id, secret = form.Get("client_id"), form.Get("client_secret")
	default:
		if hasSecret {
			return badClient("unsupported client authentication method")
		}
		u, p, ok := r.BasicAuth()
		if !ok {
			return badClient("client authentication required")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return badClient("malformed client credentials")
		}
		if fid, ok := form["client_id"]; ok && fid[0] != id {
			return badRequest("client_id does not match the authenticated client")
		}
	}
	if !equal(id, s.opt.ClientID) || !equal(secret, s.opt.ClientSecret) {
		return badClient("client authentication failed")
	}
	return nil
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// grant runs the refresh_token grant (RFC 6749 §6) or hands the
// authorization_code grant to exchange.
func (s *Server) grant(form url.Values) (tokenResponse, *oauthError) {
	switch gt := form.Get("grant_type"); gt {
	case "":
		return tokenResponse{}, badRequest("grant_type is missing")
	case "refresh_token":
	case grantCode:
		return s.exchange(form)
	default:
		return tokenResponse{}, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			desc: "only refresh_token and authorization_code are supported"}
	}
	rt := form.Get("refresh_token")
	if rt == "" {
		return tokenResponse{}, badRequest("refresh_token is missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[rt]
	switch {
	case !ok:
		return tokenResponse{}, badGrant("unknown refresh token")
	case !g.current:
		s.stats.Reused++
		return tokenResponse{}, badGrant("refresh token was rotated or superseded")
	case s.revoked[g.user]:
		return tokenResponse{}, badGrant("consent revoked")
	}
	at, _ := s.mintAccess(g.user, g.code)
	resp := tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.opt.AccessLifetime / time.Second),
	}
	if !s.opt.KeepRefreshToken {
		g.current = false
		resp.RefreshToken = s.mintRefresh(g.user, g.code)
	}
	s.stats.Refreshes++
	return resp, nil
}

// bearer checks the request's access token for user (RFC 6750 §3) and
// answers the failure itself; it reports whether the call may proceed.
// Called with s.mu held.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request, user string) bool {
	s.stats.DataCalls++
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		s.stats.Unauthorized++
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	g, ok := s.access[tok]
	if !ok || g.invalid || s.revoked[g.user] || !s.opt.Clock.Now().Before(g.expires) {
		s.stats.Unauthorized++
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return false
	}
	if g.user != user {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="insufficient_scope"`)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope"})
		return false
	}
	return true
}

func (s *Server) serveData(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bearer(w, r, user) {
		return
	}
	d, ok := s.data[user]
	since := r.URL.Query().Get("since")
	if !ok || caughtUp(d, since) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	if json.Valid(d.body) {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", http.DetectContentType(d.body))
	}
	if d.next != "" {
		h.Set(HeaderNextCursor, d.next)
	}
	h.Set("Last-Modified", d.modified.Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(len(d.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d.body)
}

func caughtUp(d dataSet, since string) bool {
	if since == "" {
		return false
	}
	if d.next != "" {
		return since == d.next
	}
	t, err := time.Parse(time.RFC3339, since)
	return err == nil && !d.modified.After(t)
}

func (s *Server) servePush(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	s.mu.Lock()
	ok := s.bearer(w, r, user)
	s.mu.Unlock()
	if !ok {
		return
	}
	id := r.Header.Get(HeaderItemID)
	if id == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": HeaderItemID + " is missing"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPushBytes))
	if err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, map[string]string{"error": "invalid_request"})
		return
	}
	p := Push{
		ID:       id,
		Data:     body,
		MimeType: r.Header.Get("Content-Type"),
		Tags:     splitList(r.Header.Get(HeaderTags)),
		Accounts: splitList(r.Header.Get(HeaderAccounts)),
	}
	s.mu.Lock()
	s.pushes[user] = append(s.pushes[user], p)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
