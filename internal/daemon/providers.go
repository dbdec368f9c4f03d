package daemon

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/digime"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/provider/oauth2"
	"github.com/syncd/syncd/internal/refresher"
)

// client is a provider as the daemon uses it: refresh, pull, push.
type client interface {
	refresher.Provider
	jobs.Provider
}

var (
	_ client = (*digime.Client)(nil)
	_ client = (*oauth2.Client)(nil)
	_ client = (*fake.Provider)(nil)
)

// providers are the configured providers as the refresher, the job
// runner and the authorization flow take them.
type providers struct {
	refresh map[string]refresher.ProviderEntry
	jobs    map[string]jobs.ProviderEntry
	auth    map[string]authflow.Provider
}

// newProviders converts the configured providers (newProvider). Without
// clients, the entries carry policies and limits only: a command that
// stores tokens or schedules jobs calls no provider.
func newProviders(ps []config.ProviderConfig, log zerolog.Logger, clients bool) (providers, error) {
	out := providers{refresh: make(map[string]refresher.ProviderEntry, len(ps)), jobs: make(map[string]jobs.ProviderEntry, len(ps)),
		auth: make(map[string]authflow.Provider, len(ps))}
	for _, p := range ps {
		var c client
		if clients {
			var err error
			if c, err = newClient(p, log.With().Str("provider", p.Name).Logger(), clock.Real{}); err != nil {
				return providers{}, errkind.Mark(errkind.Invalid, err)
			}
		}
		out.refresh[p.Name], out.jobs[p.Name], out.auth[p.Name] = newProvider(p, c)
	}
	return out, nil
}

// newProvider is the one conversion of a provider's config: its client
// (nil: none) with the refresh policy, the job limits and the consent
// flow, if the provider has one.
func newProvider(p config.ProviderConfig, c client) (refresher.ProviderEntry, jobs.ProviderEntry, authflow.Provider) {
	pol := refresher.Policy{
		Lead: p.Lead, Jitter: p.Jitter, DefaultLifetime: p.DefaultLifetime, Timeout: p.Timeout,
		RetryInitial: p.RetryInitial, RetryMax: p.RetryMax, RetryAfterCap: p.RetryAfterCap,
		DegradedAfter: p.DegradedAfter, CircuitFailures: p.CircuitFailures, CircuitCooldown: p.CircuitCooldown,
	}
	var a provider.Authorizer
	if az, ok := c.(provider.Authorizer); ok && (p.Kind != config.ProviderOAuth2 || p.OAuth2.AuthURL != "") {
		a = az
	}
	var rp refresher.Provider
	var jp jobs.Provider
	if c != nil {
		rp, jp = c, c
	}
	return refresher.ProviderEntry{Provider: rp, Policy: pol},
		jobs.ProviderEntry{Provider: jp, RateLimit: p.RateLimit, Burst: p.Burst, MaxConcurrency: p.MaxConcurrency},
		authflow.Provider{Authorizer: a, DefaultLifetime: p.DefaultLifetime}
}

// newClient creates the client of a configured provider.
func newClient(p config.ProviderConfig, log zerolog.Logger, clk clock.Clock) (client, error) {
	switch p.Kind {
	case config.ProviderFake:
		return fake.New(fake.Options{Clock: clk}), nil
	case config.ProviderDigime:
		key, err := digime.LoadPrivateKey(p.Digime.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("providers %s: digime.private_key_file: %w", p.Name, err)
		}
		c, err := digime.New(digime.Config{
			BaseURL: p.Digime.BaseURL, AppID: p.Digime.AppID, ContractID: p.Digime.ContractID, PrivateKey: key,
			PollInterval: p.Digime.PollInterval, MaxPolls: p.Digime.MaxPolls, MaxDuration: p.Digime.MaxDuration,
			AgentName: p.Digime.AgentName, AgentVersion: p.Digime.AgentVersion, Clock: clk, Logger: log,
			OnboardURL: p.Digime.OnboardURL, OnboardParams: p.Digime.OnboardParams,
		})
		if err != nil {
			return nil, fmt.Errorf("providers %s: %w", p.Name, err)
		}
		return c, nil
	case config.ProviderOAuth2:
		o := p.OAuth2
		c, err := oauth2.New(oauth2.Config{
			TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret, AuthStyle: o.AuthStyle,
			Scopes: o.Scopes, PullURL: o.PullURL, PushURL: o.PushURL, CursorHeader: o.CursorHeader, Clock: clk, Logger: log,
			AuthURL: o.AuthURL, AuthParams: o.AuthParams,
		})
		if err != nil {
			return nil, fmt.Errorf("providers %s: %w", p.Name, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("providers %s: unknown kind %q", p.Name, p.Kind)
}
