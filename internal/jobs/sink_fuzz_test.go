package jobs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
)

// FuzzDirSinkPath: for any user id (not only the grammar's
// tokens.ValidateUserID: users stored before it keep running), job and
// item name, the dir
// sink writes the item under its root, in one file whose name a file
// system takes, and never fails for the name (a failure would block the
// user's pulls).
func FuzzDirSinkPath(f *testing.F) {
	for _, seed := range [][3]string{
		{"alice@example.com", "pull", "posts/2026.json"},
		{"..", "pull", ".."},
		{".", "..", "."},
		{"../x", "pull", "../../etc/passwd"},
		{"digime:9f8e7d6c", "pull", "a\r\nX-Evil: 1"},
		{"demo-user-02", "pull", strings.Repeat("x", 300)},
		{"\uff41lice", "pull", strings.Repeat("é", 150)},
		{"u", "pull", ".tmp-x"},
		{"u", "pull", "~"},
		{"u", "pull", strings.Repeat("%", 100)},
		{"u", "pull", ""},
		{"", "", "\x00"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, user, job, name string) {
		if job == "" {
			job = "pull"
		}
		it := provider.Item{Name: name, Data: []byte(name), UpdatedAt: time.UnixMilli(1)}
		dir, file := jobs.DirSinkPath(user, job, it)
		rel := filepath.Join(dir, file)
		parts := strings.Split(rel, string(filepath.Separator))
		if !filepath.IsLocal(rel) || len(parts) != 3 {
			t.Fatalf("path %q is not three parts under the root", rel)
		}
		for _, p := range parts {
			if len(p) > 255 || p == "." || p == ".." || strings.HasPrefix(p, ".") || strings.ContainsAny(p, "\\\x00") {
				t.Fatalf("path %q: part %q", rel, p)
			}
		}

		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		s, err := jobs.NewSink(config.SinkConfig{Kind: "dir", Path: root}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Deliver(context.Background(), user, job, it); err != nil {
			t.Fatalf("Deliver(%q, %q, %q): %v", user, job, name, err)
		}
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || !bytes.Equal(got, it.Data) {
			t.Fatalf("item not at %q: %v", rel, err)
		}
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 {
			t.Fatalf("written beside the root: %v", entries)
		}
	})
}
