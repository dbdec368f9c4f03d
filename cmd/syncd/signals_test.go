package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/redistest"
)

// envMain makes the test binary run main() instead of the tests: the
// signal tests re-execute it as `syncd` without building one.
const envMain = "SYNCD_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envMain) == "1" {
		main() // os.Args is the child's command line; main exits
		return
	}
	os.Exit(m.Run())
}

// daemonProc is `syncd run` in a child process with JSON logs on stderr.
type daemonProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string // stderr, line by line; closed at EOF
	exit  chan error  // the result of Wait, once stderr is drained
	mu    sync.Mutex
	seen  []string // every line read, for failure messages
}

// startDaemon runs `syncd run --config path`; it is killed when the test
// ends, if still running.
func startDaemon(t *testing.T, path string) *daemonProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", path)
	cmd.Env = append(os.Environ(), envMain+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{t: t, cmd: cmd, lines: make(chan string, 4096), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stderr)
		close(p.lines)
		p.exit <- cmd.Wait() // after every read from the pipe, as Wait requires
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // an error when it has exited already
	})
	return p
}

// signal sends sig to the daemon.
func (p *daemonProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// logLine is one JSON log line of the daemon.
type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Jobs    *int   `json:"jobs"`
}

// waitLog reads the daemon's log until a line with one of msgs and
// returns it. It fails the test if the daemon's stderr ends first or
// nothing comes within 10 s.
func (p *daemonProc) waitLog(msgs ...string) logLine {
	p.t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("the daemon's stderr ended before %q:\n%s", msgs, p.log())
			}
			p.mu.Lock()
			p.seen = append(p.seen, line)
			p.mu.Unlock()
			var l logLine
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			for _, m := range msgs {
				if l.Message == m {
					return l
				}
			}
		case <-timeout.C:
			p.t.Fatalf("no log line %q within 10s:\n%s", msgs, p.log())
		}
	}
}

// wait reads the rest of the daemon's log, waits for it to exit and
// returns its exit code; it fails the test after 10 s.
func (p *daemonProc) wait() int {
	p.t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	lines := p.lines
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // drained; exit follows
				continue
			}
			p.mu.Lock()
			p.seen = append(p.seen, line)
			p.mu.Unlock()
		case err := <-p.exit:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				p.t.Fatal(err)
			}
			return p.cmd.ProcessState.ExitCode()
		case <-timeout.C:
			p.t.Fatalf("the daemon did not exit within 10s:\n%s", p.log())
		}
	}
}

func (p *daemonProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, "\n")
}

// TestSignals runs the real main: SIGHUP reloads the edited config file,
// SIGTERM drains and exits 0.
func TestSignals(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	// The daemon reads its config through a symlink from another
	// directory: its file watcher (on the link's directory) does not see
	// the edit below, so the reload is SIGHUP's.
	target := filepath.Join(dir, "real", "syncd.yaml")
	path := filepath.Join(dir, "etc", "syncd.yaml")
	for _, d := range []string{filepath.Dir(target), filepath.Dir(path)} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	write := func(jobs string) {
		t.Helper()
		doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0"}
providers: [{name: fake, kind: fake}]
%s`, srv.URL, srv.Prefix, key1, jobs)
		if err := os.WriteFile(target, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")

	p := startDaemon(t, path)
	if l := p.waitLog("syncd running"); l.Jobs == nil || *l.Jobs != 0 {
		t.Fatalf("running with jobs %v, want 0", l.Jobs)
	}

	write("jobs: [{name: pull-hourly, kind: pull, schedule: \"@hourly\"}]\n")
	p.signal(syscall.SIGHUP)
	l := p.waitLog("config reloaded", "config reload rejected; keeping the running config", "config reload failed to apply")
	if l.Message != "config reloaded" || l.Jobs == nil || *l.Jobs != 1 {
		t.Fatalf("after SIGHUP: %+v, want config reloaded with 1 job:\n%s", l, p.log())
	}

	p.signal(syscall.SIGTERM)
	p.waitLog("stopped")
	if code := p.wait(); code != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, p.log())
	}
}

// TestSecondSignalExitsAtOnce: a refresh the provider never answers
// holds the drain for the (long) shutdown grace; a second SIGTERM ends
// the daemon at once with exit 1.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	arrived := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		select { // never answers: until the daemon is gone or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(provider.Close)
	t.Cleanup(func() { close(release) }) // runs before provider.Close

	path := filepath.Join(t.TempDir(), "syncd.yaml")
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0"}
shutdown_grace: 2m
providers:
  - {name: slow, kind: oauth2, timeout: 50s, oauth2: {token_url: %q, client_id: syncd, client_secret: client-secret-1}}
`, srv.URL, srv.Prefix, key1, provider.URL+"/token")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// A token that expires within the refresh lead: due at once.
	tok := `{"access_token":"AT-s","refresh_token":"RT-s","token_type":"Bearer","expires_in":60}`
	var out, errb strings.Builder
	if code := run(context.Background(), []string{"token", "put", "--user", "sam", "--config", path},
		env{stdin: strings.NewReader(tok), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("token put: %d %q", code, errb.String())
	}

	p := startDaemon(t, path)
	p.waitLog("syncd running")
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("no refresh reached the provider within 10s:\n%s", p.log())
	}
	p.signal(syscall.SIGTERM)
	// Logged once the first signal ended the context: the second is
	// a signal of its own, not merged with the first.
	p.waitLog("shutting down: finishing running work, handing back the rest")
	p.signal(syscall.SIGTERM)
	l := p.waitLog("second signal: exiting now", "stopped")
	if l.Message != "second signal: exiting now" || l.Level != "warn" {
		t.Fatalf("after the second SIGTERM: %+v:\n%s", l, p.log())
	}
	if code := p.wait(); code != exitError {
		t.Fatalf("exit %d after a second SIGTERM, want 1:\n%s", code, p.log())
	}
}
