package redistest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points tests at an existing Redis.
const EnvURL = "SYNCD_TEST_REDIS_URL"

// Server is a Redis that one test may use.
type Server struct {
	// URL is the redis:// URL of the server.
	URL string
	// Prefix is a key prefix unique to this test; use it for every key.
	Prefix string
	// CAFile, CertFile and KeyFile are, for a server started with TLS,
	// the PEM files of its CA and of a client certificate it accepts.
	CAFile, CertFile, KeyFile string

	// proc is the redis-server this test started; nil for a server from
	// SYNCD_TEST_REDIS_URL, which is never killed, restarted or paused.
	proc *process
}

// process is a redis-server child and what it takes to start it again
// with the same data.
type process struct {
	bin  string
	args []string
	port int
	dir  string
	// tls is the client config for a TLS server (nil: plain).
	tls *tls.Config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Option changes how StartPrivate runs redis-server.
type Option func(*config)

type config struct {
	appendOnly bool
	tls        bool
}

// AppendOnly runs the server with an append-only file fsynced before every
// reply (--appendonly yes --appendfsync always): every write a client saw
// acknowledged survives Kill and is there again after Restart, as on a
// production Redis configured for durability.
func AppendOnly() Option { return func(c *config) { c.appendOnly = true } }

// Client returns a new client for the server, closed on cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		t.Fatalf("redistest: parse url: %v", err)
	}
	if s.proc != nil && s.proc.tls != nil {
		opt.TLSConfig = s.proc.tls.Clone()
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start starts a private redis-server (or uses SYNCD_TEST_REDIS_URL) and
// returns it. The server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return &Server{URL: u, Prefix: "t" + randomHex(t) + ":"}
	}
	return StartPrivate(t)
}

// StartPrivate starts a redis-server of the test's own even when
// SYNCD_TEST_REDIS_URL is set, for tests that kill, restart or stall it.
// Without options it runs as Start's does (no persistence); the server is
// killed when the test ends.
func StartPrivate(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found in PATH: install it (apt-get install -y redis-server) or set %s", EnvURL)
	}
	p := &process{bin: bin, port: freePort(t), dir: t.TempDir()}
	p.args = p.serverArgs()
	if c.appendOnly {
		p.args = append(p.args, "--appendonly", "yes", "--appendfsync", "always")
	}
	srv := &Server{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", p.port), Prefix: "t" + randomHex(t) + ":", proc: p}
	if c.tls {
		files, client := tlsFiles(t, p.dir)
		p.tls = client
		p.args = append(p.args, "--port", "0", "--tls-port", strconv.Itoa(p.port), "--tls-auth-clients", "yes",
			"--tls-cert-file", files["server-cert"], "--tls-key-file", files["server-key"], "--tls-ca-cert-file", files["ca"])
		srv.URL = fmt.Sprintf("rediss://127.0.0.1:%d/0", p.port)
		srv.CAFile, srv.CertFile, srv.KeyFile = files["ca"], files["client-cert"], files["client-key"]
	}
	t.Cleanup(func() { p.kill() })
	p.start(t)
	return srv
}

// start runs redis-server and waits until it answers PING (after loading
// its append-only file, if any).
func (p *process) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p.port), MaxRetries: -1, TLSConfig: p.tls})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(p.dir + "/redis.log")
			t.Fatalf("redistest: redis-server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server on port %d not ready: %v", p.port, err)
		}
		// Readiness polling of a child process, not test synchronisation.
		time.Sleep(5 * time.Millisecond)
	}
}

// kill sends SIGKILL to the running server, if any, and waits for it.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (s *Server) private(t testing.TB, what string) *process {
	t.Helper()
	if s.proc == nil {
		t.Fatalf("redistest: %s needs a server from StartPrivate", what)
	}
	return s.proc
}

// serverArgs is the command line every private redis-server shares (on
// loopback at p.port, nothing saved, data and log in p.dir), then extra.
// A later --appendonly in extra overrides the default no.
func (p *process) serverArgs(extra ...string) []string {
	return append([]string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(p.port),
		"--save", "",
		"--appendonly", "no",
		"--dir", p.dir,
		"--logfile", filepath.Join(p.dir, "redis.log"),
	}, extra...)
}

// Kill ends the server with SIGKILL, as a crash or an OOM kill would: no
// shutdown, no final write. Clients get connection errors until Restart.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.private(t, "Kill").kill()
}

// Restart starts the server again on the same port with the same data
// directory, after Kill, and returns once it answers (with AppendOnly,
// once it has loaded the append-only file). Scripts loaded before are
// gone, as after any Redis restart.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	p := s.private(t, "Restart")
	p.mu.Lock()
	running := p.cmd != nil
	p.mu.Unlock()
	if running {
		t.Fatalf("redistest: Restart of a running server; Kill it first")
	}
	p.start(t)
}

// Pause stops the server from answering any client for d (CLIENT PAUSE
// ALL): commands sent meanwhile wait, and run when the pause ends unless
// their client gave up and closed the connection. It returns a channel
// closed once the server answers again, so a test can wait for the end
// of the stall instead of sleeping through it.
func (s *Server) Pause(t testing.TB, d time.Duration) <-chan struct{} {
	t.Helper()
	s.private(t, "Pause")
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		t.Fatalf("redistest: parse url: %v", err)
	}
	if s.proc.tls != nil {
		opt.TLSConfig = s.proc.tls.Clone()
	}
	opt.MaxRetries = -1
	opt.ReadTimeout = -1 // the probe below waits out the pause
	c := redis.NewClient(opt)
	if err := c.Do(context.Background(), "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		_ = c.Close()
		t.Fatalf("redistest: client pause: %v", err)
	}
	over := make(chan struct{})
	go func() {
		defer close(over)
		defer c.Close()
		// This client is paused too: its PING is answered once the
		// pause ends (or fails if the server is killed meanwhile).
		_ = c.Ping(context.Background()).Err()
	}()
	t.Cleanup(func() { <-over })
	return over
}

// freePort asks the kernel for a free loopback port. The listener is closed
// before redis-server binds it; the window is tiny and a clash fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("redistest: random: %v", err)
	}
	return hex.EncodeToString(b[:])
}
