package digime

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/clip"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/tokens"
)

const (
	testAppID      = "app"
	testContractID = "contract"
	testClientID   = "app_contract"
)

var testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	keysOnce    sync.Once
	contractKey *rsa.PrivateKey // the contract's key
	serverKey   *rsa.PrivateKey // signs token responses, kid "k1"
	otherKey    *rsa.PrivateKey // a key nobody trusts / a rotated key
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		for _, k := range []**rsa.PrivateKey{&contractKey, &serverKey, &otherKey} {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			*k = key
		}
	})
}

// ---- request JWT checks (run in handlers: they return errors) ----

var nonceRE = regexp.MustCompile(`^[A-Za-z0-9]{32}$`)

// checkRequestJWT verifies a request's Bearer JWT with the contract's
// public key (PSS salt length = hash length, checked by hand), its header
// and the shared claims, and returns the claims.
func checkRequestJWT(r *http.Request, clk clock.Clock) (jwt.MapClaims, error) {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, fmt.Errorf("authorization header %q is not Bearer", clip.String(h, 10))
	}
	claims, err := checkPS512(raw, &contractKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if claims["client_id"] != testClientID {
		return nil, fmt.Errorf("client_id %v", claims["client_id"])
	}
	n, _ := claims["nonce"].(string)
	if !nonceRE.MatchString(n) {
		return nil, fmt.Errorf("nonce %q is not 32 alphanumerics", n)
	}
	ts, ok := claims["timestamp"].(float64)
	if !ok || int64(ts) != clk.Now().UnixMilli() {
		return nil, fmt.Errorf("timestamp %v, want %d (ms)", claims["timestamp"], clk.Now().UnixMilli())
	}
	for _, k := range []string{"iat", "exp", "nbf"} {
		if _, ok := claims[k]; ok {
			return nil, fmt.Errorf("claim %s present", k)
		}
	}
	return claims, nil
}

// checkPS512 verifies raw as a PS512 JWT with header exactly
// {alg:PS512, typ:JWT}, also checking by hand that the PSS salt is 64
// bytes (jwt verifies with any salt length).
func checkPS512(raw string, pub *rsa.PublicKey) (jwt.MapClaims, error) {
	tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"PS512"}))
	if err != nil {
		return nil, fmt.Errorf("jwt does not verify: %w", err)
	}
	if len(tok.Header) != 2 || tok.Header["alg"] != "PS512" || tok.Header["typ"] != "JWT" {
		return nil, fmt.Errorf("jwt header %v", tok.Header)
	}
	parts := strings.Split(raw, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	digest := sha512.Sum512([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPSS(pub, crypto.SHA512, digest[:], sig,
		&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA512}); err != nil {
		return nil, fmt.Errorf("pss salt is not the hash length: %w", err)
	}
	return tok.Claims.(jwt.MapClaims), nil
}

// ---- response tokens and key sets ----

func signToken(t testing.TB, key *rsa.PrivateKey, kid, jku string, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodPS512, claims)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	if jku != "" {
		tk.Header["jku"] = jku
	}
	s, err := tk.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwksJSON(keys map[string]*rsa.PublicKey, withPEM bool) []byte {
	type jwkOut struct {
		Kid string `json:"kid"`
		Kty string `json:"kty"`
		N   string `json:"n"`
		E   string `json:"e"`
		PEM string `json:"pem,omitempty"`
	}
	var out struct {
		Keys []jwkOut `json:"keys"`
	}
	out.Keys = []jwkOut{}
	for kid, pub := range keys {
		k := jwkOut{Kid: kid, Kty: "RSA",
			N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
		if withPEM {
			k.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}))
		}
		out.Keys = append(out.Keys, k)
	}
	b, _ := json.Marshal(out)
	return b
}

// ---- file encryption, written independently of decrypt.go ----

// encryptFile encrypts plain as digi.me does: a random 32-byte AES key
// wrapped with RSA-OAEP-SHA1 for pub, a random IV, AES-256-CBC with
// PKCS#7 padding.
func encryptFile(t testing.TB, pub *rsa.PublicKey, plain []byte) []byte {
	t.Helper()
	dsk := make([]byte, 32)
	iv := make([]byte, 16)
	if _, err := rand.Read(dsk); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(iv); err != nil {
		t.Fatal(err)
	}
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, dsk, nil)
	if err != nil {
		t.Fatal(err)
	}
	pad := 16 - len(plain)%16
	padded := append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(dsk)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	return append(append(wrapped, iv...), ct...)
}

func compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch kind {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "brotli":
		w = brotli.NewWriter(&buf)
	default:
		return data
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xMetadata(metadata any, compression string) string {
	m := map[string]any{"metadata": metadata}
	if compression != "" {
		m["compression"] = compression
	}
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- token source ----

// testSource is a TokenSource: Token returns tok; Rejected records the
// rejected token and moves to the next of next.
type testSource struct {
	mu        sync.Mutex
	tok       tokens.Token
	next      []tokens.Token
	rejected  []tokens.Token
	tokenErr  error
	rejectErr error
}

func (s *testSource) Token(context.Context) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenErr != nil {
		return tokens.Token{}, s.tokenErr
	}
	return s.tok, nil
}

func (s *testSource) Rejected(_ context.Context, t tokens.Token) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = append(s.rejected, t)
	if s.rejectErr != nil {
		return tokens.Token{}, s.rejectErr
	}
	if len(s.next) > 0 {
		s.tok, s.next = s.next[0], s.next[1:]
	}
	return s.tok, nil
}

