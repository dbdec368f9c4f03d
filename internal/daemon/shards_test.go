package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// TestDaemonMigratesShardsAtStart: users and jobs stored with 2 shards;
// a daemon started with 16 lays every due set out for 16 before it
// claims anything, records the layout, and withdraws its announcement
// when it stops.
func TestDaemonMigratesShardsAtStart(t *testing.T) {
	srv := redistest.Start(t)
	jobsDoc := "jobs: [{name: pull, kind: pull, schedule: \"@every 1h\"}]\n"
	o := offline(t, srv, fakeProvider+jobsDoc)
	var users []string
	for i := range 20 {
		u := fmt.Sprintf("user-%02d", i)
		users = append(users, u)
		tok := tokens.Token{UserID: u, AccessToken: "AT-" + u, RefreshToken: "RT-" + u, AccessExpiry: time.Now().Add(time.Hour)}
		if _, err := o.Put(context.Background(), "digime", tok); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 16}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
providers: [{name: digime, kind: fake}]
admin: {listen: ""}
shutdown_grace: 2s
%s`, srv.URL, srv.Prefix, key1, jobsDoc)
	cfg, err := config.Parse(strings.NewReader(doc), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "syncd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	d, err := New(cfg, Options{Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	owner := d.owner
	rdb := srv.Client(t)
	bg := context.Background()
	for _, set := range []string{"refresh", "job:pull"} {
		for _, u := range users {
			key := fmt.Sprintf("%sdue:%s:%d", srv.Prefix, set, scheduler.Shard(u, 16))
			if _, err := rdb.ZScore(bg, key, u).Result(); err != nil {
				t.Fatalf("%s: %s is not in its shard of 16 (%v)", set, u, err)
			}
		}
		n := 0
		for sh := range 16 {
			c, _ := rdb.ZCard(bg, fmt.Sprintf("%sdue:%s:%d", srv.Prefix, set, sh)).Result()
			n += int(c)
		}
		if n != len(users) {
			t.Fatalf("%s holds %d entries, want %d", set, n, len(users))
		}
	}
	if layout, _ := rdb.HGet(bg, srv.Prefix+"shards", "layout").Result(); layout != "16" {
		t.Fatalf("layout %q, want 16", layout)
	}
	if v, _ := rdb.HGet(bg, srv.Prefix+"shards", "r:"+owner).Result(); !strings.HasPrefix(v, "16:") {
		t.Fatalf("announcement %q", v)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.HExists(bg, srv.Prefix+"shards", "r:"+owner).Result(); n {
		t.Fatal("the stopped daemon's announcement is still there")
	}
}
