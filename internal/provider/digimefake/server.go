package digimefake

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/tokens"
)

// PathPrefix is where the API lives; a client's base URL is the server's
// URL plus PathPrefix.
const PathPrefix = "/v1.7/"

const (
	defaultAccessLifetime  = time.Hour
	defaultRefreshLifetime = 30 * 24 * time.Hour
	defaultMaxSkew         = 5 * time.Minute
	defaultKeyID           = "fake-1"

	// sessionLifetime is how long a pull session key stays usable.
	sessionLifetime = time.Hour

	// contractKeyBytes: the encrypted file layout starts with a 256-byte
	// wrapped key, so the contract key must be RSA-2048.
	contractKeyBytes = 256

	accessPrefix  = "dm-at-"
	refreshPrefix = "dm-rt-"

	jwksPath = PathPrefix + "jwks/oauth"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	// AppID and ContractID identify the app; request JWTs must carry
	// client_id = AppID + "_" + ContractID. Both required.
	AppID, ContractID string
	// ContractKey is the contract's public key (RSA-2048, required): it
	// verifies request and FileDescriptor JWTs and wraps file keys.
	ContractKey *rsa.PublicKey
	// SigningKey is the server's own key for the token JWTs it returns and
	// the JWKS it serves. nil: New generates an RSA-2048 key (which takes a
	// moment; tests that build many servers can share one).
	SigningKey *rsa.PrivateKey
	// KeyID is the signing key's kid; default "fake-1".
	KeyID string
	// AccessLifetime of issued access tokens; default 1h.
	AccessLifetime time.Duration
	// RefreshLifetime of issued refresh tokens; default 30 days.
	RefreshLifetime time.Duration
	// RotationGracePeriod is how long after a rotation the refresh token
	// it spent is still accepted, as ORY Hydra's
	// oauth2.grant.refresh_token.rotation_grace_period and Auth0's reuse
	// interval: within it, presenting the consent's immediately previous
	// refresh token again returns a new access and refresh token pair
	// (what Hydra does) and revokes nothing; the tokens the first use
	// returned stay valid too. 0 (the default) is strict: a
	// rotated-away refresh token presented again is reuse (RFC 6819
	// §5.2.2.3), answered 401 InvalidToken, and it revokes the whole
	// consent's token family: its current refresh token and every access
	// token issued from it (data calls and oauth/token/reference get 401
	// InvalidToken "The token (access_token) is invalid"). Unlike Hydra,
	// which forgives any spent token of the chain within that token's own
	// grace, only the immediately previous one is forgiven. Whether
	// digi.me itself detects reuse is unconfirmed; the fake is as strict
	// as the strictest OAuth server so a client that spends a refresh
	// token twice is caught.
	RotationGracePeriod time.Duration
	// MaxSkew is the allowed |now - timestamp claim| of a request JWT;
	// default 5m. Nonces are remembered at least that long.
	MaxSkew time.Duration
	// PendingPolls and RunningPolls: how many file-list polls of a session
	// answer "pending", then "running", before the final state. 0 means
	// the default 1; a negative value means none.
	PendingPolls, RunningPolls int
	// Latency is added to every request (honours the request's context).
	Latency time.Duration
	// FailRate is the fraction of requests (all but the JWKS and the
	// onboarding pages) answered 500 InternalServerError before anything
	// else happens. 0 disables.
	FailRate float64
	// Seed makes the FailRate draws repeatable.
	Seed uint64
	// Clock gives the time for token expiry, timestamps and sessions;
	// default clock.Real{}.
	Clock clock.Clock
}

