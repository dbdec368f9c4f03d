package webhook_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/webhook"
)

// FuzzSignVerify: Verify never panics on any signature header, accepts
// what Sign produced for the same header values, and refuses it once a
// signed value is moved into its neighbour (the fields cannot shift).
func FuzzSignVerify(f *testing.F) {
	f.Add("alice", "pull", "posts/1.json", []byte("payload"), "t=1780000000,v2=00")
	f.Add("a", "bpull", "", []byte{0, 0xff}, "t=,v2=,v2")
	f.Add("", "", "café", []byte(nil), "v2=zz,t=-1")
	f.Fuzz(func(t *testing.T, user, job, item string, body []byte, sig string) {
		h := http.Header{}
		h.Set(webhook.UserHeader, user)
		h.Set(webhook.JobHeader, job)
		h.Set(webhook.ItemHeader, item)
		h.Set(webhook.DeliveryHeader, "0123456789abcdef0123456789abcdef")
		h.Set(webhook.SignatureHeader, sig)
		_ = webhook.Verify([][]byte{newSecret}, h, body, at, time.Minute)

		h.Set(webhook.SignatureHeader, webhook.Sign([][]byte{newSecret}, h, body, at))
		if err := webhook.Verify([][]byte{newSecret}, h, body, at, time.Minute); err != nil {
			t.Fatalf("a signed delivery does not verify: %v", err)
		}
		if user == "" || strings.ContainsAny(user, "\n") {
			return
		}
		// Shift the last byte of the user into the job.
		h.Set(webhook.UserHeader, user[:len(user)-1])
		h.Set(webhook.JobHeader, user[len(user)-1:]+job)
		if webhook.Verify([][]byte{newSecret}, h, body, at, time.Minute) == nil {
			t.Fatalf("user %q job %q verified as user %q job %q", user, job, h.Get(webhook.UserHeader), h.Get(webhook.JobHeader))
		}
	})
}