func (s *testSource) rejections() []tokens.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tokens.Token(nil), s.rejected...)
}

func userToken(access, refresh string) tokens.Token {
	return tokens.Token{UserID: "u1", AccessToken: access, RefreshToken: refresh,
		AccessExpiry: testEpoch.Add(time.Hour)}
}

// ---- the fake API ----

// fault is an answer given instead of the real one.
type fault struct {
	status int
	body   string
	header map[string]string
	drop   bool // close the connection without answering
}

// apiFile is a file in the library.
type apiFile struct {
	name        string
	updated     int64
	data        []byte // plaintext
	compression string
	metadata    any
	corrupt     bool // serve bytes that do not decrypt
}

// reqRecord is one request the API saw.
type reqRecord struct {
	op, nonce, access string
}

// api is a small digi.me for unit tests. Handlers report problems with
// t.Errorf (never Fatal: they run on server goroutines).
type api struct {
	t   *testing.T
	clk *clock.Fake
	srv *httptest.Server

	mu         sync.Mutex
	jwks       map[string]*rsa.PublicKey
	jwksLater  map[string]*rsa.PublicKey // served from the second fetch on, if set
	jwksPEM    bool
	jwksHits   int
	tokenHits  int
	tokenFunc  func(w http.ResponseWriter, claims jwt.MapClaims) // oauth/token answer
	issued     int
	access     map[string]bool // accepted access tokens; nil accepts all
	unauthBody string          // body of a 401 for an unknown access token
	states     []string        // file-list states in order; the last repeats
	details    map[string]any
	files      []apiFile
	polls      int
	onPoll     func(n int)
	faults     map[string][]fault // by op: "jwks", "token", "trigger", "list", "file", "import"
	requests   []reqRecord
	triggerReq []byte
	pushes     []pushRecord
}

type pushRecord struct {
	contentType, fileDescriptor, access string
	body                                []byte
}