// Stats counts what the server saw. Every field counts requests.
type Stats struct {
	// Refreshes: successful refresh_token grants.
	Refreshes int
	// RefreshRejected: refresh grants answered 401 InvalidToken (unknown,
	// rotated-out, revoked or expired refresh token).
	RefreshRejected int
	// Reused: of those, the reuse detections: a refresh token already
	// spent by a rotation presented again, outside the
	// RotationGracePeriod.
	Reused int
	// ReuseRevocations: token families (consents) revoked by a reuse
	// detection; the first detection in a family revokes it, later ones
	// find it dead.
	ReuseRevocations int
	// GraceRefreshes: refreshes that presented the immediately previous
	// refresh token within the RotationGracePeriod (also counted in
	// Refreshes).
	GraceRefreshes int
	// DataCalls: trigger, file list, file, metadata (HEAD) and import
	// requests whose request JWT passed, whatever happened next.
	DataCalls int
	// Triggers: sessions started (202).
	Triggers int
	// FilesServed: files downloaded (GET, not HEAD).
	FilesServed int
	// Imports: items accepted by permission-access/import.
	Imports int
	// Rejected401: data calls rejected for an invalid, invalidated or
	// expired access token.
	Rejected401 int
	// BadSignature: request or FileDescriptor JWTs whose signature did not
	// verify with the contract key (or used another algorithm).
	BadSignature int
	// BadJWT: missing or malformed request JWTs and claims (no bearer, not
	// a JWT, nonce not 32 characters, no timestamp).
	BadJWT int
	// BadClient: request JWTs with the wrong client_id.
	BadClient int
	// StaleTimestamp: request JWTs whose timestamp was outside MaxSkew.
	StaleTimestamp int
	// ReusedNonce: request JWTs whose nonce had been used before.
	ReusedNonce int
	// Faults: requests answered by FailRate or SetOutage.
	Faults int
	// Authorizations: preauthorization codes issued by oauth/authorize.
	Authorizations int
	// References: reference codes issued by oauth/token/reference.
	References int
	// Consents: onboarding visits (authorize or user-reauth) that
	// redirected with an authorization code.
	Consents int
	// Denials: onboarding visits with consent=deny.
	Denials int
	// Exchanges: successful authorization_code grants.
	Exchanges int
	// ExchangeRejected: authorization_code grants refused (400
	// InvalidRequest or InvalidGrant: no code or verifier, an unknown,
	// used or expired code, a verifier that does not match).
	ExchangeRejected int
}

// File is one item in a user's library, as the user's pulls see it.
type File struct {
	// Name is the file name in the file list and the download path.
	Name string
	// Data is the plain content; the server compresses and encrypts it.
	Data []byte
	// Metadata goes into x-metadata's "metadata", e.g. mapped
	// {"objectType":"post","serviceName":"twitter"} or raw
	// {"mimetype":"application/json","accounts":[...]}. Its objectType,
	// objectCount, objectVersion, serviceGroup, serviceName and schema
	// keys are also copied into the file list entry.
	Metadata json.RawMessage
	// MimeType is used only when Metadata is empty: the metadata is then
	// {"mimetype": MimeType}. Both empty: {}.
	MimeType string
	// Compression is "", "gzip" or "brotli".
	Compression string
	// Updated is the file list's updatedDate and the last-modified header;
	// zero: the time AddFile was called.
	Updated time.Time
}

// Import is one item pushed with permission-access/import.
type Import struct {
	Data     []byte
	MimeType string
	Accounts []string
	Tags     []string
}

// Server is the fake digi.me API. Safe for concurrent use.
type Server struct {
	opt      Options
	clientID string
	key      *rsa.PrivateKey
	kid      string
	mux      *http.ServeMux

	mu       sync.Mutex
	rng      *mrand.Rand
	access   map[string]*accessRec
	refresh  map[string]*refreshRec
	users    map[string]*userState
	sessions map[string]*session
	nonces   map[string]time.Time // nonce -> when it may be forgotten
	stats    Stats
	reuses   map[string]int // reuse detections per user
	rotated  map[string]int // successful refreshes per user
	secrets  []string
	outage   int
	outageRA time.Duration
	// consents are pending consents by preauthorization or reference
	// code; authCodes are authorization codes from the onboarding pages.
	consents  map[string]*consentReq
	authCodes map[string]*authCode
	libraries int // fresh library names handed out ("library-<n>")
}

// family is one completed consent (Issue or an authorization_code grant)
// and every token issued from it by refreshes.
type family struct {
	// revoked: reuse was detected; every token of the family is dead.
	revoked bool
	// prev is the refresh token the latest rotation spent, at prevAt:
	// the one RotationGracePeriod may forgive.
	prev   string
	prevAt time.Time
}

type accessRec struct {
	user    string
	fam     *family
	expires time.Time
	invalid bool
	// revoked: issued before a Revoke of its user; data calls still
	// accept it, oauth/token/reference does not.
	revoked bool
}

type refreshRec struct {
	user    string
	fam     *family
	expires time.Time
	rotated bool // spent by a refresh: presenting it again is reuse
	dead    bool // revoked
	expired bool // ExpireRefresh
}

type userState struct {
	revoked bool
	files   []File
	partial []partialAccount
	imports []Import
}

