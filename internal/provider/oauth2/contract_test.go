package oauth2

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

func TestContract(t *testing.T) {
	for _, style := range []string{AuthBasic, AuthPost} {
		t.Run(style, func(t *testing.T) {
			fake := oauth2fake.New(oauth2fake.Options{
				ClientID: testClientID, ClientSecret: testSecret, AuthStyle: style, Seed: 1,
			})
			hs := httptest.NewServer(fake.Handler())
			t.Cleanup(hs.Close)
			client := func(secret string) *Client {
				return newTestClient(t, Config{
					TokenURL:     hs.URL + "/token",
					ClientID:     testClientID,
					ClientSecret: secret,
					AuthStyle:    style,
					PullURL:      hs.URL + "/data/{{.User}}?since={{.Cursor}}",
					PushURL:      hs.URL + "/push/{{.User}}",
				}, &instantTimer{})
			}
			providertest.Run(t, providertest.Harness{
				Client:           client(testSecret),
				BadClient:        client("wrong-secret"),
				Issue:            func(_ *testing.T, user string) tokens.Token { return fake.Issue(user) },
				Revoke:           fake.Revoke,
				Outage:           func(status int, retryAfter time.Duration) { fake.SetOutage(status, retryAfter) },
				InvalidateAccess: fake.InvalidateAccess,
				SeedData:         func(user string) { fake.SetData(user, []byte(`{"items":[{"id":1}]}`), "cursor-1") },
				Pushed: func(user string) [][]byte {
					var out [][]byte
					for _, p := range fake.Pushes(user) {
						out = append(out, p.Data)
					}
					return out
				},
			})
		})
	}
}
