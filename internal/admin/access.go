package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// Scope is what a credential may do on /v1.
type Scope int

const (
	// Read allows the /v1 reads (GET) only.
	Read Scope = iota + 1
	// Write allows every /v1 request, reads included.
	Write
)

// Credential is one bearer token /v1 accepts.
type Credential struct {
	// Name is logged with each write and refusal ("read", "write"); the
	// token never is.
	Name  string
	Token string
	Scope Scope
}

// credential is a Credential as the server keeps it: the token's SHA-256
// only, so requests are compared in constant time whatever their length
// and the server holds no token value.
type credential struct {
	name  string
	sum   [32]byte
	scope Scope
}

func hashCredentials(cs []Credential) []credential {
	out := make([]credential, 0, len(cs))
	for _, c := range cs {
		if c.Token != "" {
			out = append(out, credential{name: c.Name, sum: sha256.Sum256([]byte(c.Token)), scope: c.Scope})
		}
	}
	return out
}

// SetCredentials replaces the credentials /v1 accepts (a token file was
// changed or the config reloaded); none closes /v1. Requests in flight
// keep the credentials they were checked with.
func (s *Server) SetCredentials(cs []Credential) {
	h := hashCredentials(cs)
	s.creds.Store(&h)
}

// authenticate returns the credential whose token the request carries,
// or nil. Every configured credential is compared, in constant time.
func (s *Server) authenticate(r *http.Request) *credential {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(tok))
	var found *credential
	cs := *s.creds.Load()
	for i := range cs {
		if subtle.ConstantTimeCompare(sum[:], cs[i].sum[:]) == 1 {
			found = &cs[i]
		}
	}
	return found
}

// access is what a route needs.
type access int

const (
	// public: nothing; the public authorization callback (the state is
	// its credential) answers whatever Host the browser was sent to.
	public access = iota
	// open: a Host the admin server answers to (health, readiness,
	// metrics).
	open
	// read and write: that Host and a credential of the scope.
	read
	write
)

// Log field names.
const (
	fieldRoute      = "route"
	fieldMethod     = "method"
	fieldPath       = "path"
	fieldCredential = "credential"
	fieldStatus     = "status"
	fieldRemote     = "remote"
)

// handle registers h for pattern behind the checks a needs.
func (s *Server) handle(pattern string, a access, h http.HandlerFunc) {
	if a == public {
		s.mux.HandleFunc(pattern, h)
		return
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			writeErr(w, http.StatusMisdirectedRequest, "unknown Host: add it to admin.allowed_hosts")
			return
		}
		if a == open {
			h(w, r)
			return
		}
		c := s.authenticate(r)
		switch {
		case c == nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="syncd"`)
			msg := "missing or wrong bearer token"
			if len(*s.creds.Load()) == 0 {
				msg = "the admin API is closed: set admin.read_token_file or admin.write_token_file"
			}
			s.refuse(w, r, nil, http.StatusUnauthorized, msg)
			return
		case a == write && c.scope != Write:
			s.refuse(w, r, c, http.StatusForbidden, "the "+c.name+" credential cannot write: use the write token")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		if a == read {
			h(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		// The path names the user or job; the query is not logged (a
		// callback's holds the authorization code).
		s.log.Info().Str(fieldRoute, r.Pattern).Str(fieldMethod, r.Method).Str(fieldPath, r.URL.Path).
			Str(fieldCredential, c.name).Int(fieldStatus, sw.status).Str(fieldRemote, r.RemoteAddr).Msg("admin write")
	})
}

// refuse answers a request without the credential it needs, and logs it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, c *credential, status int, msg string) {
	e := s.log.Warn().Str(fieldRoute, r.Pattern).Str(fieldMethod, r.Method).Str(fieldPath, r.URL.Path)
	if c != nil {
		e = e.Str(fieldCredential, c.name)
	}
	e.Int(fieldStatus, status).Str(fieldRemote, r.RemoteAddr).Msg("admin request refused")
	writeErr(w, status, msg)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// hosts is the Host check against DNS rebinding: a web page of a name the
// attacker controls, resolved to the admin address, sends that name as
// Host. It passes
//   - "localhost" and loopback IP literals, on any port (a port-forward
//     or SSH tunnel picks the local port; no attacker's page has a
//     loopback origin);
//   - the names of admin.allowed_hosts, on any port;
//   - the listen address (host and port);
//   - listening on every interface (0.0.0.0, ::, ":port"), any IP literal
//     with the listen port: the pod's own IP is not known, and the
//     kubelet's probes and Prometheus send it. An IP literal is no
//     rebinding: the page's origin is that very address.
//
// Every other Host is refused, so a rebinding name is.
type hosts struct {
	host, port string // the listen address; host "" on every interface
	names      map[string]bool
}

func newHosts(listen string, allowed []string) hosts {
	h := hosts{names: map[string]bool{}}
	if host, port, err := net.SplitHostPort(listen); err == nil {
		h.host, h.port = normHost(host), port
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			h.host = ""
		}
	}
	for _, n := range allowed {
		h.names[normHost(n)] = true
	}
	return h
}

// normHost lower-cases a host name and drops a trailing dot and IPv6
// brackets.
func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")), ".")
}

func (s *Server) hostAllowed(hostport string) bool {
	h := s.hosts
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	host = normHost(host)
	if host == "" {
		return false
	}
	ip := net.ParseIP(host)
	switch {
	case host == "localhost" || ip != nil && ip.IsLoopback():
		return true
	case h.names[host]:
		return true
	case h.port == "" || port != h.port:
		return false
	case h.host == "":
		return ip != nil
	}
	return host == h.host
}

// nosniff sets X-Content-Type-Options on every response, so a browser
// never reads a JSON error or a page as something else.
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
