package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/tokens"
)

// runCtx is run with a context of the caller's (a daemon that must end).
func (c *cli) runCtx(ctx context.Context, stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "SYNCD_CONFIG" {
			return c.config
		}
		return ""
	}
	code := run(ctx, args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: getenv})
	return code, out.String(), errb.String()
}

// snapshot returns every key of the test with its value: hashes by
// HGETALL, sorted sets by ZRANGE, others by DUMP.
func (c *cli) snapshot() map[string]string {
	c.t.Helper()
	ctx := context.Background()
	rdb := c.srv.Client(c.t)
	out := make(map[string]string)
	iter := rdb.Scan(ctx, 0, c.srv.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			c.t.Fatal(err)
		}
		var v any
		switch typ {
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			v, err = rdb.Dump(ctx, k).Result()
		}
		if err != nil {
			c.t.Fatal(err)
		}
		out[k] = fmt.Sprintf("%s %v", typ, v)
	}
	if err := iter.Err(); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, "deleted "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return strings.Join(d, ", ")
}

// The tester's report: a replica or an operator with the wrong secret
// under a key id the database already uses must not start, must name the
// key id (never the key), and must change nothing.
func TestWrongKeyRefused(t *testing.T) {
	c := newCLI(t)
	c.jobs = "admin: {listen: \"\"}\n" // `syncd run` below: no admin listener
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	for _, u := range []string{"w1", "w2"} {
		// Due at once: a daemon that started would refresh them now.
		tok := `{"access_token":"AT-` + u + `","refresh_token":"RT-` + u + `","token_type":"Bearer","expires_in":60}`
		if code, _, errOut := c.run(tok, "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	// k2 joins with its right value (a replica started with it), then
	// an operator mistypes it.
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
	if code, _, errOut := c.run("", "users", "list"); code != 0 {
		t.Fatal(errOut)
	}
	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	before := c.snapshot()

	check := func(t *testing.T, kid string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		code, out, errOut := c.runCtx(ctx, oauthToken("AT-w3", "RT-w3"), args...)
		if code != 2 {
			t.Fatalf("%v: exit %d, want 2 (stdout %q stderr %q)", args, code, out, errOut)
		}
		want := fmt.Sprintf(`keys: key %q does not match the key this database was sealed with`, kid)
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, want) {
			t.Fatalf("%v: stderr %q, want one line containing %q", args, errOut, want)
		}
		for _, secret := range []string{wrong, key1, key2} {
			if strings.Contains(errOut+out, secret) {
				t.Fatalf("%v: output holds a key: %q", args, errOut)
			}
		}
		if d := diffSnapshots(before, c.snapshot()); d != "" {
			t.Fatalf("%v changed the database: %s", args, d)
		}
	}
	commands := [][]string{
		{"run"},
		{"keys", "rotate"},
		{"token", "show", "--user", "w1"},
		{"users", "show", "w1"},
		{"users", "list"},
		{"token", "put", "--user", "w3"},
		{"users", "disable", "--user", "w1"},
		{"reauth", "list"},
		{"jobs", "list"},
		{"authorize", "exchange", "--state", "s", "--code", "c"},
	}
	t.Run("wrong value under the primary id", func(t *testing.T) {
		c.writeConfig("k1", "- {id: k1, secret: "+wrong+"}\n    - {id: k2, secret: "+key2+"}")
		for _, args := range commands {
			check(t, "k1", args...)
		}
	})
	t.Run("wrong value under a new primary id", func(t *testing.T) {
		// The rotation that re-sealed every token with a mistyped key.
		c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+wrong+"}")
		for _, args := range commands {
			check(t, "k2", args...)
		}
	})
	t.Run("right keys", func(t *testing.T) {
		c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
		code, out, errOut := c.run("", "keys", "rotate", "--json")
		var st tokens.RotateStats
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 2 {
			t.Fatalf("rotate: %d %q %q", code, out, errOut)
		}
		c.writeConfig("k2", "- {id: k2, secret: "+key2+"}")
		if code, out, errOut := c.run("", "token", "show", "--user", "w2", "--json"); code != 0 || !strings.Contains(out, `"key_id": "k2"`) {
			t.Fatalf("show: %d %q %q", code, out, errOut)
		}
	})
}

// A token record in the format before provider binding (the user id was
// the only associated data) is re-sealed by keys rotate even when it is
// under the primary key already.
func TestKeysRotateUpgradesLegacyRecords(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	kid, ct, err := keys.Seal("old", []byte(`{"a":"AT-old","r":"RT-old"}`))
	if err != nil {
		t.Fatal(err)
	}
	rec := tokens.Record{UserID: "old", Provider: "digime", KeyID: kid, Ciphertext: ct, AccessExpiry: time.Now().Add(time.Hour)}
	if _, _, err := c.store().Put(ctx, rec, tokens.ReasonStored, time.Now()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := c.run("", "keys", "rotate", "--json")
	var st tokens.RotateStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 1 || st.Upgraded != 1 || st.Current != 0 {
		t.Fatalf("rotate: %d %q %q", code, out, errOut)
	}
	got, err := c.store().Load(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if got.Ciphertext[0] != 0x02 || got.Version != 1 {
		t.Fatalf("after rotate: format %#x, version %d", got.Ciphertext[0], got.Version)
	}
	// Bound to its provider now: a rewritten provider field no longer opens.
	if tok, err := keys.OpenRecord(got); err != nil || tok.AccessToken != "AT-old" || tok.RefreshToken != "RT-old" {
		t.Fatalf("open after rotate: %v", err)
	}
	got.Provider = "other"
	if _, err := keys.OpenRecord(got); !errors.Is(err, tokens.ErrDecrypt) {
		t.Fatalf("rewritten provider after rotate: %v", err)
	}
	if code, out, _ := c.run("", "keys", "rotate"); code != 0 || !strings.Contains(out, "0 re-encrypted, 1 already current") {
		t.Fatalf("second rotate: %d %q", code, out)
	}
}