func newAPI(t *testing.T) *api {
	t.Helper()
	testKeys(t)
	a := &api{
		t:          t,
		clk:        clock.NewFake(testEpoch),
		jwks:       map[string]*rsa.PublicKey{"k1": &serverKey.PublicKey},
		jwksPEM:    true,
		unauthBody: `{"error":{"code":"InvalidToken","message":"The token (access_token) is invalid"}}`,
		states:     []string{stateCompleted},
		faults:     map[string][]fault{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks/oauth", a.handleJWKS)
	mux.HandleFunc("POST /oauth/token", a.handleToken)
	mux.HandleFunc("POST /permission-access/trigger", a.data("trigger", a.handleTrigger))
	mux.HandleFunc("GET /permission-access/query/{key}", a.data("list", a.handleList))
	mux.HandleFunc("GET /permission-access/query/{key}/{name}", a.data("file", a.handleFile))
	mux.HandleFunc("POST /permission-access/import", a.data("import", a.handleImport))
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// client returns a Client for the API with fast polls and retries.
func (a *api) client(mods ...func(*Config)) *Client {
	a.t.Helper()
	cfg := Config{
		BaseURL: a.srv.URL, AppID: testAppID, ContractID: testContractID, PrivateKey: contractKey,
		PollInterval: time.Millisecond, RetryBackoff: time.Millisecond, Clock: a.clk,
		HTTPClient: a.srv.Client(),
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

func (a *api) fault(op string, f ...fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults[op] = append(a.faults[op], f...)
}

// takeFault answers with the next queued fault for op, if any.
func (a *api) takeFault(op string, w http.ResponseWriter) bool {
	a.mu.Lock()
	q := a.faults[op]
	if len(q) == 0 {
		a.mu.Unlock()
		return false
	}
	f := q[0]
	a.faults[op] = q[1:]
	a.mu.Unlock()
	serveFault(a.t, w, f)
	return true
}

// serveFault answers with f.
func serveFault(t *testing.T, w http.ResponseWriter, f fault) {
	if f.drop {
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("cannot hijack")
			return
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range f.header {
		w.Header().Set(k, v)
	}
	if f.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

func (a *api) record(op, nonce, access string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, reqRecord{op: op, nonce: nonce, access: access})
}

func (a *api) recorded(op string) []reqRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []reqRecord
	for _, r := range a.requests {
		if r.op == op {
			out = append(out, r)
		}
	}
	return out
}

func (a *api) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		a.t.Error("jwks fetched with an Authorization header")
	}
	a.mu.Lock()
	a.jwksHits++
	keys := a.jwks
	if a.jwksHits > 1 && a.jwksLater != nil {
		keys = a.jwksLater
	}
	withPEM := a.jwksPEM
	a.mu.Unlock()
	if a.takeFault("jwks", w) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(jwksJSON(keys, withPEM))
}

func (a *api) handleToken(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.tokenHits++
	a.mu.Unlock()
	claims, err := checkRequestJWT(r, a.clk)
	if err != nil {
		a.t.Errorf("oauth/token: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	a.record("token", claims["nonce"].(string), "")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		a.t.Errorf("oauth/token: content type %q", ct)
	}
	if b, _ := io.ReadAll(r.Body); len(b) != 0 {
		a.t.Errorf("oauth/token: body %q, want none", b)
	}
	if _, ok := claims["access_token"]; ok {
		a.t.Error("oauth/token: access_token claim sent")
	}
	if claims["grant_type"] != "refresh_token" || claims["refresh_token"] == "" {
		a.t.Errorf("oauth/token: grant_type %v refresh_token set %v", claims["grant_type"], claims["refresh_token"] != nil)
	}
	if a.takeFault("token", w) {
		return
	}
	a.mu.Lock()
	f := a.tokenFunc
	a.issued++
	n := a.issued
	a.mu.Unlock()
	if f != nil {
		f(w, claims)
		return
	}
	a.writeToken(w, serverKey, "k1", a.srv.URL+"/jwks/oauth", a.payload(n))
}

// payload is a token payload with access "access-n", refresh
// "refresh-n", expiries in seconds.
func (a *api) payload(n int) jwt.MapClaims {
	return jwt.MapClaims{
		"access_token":  map[string]any{"value": fmt.Sprintf("access-%d", n), "expires_on": a.clk.Now().Add(time.Hour).Unix()},
		"refresh_token": map[string]any{"value": fmt.Sprintf("refresh-%d", n), "expires_on": a.clk.Now().Add(30 * 24 * time.Hour).Unix()},
		"consentid":     "consent-1",
		"token_type":    "Bearer",
		"sub":           "digime-user",
	}
}

func (a *api) writeToken(w http.ResponseWriter, key *rsa.PrivateKey, kid, jku string, claims jwt.MapClaims) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"token": signToken(a.t, key, kid, jku, claims)})
}

// data wraps a data-call handler: JWT check, access check, faults.
func (a *api) data(op string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		claims, err := checkRequestJWT(r, a.clk)
		if err != nil {
			a.t.Errorf("%s: %v", op, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		access, _ := claims["access_token"].(string)
		if access == "" {
			a.t.Errorf("%s: no access_token claim", op)
		}
		a.record(op, claims["nonce"].(string), access)
		a.mu.Lock()
		ok := a.access == nil || a.access[access]
		body := a.unauthBody
		a.mu.Unlock()
		if !ok {
			if body != "" {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, body)
			return
		}
		if a.takeFault(op, w) {
			return
		}
		h(w, r)
	}
}

func (a *api) handleTrigger(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.triggerReq = b
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"session":{"key":"sess/1","expiry":%d}}`, a.clk.Now().Add(time.Hour).UnixMilli())
}

func (a *api) handleList(w http.ResponseWriter, r *http.Request) {
	if key := r.PathValue("key"); key != "sess/1" {
		a.t.Errorf("file list: session key %q", key)
	}
	a.mu.Lock()
	a.polls++
	n := a.polls
	state := a.states[min(n, len(a.states))-1]
	onPoll := a.onPoll
	list := []map[string]any{}
	for _, f := range a.files {
		list = append(list, map[string]any{"name": f.name, "updatedDate": f.updated, "objectCount": 1})
	}
	details := a.details
	a.mu.Unlock()
	if onPoll != nil {
		onPoll(n)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"status":   map[string]any{"state": state, "details": details},
		"fileList": list,
	})
}

func (a *api) handleFile(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != "application/octet-stream" {
		a.t.Errorf("file: accept %q", r.Header.Get("Accept"))
	}
	name := r.PathValue("name")
	a.mu.Lock()
	var f *apiFile
	for i := range a.files {
		if a.files[i].name == name {
			f = &a.files[i]
		}
	}
	a.mu.Unlock()
	if f == nil {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"NotFound","message":"no such file"}}`)
		return
	}
	body := encryptFile(a.t, &contractKey.PublicKey, compress(a.t, f.compression, f.data))
	if f.corrupt {
		body[len(body)-1] ^= 0xff
	}
	w.Header().Set("x-metadata", xMetadata(f.metadata, f.compression))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

func (a *api) handleImport(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	claims, _ := checkRequestJWT(r, a.clk)
	access, _ := claims["access_token"].(string)
	a.mu.Lock()
	a.pushes = append(a.pushes, pushRecord{
		contentType:    r.Header.Get("Content-Type"),
		fileDescriptor: r.Header.Get("FileDescriptor"),
		access:         access,
		body:           b,
	})
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok","ignored":true}`)
}

// ---- assertions ----

func refreshErr(t *testing.T, err error) *tokens.RefreshError {
	t.Helper()
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *tokens.RefreshError", err, err)
	}
	return re
}

// waitCtx is a context that fails the test if it is still running after
// a while, so a hang shows as a failure rather than a timeout.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type rsaPub = rsa.PublicKey

func (a *api) jwksCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.jwksHits
}

func (a *api) tokenCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokenHits
}
