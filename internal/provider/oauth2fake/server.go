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
	// RotationGracePeriod is how long after a rotation the refresh token
	// it spent is still accepted, as ORY Hydra's
	// oauth2.grant.refresh_token.rotation_grace_period and Auth0's reuse
	// interval: within it, presenting the grant's immediately previous
	// refresh token again returns a new access and refresh token pair
	// (what Hydra does) and revokes nothing; the tokens the first use
	// returned stay valid too. 0 (the default) is strict, like Hydra
	// without a grace period: presenting a rotated-away refresh token is
	// reuse (RFC 6819 §5.2.2.3), answered invalid_grant, and it revokes
	// the whole grant: its current refresh token and every access token
	// issued from it (data calls get 401). Unlike Hydra, which forgives
	// any spent token of the chain within that token's own grace, only
	// the immediately previous one is forgiven: a client that goes back
	// two rotations is caught.
	RotationGracePeriod time.Duration
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
	// Reused counts, of those, the reuse detections: a refresh token
	// already spent by a rotation presented again, outside the
	// RotationGracePeriod. A refresh token superseded by a new consent
	// but never rotated is not reuse.
	Reused int
	// ReuseRevocations counts grants revoked by a reuse detection (the
	// first detection in a grant revokes it; later ones find it dead).
	ReuseRevocations int
	// GraceRefreshes counts refreshes that presented the immediately
	// previous refresh token within the RotationGracePeriod (also
	// counted in Refreshes).
	GraceRefreshes int
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

// grant is one consent (Issue or an authorization_code grant) and its
// token family: every refresh token rotated from it and every access
// token issued with them.
type grant struct {
	user string
	code string // the authorization code the grant stems from, "" for Issue
	// superseded: a later consent of the user replaced this one; its
	// refresh tokens are answered invalid_grant (its access tokens live
	// on until they expire).
	superseded bool
	// revoked: reuse was detected or the grant's authorization code was
	// replayed; every token of the grant is dead.
	revoked bool
	// prev is the refresh token the latest rotation spent, at prevAt:
	// the one RotationGracePeriod may forgive.
	prev   string
	prevAt time.Time
}

type refreshGrant struct {
	grant *grant
	// rotated: spent by a refresh; presenting it again is reuse.
	rotated bool
}

type accessGrant struct {
	grant   *grant
	expires time.Time
	invalid bool
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
	reuses   map[string]int // reuse detections per user
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
		reuses:  make(map[string]int),
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
// user's earlier grants (their refresh tokens are answered invalid_grant
// from now on) and returns fresh tokens of a new grant (what an app hands
// to syncd). A successful authorization_code grant does the same.
func (s *Server) Issue(user string) tokens.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(user, "")
}

// issueLocked is Issue for tokens stemming from code ("" for none).
func (s *Server) issueLocked(user, code string) tokens.Token {
	delete(s.revoked, user)
	for _, r := range s.refresh {
		if r.grant.user == user {
			r.grant.superseded = true
		}
	}
	g := &grant{user: user, code: code}
	at, exp := s.mintAccess(g)
	return tokens.Token{
		UserID:       user,
		AccessToken:  at,
		RefreshToken: s.mintRefresh(g),
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
	for _, a := range s.access {
		if a.grant.user == user {
			a.invalid = true
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

// Reuses counts reuse detections so far (Stats().Reused): how often a
// client presented a refresh token it had already spent, outside the
// RotationGracePeriod. A client that never presents a token twice keeps
// it at 0.
func (s *Server) Reuses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Reused
}

// ReusesOf counts the reuse detections of user's refresh tokens.
func (s *Server) ReusesOf(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reuses[user]
}

// ReuseRevocations counts grants revoked by reuse detection so far
// (Stats().ReuseRevocations).
func (s *Server) ReuseRevocations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.ReuseRevocations
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

func (s *Server) mintAccess(g *grant) (string, time.Time) {
	v := s.random(accessPrefix)
	exp := s.opt.Clock.Now().Add(s.opt.AccessLifetime).UTC().Truncate(time.Second)
	s.access[v] = &accessGrant{grant: g, expires: exp}
	return v, exp
}

func (s *Server) mintRefresh(g *grant) string {
	v := s.random(refreshPrefix)
	s.refresh[v] = &refreshGrant{grant: g}
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
	r, ok := s.refresh[rt]
	if !ok {
		return tokenResponse{}, badGrant("unknown refresh token")
	}
	g := r.grant
	live := !g.revoked && !g.superseded && !s.revoked[g.user]
	if r.rotated {
		// A spent refresh token again: forgiven only as the grant's
		// immediately previous token within the grace period
		// (Options.RotationGracePeriod); otherwise reuse, which kills
		// the grant.
		if live && s.opt.RotationGracePeriod > 0 && rt == g.prev &&
			s.opt.Clock.Now().Before(g.prevAt.Add(s.opt.RotationGracePeriod)) {
			s.stats.GraceRefreshes++
			return s.refreshLocked(g, ""), nil
		}
		s.stats.Reused++
		s.reuses[g.user]++
		if !g.revoked {
			g.revoked = true
			s.stats.ReuseRevocations++
		}
		return tokenResponse{}, badGrant("refresh token reused; the grant is revoked")
	}
	switch {
	case g.revoked:
		return tokenResponse{}, badGrant("grant revoked")
	case g.superseded:
		return tokenResponse{}, badGrant("refresh token superseded by a newer consent")
	case s.revoked[g.user]:
		return tokenResponse{}, badGrant("consent revoked")
	}
	return s.refreshLocked(g, rt), nil
}

// refreshLocked answers a refresh of grant g: a new access token and,
// unless KeepRefreshToken, a new refresh token, rotating the refresh
// token spend away ("": a grace-period refresh, whose token is already
// rotated).
func (s *Server) refreshLocked(g *grant, spend string) tokenResponse {
	at, _ := s.mintAccess(g)
	resp := tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.opt.AccessLifetime / time.Second),
	}
	if !s.opt.KeepRefreshToken {
		if spend != "" {
			s.refresh[spend].rotated = true
			g.prev, g.prevAt = spend, s.opt.Clock.Now()
		}
		resp.RefreshToken = s.mintRefresh(g)
	}
	s.stats.Refreshes++
	return resp
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
	if !ok || g.invalid || g.grant.revoked || s.revoked[g.grant.user] || !s.opt.Clock.Now().Before(g.expires) {
		s.stats.Unauthorized++
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return false
	}
	if g.grant.user != user {
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
