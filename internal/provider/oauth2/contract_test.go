package oauth2

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

func TestContract(t *testing.T) {
	for _, style := range []string{AuthBasic, AuthPost} {
		t.Run(style, func(t *testing.T) {
			// start serves a fake with opt and returns it with a client
			// factory (by client secret) for it.
			start := func(t *testing.T, opt oauth2fake.Options, clk clock.Clock) (*oauth2fake.Server, func(string) *Client) {
				opt.ClientID, opt.ClientSecret, opt.AuthStyle, opt.Seed = testClientID, testSecret, style, 1
				fake := oauth2fake.New(opt)
				hs := httptest.NewServer(fake.Handler())
				t.Cleanup(hs.Close)
				return fake, func(secret string) *Client {
					return newTestClient(t, Config{
						TokenURL:     hs.URL + "/token",
						ClientID:     testClientID,
						ClientSecret: secret,
						AuthStyle:    style,
						PullURL:      hs.URL + "/data/{{.User}}?since={{.Cursor}}",
						PushURL:      hs.URL + "/push/{{.User}}",
						Clock:        clk,
					}, &instantTimer{})
				}
			}
			fake, client := start(t, oauth2fake.Options{}, nil)
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
				Reuses: fake.ReusesOf,
				WithGrace: func(t *testing.T, grace time.Duration) providertest.GraceHarness {
					clk := clock.NewFake(time.Now())
					gf, gc := start(t, oauth2fake.Options{RotationGracePeriod: grace, Clock: clk}, clk)
					return providertest.GraceHarness{
						Client:  gc(testSecret),
						Issue:   func(_ *testing.T, user string) tokens.Token { return gf.Issue(user) },
						Advance: clk.Advance,
						Reuses:  gf.ReusesOf,
					}
				},
			})
		})
	}
}
