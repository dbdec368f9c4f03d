package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are one line
// and never show an expanded value, and that a config it accepts validates
// again unchanged.
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile(filepath.Join("..", "..", "configs", "syncd.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		string(sample),
		"",
		keyConfig,
		keyConfig + "jobs: [{name: a, kind: pull, schedule: \"CRON_TZ=Europe/Berlin */5 * * * * *\", spread: 1s}]\n",
		keyConfig + "jobs: [{name: a, kind: push, schedule: \"@every 15m\", retry: {attempts: 0}}]\n",
		keyConfig + "providers:\n  - &p {name: a, kind: digime, jitter: 0s}\n  - <<: *p\n    name: b\n",
		keyConfig + "jobs: [{name: a, kind: pull, schedule: \"TZ=UTC\"}]\n",
		keyConfig + "jobs: [{name: a, kind: pull, schedule: \"*/61 * * * *\", timezone: Mars/Base}]\n",
		"encryption:\n  keys:\n    - {id: k1, secret_file: key}\n",
		"encryption: {keys: [{id: k1, secret: \"${SECRET}\"}]}\n",
		"redis: {url: \"${SECRET}\"}\nrefresher: {workers: ${SECRET}}\n",
		"redis:\n  url: redis://u:pa$word@h:1/x\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
		"x: &x [*x]\n",
		"redis: [\n",
		"---\n---\n",
		"${NOPE} $${ ${1} ${",
		"\t\x00\xff",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	const secret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEyMzQ1Njc4OTA"
	getenv := env("SECRET", secret, "SYNCD_ENCRYPTION_KEY", testKey)
	dir := f.TempDir()

	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse(strings.NewReader(doc), dir, getenv)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("error spans lines: %q", msg)
			}
			if strings.Contains(msg, secret) && !strings.Contains(doc, secret) {
				t.Fatalf("error shows a variable's value: %q", msg)
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config and nil error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate again: %v", err)
		}
	})
}
