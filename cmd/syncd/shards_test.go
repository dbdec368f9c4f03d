package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/scheduler"
)

// TestDaemonMigratesShardsAtStart: users and jobs stored with 4 shards;
// syncd run started with 16 lays every due set out for 16 before it
// claims anything, records the layout, and withdraws its announcement
// when it stops.
func TestDaemonMigratesShardsAtStart(t *testing.T) {
	c := newCLI(t)
	c.jobs = "jobs: [{name: pull, kind: pull, schedule: \"@every 1h\"}]\n"
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	var users []string
	for i := range 20 {
		u := fmt.Sprintf("user-%02d", i)
		users = append(users, u)
		if code, _, errOut := c.run(oauthToken("AT-"+u, "RT-"+u), "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 16}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
providers: [{name: digime, kind: fake}]
admin: {listen: ""}
shutdown_grace: 2s
%s`, c.srv.URL, c.srv.Prefix, key1, c.jobs)
	cfg, err := config.Parse(strings.NewReader(doc), c.dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(c.dir, "syncd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, "", env{stdout: io.Discard, stderr: logs, getenv: func(string) string { return "" }},
			hooks{started: func(d *daemon, _ string) { ready <- d.owner }})
	}()
	var owner string
	select {
	case owner = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready")
	}
	rdb := c.srv.Client(t)
	bg := context.Background()
	for _, set := range []string{"refresh", "job:pull"} {
		for _, u := range users {
			key := fmt.Sprintf("%sdue:%s:%d", c.srv.Prefix, set, scheduler.Shard(u, 16))
			if _, err := rdb.ZScore(bg, key, u).Result(); err != nil {
				t.Fatalf("%s: %s is not in its shard of 16 (%v)", set, u, err)
			}
		}
		n := 0
		for sh := range 16 {
			c, _ := rdb.ZCard(bg, fmt.Sprintf("%sdue:%s:%d", c.srv.Prefix, set, sh)).Result()
			n += int(c)
		}
		if n != len(users) {
			t.Fatalf("%s holds %d entries, want %d", set, n, len(users))
		}
	}
	if layout, _ := rdb.HGet(bg, c.srv.Prefix+"shards", "layout").Result(); layout != "16" {
		t.Fatalf("layout %q, want 16", layout)
	}
	if v, _ := rdb.HGet(bg, c.srv.Prefix+"shards", "r:"+owner).Result(); !strings.HasPrefix(v, "16:") {
		t.Fatalf("announcement %q", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.HExists(bg, c.srv.Prefix+"shards", "r:"+owner).Result(); n {
		t.Fatal("the stopped daemon's announcement is still there")
	}
}