type partialAccount struct {
	id     string
	reauth bool
}

type session struct {
	user    string
	polls   int
	expires time.Time
}

// New checks opt, fills in defaults and returns a Server. Unless
// opt.SigningKey is set it generates the server's RSA-2048 signing key.
func New(opt Options) (*Server, error) {
	switch {
	case opt.AppID == "" || opt.ContractID == "":
		return nil, errors.New("digimefake: app id and contract id are required")
	case opt.ContractKey == nil:
		return nil, errors.New("digimefake: contract key is required")
	case opt.ContractKey.Size() != contractKeyBytes:
		return nil, fmt.Errorf("digimefake: contract key is %d bits, want 2048 (the file layout has a 256-byte wrapped key)", opt.ContractKey.N.BitLen())
	case opt.AccessLifetime < 0:
		return nil, fmt.Errorf("digimefake: access lifetime %v must be >= 0", opt.AccessLifetime)
	case opt.RefreshLifetime < 0:
		return nil, fmt.Errorf("digimefake: refresh lifetime %v must be >= 0", opt.RefreshLifetime)
	case opt.MaxSkew < 0:
		return nil, fmt.Errorf("digimefake: max skew %v must be >= 0", opt.MaxSkew)
	case opt.Latency < 0:
		return nil, fmt.Errorf("digimefake: latency %v must be >= 0", opt.Latency)
	case opt.FailRate < 0 || opt.FailRate > 1:
		return nil, fmt.Errorf("digimefake: fail rate %v must be in [0, 1]", opt.FailRate)
	}
	if opt.AccessLifetime == 0 {
		opt.AccessLifetime = defaultAccessLifetime
	}
	if opt.RefreshLifetime == 0 {
		opt.RefreshLifetime = defaultRefreshLifetime
	}
	if opt.MaxSkew == 0 {
		opt.MaxSkew = defaultMaxSkew
	}
	opt.PendingPolls = pollDefault(opt.PendingPolls)
	opt.RunningPolls = pollDefault(opt.RunningPolls)
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.KeyID == "" {
		opt.KeyID = defaultKeyID
	}
	key := opt.SigningKey
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("digimefake: generate signing key: %w", err)
		}
	}
	s := &Server{
		opt:      opt,
		clientID: opt.AppID + "_" + opt.ContractID,
		key:      key,
		kid:      opt.KeyID,
		rng:      mrand.New(mrand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15)),
		access:   make(map[string]*accessRec),
		refresh:  make(map[string]*refreshRec),
		users:    make(map[string]*userState),
		sessions: make(map[string]*session),
		nonces:   make(map[string]time.Time),
		reuses:   make(map[string]int),
		rotated:  make(map[string]int),

		consents:  make(map[string]*consentReq),
		authCodes: make(map[string]*authCode),
	}
	s.mux = s.routes()
	return s, nil
}

func pollDefault(n int) int {
	switch {
	case n == 0:
		return 1
	case n < 0:
		return 0
	}
	return n
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET "+jwksPath, s.handleJWKS)
	m.HandleFunc("POST "+PathPrefix+"oauth/token", s.handleToken)
	m.HandleFunc("POST "+PathPrefix+"permission-access/trigger", s.handleTrigger)
	// GET patterns also match HEAD.
	m.HandleFunc("GET "+PathPrefix+"permission-access/query/{session}", s.handleFileList)
	m.HandleFunc("GET "+PathPrefix+"permission-access/query/{session}/{file...}", s.handleFile)
	m.HandleFunc("POST "+PathPrefix+"permission-access/import", s.handleImport)
	m.HandleFunc("POST "+PathPrefix+"oauth/authorize", s.handleAuthorize)
	m.HandleFunc("POST "+PathPrefix+"oauth/token/reference", s.handleReference)
	m.HandleFunc("GET "+OnboardPrefix+pageAuthorize, s.handleOnboard(pageAuthorize))
	m.HandleFunc("GET "+OnboardPrefix+pageReauth, s.handleOnboard(pageReauth))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", "no such endpoint in the fake: "+r.Method+" "+r.URL.Path)
	})
	return m
}

// Handler serves the API under PathPrefix ("/v1.7/") and the onboarding
// pages under OnboardPrefix ("/apps/saas/"): a client's base URL is the
// server URL + PathPrefix, its onboard URL the server URL + OnboardPrefix.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if d := s.opt.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client is gone; nobody reads an answer.
			t.Stop()
			return
		}
	}
	if r.URL.Path != jwksPath && !strings.HasPrefix(r.URL.Path, OnboardPrefix) && s.fault(w) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// fault answers the request if an outage is on or the FailRate draw says
