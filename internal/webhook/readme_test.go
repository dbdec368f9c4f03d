package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/webhook"
)

// readmeBlock returns the code block of README.md between <!-- name -->
// and <!-- /name -->, without its fences.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "<!-- "+name+" -->\n")
	block, _, ok2 := strings.Cut(rest, "<!-- /"+name+" -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no <!-- %s --> block", name)
	}
	lines := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "```") || lines[len(lines)-1] != "```" {
		t.Fatalf("README.md <!-- %s --> holds no fenced code block", name)
	}
	return strings.Join(lines[1:len(lines)-1], "\n") + "\n"
}

// recorded is a request as a receiver got it.
type recorded struct {
	header http.Header
	body   []byte
}

// record returns a URL that records the requests it gets.
func record(t *testing.T) (string, <-chan recorded) {
	t.Helper()
	got := make(chan recorded, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- recorded{r.Header.Clone(), body}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

// nodeReceiver runs the README's Node snippet as a receiver and returns
// its URL: it answers 204 when verifySyncd accepts a request with the
// secret set named by its ?set= query, else 401.
func nodeReceiver(t *testing.T, sets [][]string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (Debian: apt-get install nodejs): the README's Node snippet cannot be checked")
	}
	script := readmeBlock(t, "verify-node") + `
const http = require('node:http');
const sets = JSON.parse(process.env.SECRET_SETS);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const set = sets[Number(new URL(req.url, 'http://x').searchParams.get('set'))];
    res.statusCode = verifySyncd(set, req.headers, Buffer.concat(chunks), 300) ? 204 : 401;
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`
	path := filepath.Join(t.TempDir(), "receiver.js")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	setsJSON, _ := json.Marshal(sets)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, node, path)
	cmd.Env = append(os.Environ(), "SECRET_SETS="+string(setsJSON))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("node receiver did not start: %v", err)
	}
	return "http://127.0.0.1:" + strings.TrimSpace(port)
}

// TestReadmeVerifySnippets: the README's Go snippet is webhook.Verify,
// and both snippets accept genuine deliveries recorded from the real
// webhook sink and re-auth webhook, signed with the current and the
// previous secret, and refuse them once a signed header, the body or the
// secret is wrong, or the signature is stale.
func TestReadmeVerifySnippets(t *testing.T) {
	t.Run("the Go snippet is webhook.Verify", func(t *testing.T) {
		fset := token.NewFileSet()
		src, err := os.ReadFile("webhook.go")
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, "webhook.go", src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		var verify string
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Verify" && fd.Recv == nil && fd.Doc != nil {
				verify = string(src[fset.Position(fd.Doc.Pos()).Offset:fset.Position(fd.End()).Offset]) + "\n"
			}
		}
		if got := readmeBlock(t, "verify-go"); got != verify {
			t.Fatalf("README.md verify-go block:\n%s\nwant webhook.Verify with its doc comment, as in webhook.go:\n%s", got, verify)
		}
	})

	// Deliveries recorded from the real senders, signed with both secrets.
	url, got := record(t)
	cfg := config.SinkConfig{Kind: "webhook", URL: url, Secret: string(newSecret), PreviousSecret: string(oldSecret)}
	sink, err := jobs.NewSink(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	it := provider.Item{Name: "posts/café 1.json", MimeType: "application/octet-stream", Data: []byte{0, 0xff, '\n', 'x'}, UpdatedAt: time.Now().Add(-time.Hour)}
	if err := sink.Deliver(context.Background(), "alice", "pull", it); err != nil {
		t.Fatal(err)
	}
	item := <-got
	n := alerts.New(alerts.Options{URL: url, Secrets: cfg.Secrets(), Logger: zerolog.Nop()})
	n.Notify(alerts.Flag{User: "alice", Provider: "digime", At: time.Now()})
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	reauth := <-got

	// The receivers' secret sets; genuine deliveries verify with 0-2.
	other := "unrelated-secret-0123456789abcdef"
	sets := [][]string{{string(newSecret)}, {string(oldSecret)}, {other, string(oldSecret)}, {other}}
	genuine := []bool{true, true, true, false}
	forged := []bool{false, false, false, false}
	change := func(d recorded, f func(h http.Header, body []byte) []byte) recorded {
		h := d.header.Clone()
		return recorded{h, f(h, bytes.Clone(d.body))}
	}
	cases := []struct {
		name string
		d    recorded
		want []bool // accepted, per secret set
	}{
		{"item", item, genuine},
		{"re-auth webhook", reauth, genuine},
		{"item replayed with X-Syncd-User: bob", change(item, func(h http.Header, b []byte) []byte { h.Set("X-Syncd-User", "bob"); return b }), forged},
		{"item with a second X-Syncd-User", change(item, func(h http.Header, b []byte) []byte { h.Add("X-Syncd-User", "bob"); return b }), forged},
		{"item replayed with another job", change(item, func(h http.Header, b []byte) []byte { h.Set("X-Syncd-Job", "push"); return b }), forged},
		{"item replayed with another item", change(item, func(h http.Header, b []byte) []byte { h.Set("X-Syncd-Item", "posts/2.json"); return b }), forged},
		{"item replayed with another delivery id", change(item, func(h http.Header, b []byte) []byte {
			h.Set("X-Syncd-Delivery", strings.Repeat("0", 32))
			return b
		}), forged},
		{"item with another body", change(item, func(_ http.Header, b []byte) []byte { b[0] = 1; return b }), forged},
		{"re-auth webhook for user bob", change(reauth, func(_ http.Header, b []byte) []byte {
			return bytes.Replace(b, []byte(`"alice"`), []byte(`"bob"`), 1)
		}), forged},
		{"re-auth webhook with a user header", change(reauth, func(h http.Header, b []byte) []byte { h.Set("X-Syncd-User", "bob"); return b }), forged},
		{"item signed an hour ago", change(item, func(h http.Header, b []byte) []byte {
			h.Set(webhook.SignatureHeader, webhook.Sign([][]byte{newSecret, oldSecret}, h, b, time.Now().Add(-time.Hour)))
			return b
		}), forged},
	}

	t.Run("Go", func(t *testing.T) {
		for _, tc := range cases {
			for i, set := range sets {
				var keys [][]byte
				for _, s := range set {
					keys = append(keys, []byte(s))
				}
				err := webhook.Verify(keys, tc.d.header, tc.d.body, time.Now(), 5*time.Minute)
				if (err == nil) != tc.want[i] {
					t.Errorf("%s, secret set %d: %v, want accepted %v", tc.name, i, err, tc.want[i])
				}
			}
		}
	})

	t.Run("Node", func(t *testing.T) {
		receiver := nodeReceiver(t, sets)
		for _, tc := range cases {
			for i := range sets {
				req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/?set=%d", receiver, i), bytes.NewReader(tc.d.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = tc.d.header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if got := resp.StatusCode == http.StatusNoContent; got != tc.want[i] {
					t.Errorf("%s, secret set %d: status %d, want accepted %v", tc.name, i, resp.StatusCode, tc.want[i])
				}
			}
		}
	})
}
