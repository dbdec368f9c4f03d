package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
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

// buildProviders creates a client per configured provider.
func buildProviders(cfg *config.Config, log zerolog.Logger, clk clock.Clock) (map[string]client, error) {
	out := make(map[string]client, len(cfg.Providers))
	for _, p := range cfg.Providers {
		plog := log.With().Str("provider", p.Name).Logger()
		switch p.Kind {
		case config.ProviderFake:
			out[p.Name] = fake.New(fake.Options{Clock: clk})
		case config.ProviderDigime:
			key, err := digime.LoadPrivateKey(p.Digime.PrivateKeyFile)
			if err != nil {
				return nil, inputError{fmt.Errorf("providers %s: digime.private_key_file: %w", p.Name, err)}
			}
			c, err := digime.New(digime.Config{
				BaseURL: p.Digime.BaseURL, AppID: p.Digime.AppID, ContractID: p.Digime.ContractID, PrivateKey: key,
				PollInterval: p.Digime.PollInterval, MaxPolls: p.Digime.MaxPolls, MaxDuration: p.Digime.MaxDuration,
				AgentName: p.Digime.AgentName, AgentVersion: p.Digime.AgentVersion, Clock: clk, Logger: plog,
				OnboardURL: p.Digime.OnboardURL, OnboardParams: p.Digime.OnboardParams,
			})
			if err != nil {
				return nil, inputError{fmt.Errorf("providers %s: %w", p.Name, err)}
			}
			out[p.Name] = c
		case config.ProviderOAuth2:
			o := p.OAuth2
			c, err := oauth2.New(oauth2.Config{
				TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret, AuthStyle: o.AuthStyle,
				Scopes: o.Scopes, PullURL: o.PullURL, PushURL: o.PushURL, CursorHeader: o.CursorHeader, Clock: clk, Logger: plog,
				AuthURL: o.AuthURL, AuthParams: o.AuthParams,
			})
			if err != nil {
				return nil, inputError{fmt.Errorf("providers %s: %w", p.Name, err)}
			}
			out[p.Name] = c
		}
	}
	return out, nil
}