// so.
func (s *Server) fault(w http.ResponseWriter) bool {
	s.mu.Lock()
	status, ra := s.outage, s.outageRA
	fail := status == 0 && s.opt.FailRate > 0 && s.rng.Float64() < s.opt.FailRate
	if status != 0 || fail {
		s.stats.Faults++
	}
	s.mu.Unlock()
	switch {
	case status != 0:
		if ra > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10))
		}
		writeError(w, status, statusCode(status), "outage: "+strings.ToLower(http.StatusText(status)))
		return true
	case fail:
		writeError(w, http.StatusInternalServerError, "InternalServerError", "injected failure")
		return true
	}
	return false
}

// statusCode turns an HTTP status into an error code: 503 ->
// "ServiceUnavailable".
func statusCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "ServerError"
	}
	return strings.NewReplacer(" ", "", "-", "", "'", "").Replace(text)
}

// Issue completes a consent for user, as exchangeCodeForToken would: it
// issues fresh access and refresh tokens, clears an earlier Revoke and
// returns the token. Tokens issued before stay as they are. The
// authorization_code grant (see OnboardPrefix) does the same.
func (s *Server) Issue(user string) tokens.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grantLocked(user, s.opt.Clock.Now())
}

// grantLocked is a completed consent: it clears a Revoke and issues
// tokens of a new family.
func (s *Server) grantLocked(user string, now time.Time) tokens.Token {
	s.user(user).revoked = false
	return s.issueLocked(user, &family{}, now)
}

// Revoke withdraws user's consent: every refresh token of the user is dead
// from now on (401 InvalidToken "The token (refresh_token) is invalid"),
// until Issue or a new authorization gives the user new ones. Access
// tokens keep working for data calls until they expire (use
// InvalidateAccess to stop them), but oauth/token/reference refuses every
// access token issued before the Revoke (401 InvalidToken "The token
// (access_token) is invalid"), so a client must fall back to a full
// authorization (oauth/authorize). Compare ExpireRefresh, after which the
// recovery flow works.
func (s *Server) Revoke(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(user).revoked = true
	for _, rec := range s.refresh {
		if rec.user == user {
			rec.dead = true
		}
	}
	for _, rec := range s.access {
		if rec.user == user {
			rec.revoked = true
		}
	}
}

// ExpireRefresh makes user's refresh tokens issued so far expire now: a
// refresh with one is answered 401 InvalidToken "The token
// (refresh_token) is expired", as when RefreshLifetime runs out. Unlike
// Revoke it leaves the user's consent and access tokens alone, so the
// recovery flow works: oauth/token/reference accepts the user's access
// token (expired or not), and consent on the user-reauth page brings
// back the same library. Tokens issued later work.
func (s *Server) ExpireRefresh(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.refresh {
		if rec.user == user {
			rec.expired = true
		}
	}
}

// InvalidateAccess makes every access token issued to user so far fail
// data calls with 401 InvalidToken "The token (access_token) is invalid".
// Tokens issued later (by a refresh or Issue) work.
func (s *Server) InvalidateAccess(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.access {
		if rec.user == user {
			rec.invalid = true
		}
	}
}

// SetOutage makes every request but the JWKS and the onboarding pages
// answer status with a JSON
// error body (code from the status text, e.g. "ServiceUnavailable",
// "TooManyRequests") and, when retryAfter > 0, a Retry-After header in
// whole seconds (rounded up). status 0 ends the outage.
func (s *Server) SetOutage(status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage, s.outageRA = status, retryAfter
}

