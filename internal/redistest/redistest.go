// Package redistest starts a private redis-server for a test.
//
// Every test gets a server of its own on a free loopback port with its data
// in t.TempDir(), stopped on cleanup; tests never touch a Redis they did not
// start. When SYNCD_TEST_REDIS_URL is set, that server is used instead and
// isolation comes from a unique key prefix per test (see Prefix): nothing
// here ever flushes a database.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
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
	// private: started for this test alone (see StartPrivate), so it may
	// be paused.
	private bool
}

// Client returns a new client for the server, closed on cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		t.Fatalf("redistest: parse url: %v", err)
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
// SYNCD_TEST_REDIS_URL is set: for tests that stall the whole server
// (Pause), which must never happen to a server others use.
func StartPrivate(t testing.TB) *Server {
	t.Helper()
	prefix := "t" + randomHex(t) + ":"
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found in PATH: install it (apt-get install -y redis-server) or set %s", EnvURL)
	}
	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", dir+"/redis.log",
	)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return &Server{URL: url, Prefix: prefix, private: true}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(dir + "/redis.log")
			t.Fatalf("redistest: redis-server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server on port %d not ready: %v", port, err)
		}
		// Readiness polling of a child process, not test synchronisation.
		time.Sleep(5 * time.Millisecond)
	}
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

// Pause stops the server from answering any client for d (CLIENT PAUSE
// ALL): commands sent meanwhile wait, and run when the pause ends. It
// returns a channel closed once the server answers again, so a test can
// wait for the end of the outage instead of sleeping through it. Only a
// server from StartPrivate may be paused.
func (s *Server) Pause(t testing.TB, d time.Duration) <-chan struct{} {
	t.Helper()
	if !s.private {
		t.Fatalf("redistest: Pause needs a server from StartPrivate")
	}
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		t.Fatalf("redistest: parse url: %v", err)
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
		// Paused clients are answered in order once the pause ends.
		_ = c.Ping(context.Background()).Err()
	}()
	t.Cleanup(func() { <-over })
	return over
}