// AddFile adds f to user's library, or replaces the file of the same name.
// Sessions in progress see the change on their next poll. It panics on an
// empty name, an unknown compression or metadata that is not JSON.
func (s *Server) AddFile(user string, f File) {
	validFile(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Updated.IsZero() {
		f.Updated = s.opt.Clock.Now()
	}
	f.Data = clone(f.Data)
	f.Metadata = clone(f.Metadata)
	u := s.user(user)
	for i := range u.files {
		if u.files[i].Name == f.Name {
			u.files[i] = f
			return
		}
	}
	u.files = append(u.files, f)
}

// SetPartial makes user's pulls end "partial", with accountID's details
// {state:"partial", error:{code:"ServiceAuthorizationError",
// statusCode:511, message, reauth}}. Call it once per failing account;
// ClearPartial undoes it.
func (s *Server) SetPartial(user, accountID string, reauth bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.user(user)
	for i := range u.partial {
		if u.partial[i].id == accountID {
			u.partial[i].reauth = reauth
			return
		}
	}
	u.partial = append(u.partial, partialAccount{id: accountID, reauth: reauth})
}

// ClearPartial lets user's pulls complete again.
func (s *Server) ClearPartial(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(user).partial = nil
}

// Imports returns the items pushed for user, oldest first.
func (s *Server) Imports(user string) []Import {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	if u == nil {
		return nil
	}
	out := make([]Import, len(u.imports))
	for i, im := range u.imports {
		out[i] = Import{
			Data:     clone(im.Data),
			MimeType: im.MimeType,
			Accounts: clone(im.Accounts),
			Tags:     clone(im.Tags),
		}
	}
	return out
}

// Stats returns the counters so far.
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

// Live reports whether a refresh presenting refreshToken would be
// accepted now: issued here, not spent by a rotation, not revoked and not
// expired. A client that lost no grant holds, for every user, a live one.
func (s *Server) Live(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.refresh[refreshToken]
	return rec != nil && !rec.rotated && s.refreshableLocked(rec, s.opt.Clock.Now())
}

// RefreshesOf counts user's successful refreshes (in Stats().Refreshes).
func (s *Server) RefreshesOf(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotated[user]
}

// ReuseRevocations counts token families revoked by reuse detection so
// far (Stats().ReuseRevocations).
func (s *Server) ReuseRevocations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.ReuseRevocations
}

// Secrets returns every access and refresh token value, preauthorization
// code, reference code and authorization code issued so far, so a test
// can check none of them leaked into logs, errors or metrics.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.secrets)
}

func (s *Server) user(name string) *userState {
	u := s.users[name]
	if u == nil {
		u = &userState{}
		s.users[name] = u
	}
	return u
}

// issueLocked issues a new access and refresh token pair of family fam
// for user. Expiries are whole seconds, as the wire format carries them.
func (s *Server) issueLocked(user string, fam *family, now time.Time) tokens.Token {
	t := tokens.Token{
		UserID:        user,
		AccessToken:   accessPrefix + rand.Text(),
		RefreshToken:  refreshPrefix + rand.Text(),
		TokenType:     "Bearer",
		ConsentID:     consentID(user),
		AccessExpiry:  time.Unix(now.Add(s.opt.AccessLifetime).Unix(), 0).UTC(),
		RefreshExpiry: time.Unix(now.Add(s.opt.RefreshLifetime).Unix(), 0).UTC(),
	}
	s.access[t.AccessToken] = &accessRec{user: user, fam: fam, expires: t.AccessExpiry}
	s.refresh[t.RefreshToken] = &refreshRec{user: user, fam: fam, expires: t.RefreshExpiry}
	s.secrets = append(s.secrets, t.AccessToken, t.RefreshToken)
	return t
}

func consentID(user string) string { return "consent-" + user }

func clone[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}

// apiError is the digi.me error body.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Reference string `json:"reference"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: apiErrorBody{
		Code:      code,
		Message:   message,
		Reference: "fake-" + strings.ToLower(rand.Text()[:12]),
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "digimefake: encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ListenAndServe runs a Server built from opt on addr until ctx is done,
// then shuts it down. It writes one line per request (method, path,
// status, duration; never tokens) to log, which may be nil. Users get
// tokens only through Issue, so a command that needs users should call New,
// Issue and Serve itself.
func ListenAndServe(ctx context.Context, addr string, opt Options, log io.Writer) error {
	s, err := New(opt)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("digimefake: listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln, log)
}

// Serve serves the API on ln until ctx is done, then shuts down (waiting
// up to 5s for requests in flight) and returns nil. It closes ln. The
// first line written to log names the base URL; then one line per request.
func (s *Server) Serve(ctx context.Context, ln net.Listener, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	lw := &lockedWriter{w: log}
	srv := &http.Server{
		Handler:           logRequests(s.Handler(), lw),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(lw, "digimefake: serving the digi.me API at http://%s%s\n", ln.Addr(), PathPrefix)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("digimefake: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func logRequests(h http.Handler, log io.Writer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		fmt.Fprintf(log, "digimefake: %s %s %d %s\n", r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Microsecond))
	})
}
