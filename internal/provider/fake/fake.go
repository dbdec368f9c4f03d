// Package fake is an in-process token provider for tests, benchmarks and
// `syncd demo`. It behaves like a strict OAuth2 server: every refresh
// rotates the refresh token, reusing an old one is rejected with
// invalid_grant, and revoked users are rejected. Fault knobs add latency,
// 5xx and 429 answers (with Retry-After), outages and credential errors.
// It is deterministic under a seed.
package fake

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Options configure a Provider. Zero values take the defaults noted.
type Options struct {
	Clock clock.Clock
	// AccessLifetime of issued access tokens (default 1h).
	AccessLifetime time.Duration
	// RefreshLifetime of issued refresh tokens; 0: they do not expire.
	RefreshLifetime time.Duration
	// Latency added to every refresh call (honours ctx).
	Latency time.Duration
	// FailRate is the fraction of refreshes answered 503.
	FailRate float64
	// ThrottleRate is the fraction answered 429 with RetryAfter.
	ThrottleRate float64
	RetryAfter   time.Duration
	// Seed makes tokens and faults repeatable.
	Seed uint64
	// ItemsPerPull is how many new items each pull delivers (default 1).
	ItemsPerPull int
}

type issued struct {
	user    string
	current bool
	expires time.Time // zero: never
}

// Provider is the fake. It implements tokens.Provider.
type Provider struct {
	mu         sync.Mutex
	opt        Options
	rng        *rand.Rand
	refresh    map[string]*issued // every refresh token ever issued
	revoked    map[string]bool
	refreshes  map[string]int
	calls      int
	rejected   int
	reused     int
	outage     int
	outageRA   time.Duration
	configCode string
	values     []string
	access     map[string]*accessInfo
	pulls      map[string][]time.Time
	pushed     map[string][]provider.PushItem
}

type accessInfo struct {
	user  string
	valid bool
}

// New returns a fake provider.
func New(opt Options) *Provider {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.AccessLifetime <= 0 {
		opt.AccessLifetime = time.Hour
	}
	return &Provider{
		opt:       opt,
		rng:       rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x5eed)),
		refresh:   make(map[string]*issued),
		revoked:   make(map[string]bool),
		refreshes: make(map[string]int),
		access:    make(map[string]*accessInfo),
		pulls:     make(map[string][]time.Time),
		pushed:    make(map[string][]provider.PushItem),
	}
}

func (p *Provider) secret(kind string) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(p.rng.Uint32())
	}
	v := kind + "-" + hex.EncodeToString(b[:])
	p.values = append(p.values, v)
	return v
}

func (p *Provider) mint(user string) tokens.Token {
	now := p.opt.Clock.Now()
	t := tokens.Token{
		UserID:       user,
		AccessToken:  p.secret("fakeat"),
		RefreshToken: p.secret("fakert"),
		TokenType:    "Bearer",
		AccessExpiry: now.Add(p.opt.AccessLifetime).Truncate(time.Second),
	}
	is := &issued{user: user, current: true}
	if p.opt.RefreshLifetime > 0 {
		is.expires = now.Add(p.opt.RefreshLifetime).Truncate(time.Second)
		t.RefreshExpiry = is.expires
	}
	p.refresh[t.RefreshToken] = is
	p.access[t.AccessToken] = &accessInfo{user: user, valid: true}
	return t
}

// Issue is a new consent: it revokes nothing, un-revokes the user, and
// returns fresh tokens (what an app would hand to syncd).
func (p *Provider) Issue(user string) tokens.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.revoked, user)
	for _, is := range p.refresh {
		if is.user == user {
			is.current = false
		}
	}
	return p.mint(user)
}

// Revoke makes every refresh of user fail with invalid_grant.
func (p *Provider) Revoke(user string) {
	p.mu.Lock()
	p.revoked[user] = true
	p.mu.Unlock()
}

// SetOutage answers every refresh with status (e.g. 503, 429) and
// Retry-After retryAfter until called with status 0.
func (p *Provider) SetOutage(status int, retryAfter time.Duration) {
	p.mu.Lock()
	p.outage, p.outageRA = status, retryAfter
	p.mu.Unlock()
}

// SetConfigError answers every refresh with an OAuth client error code
// (e.g. "invalid_client") until called with "".
func (p *Provider) SetConfigError(code string) {
	p.mu.Lock()
	p.configCode = code
	p.mu.Unlock()
}

// Refresh implements tokens.Provider.
func (p *Provider) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if p.opt.Latency > 0 {
		timer := time.NewTimer(p.opt.Latency)
		select {
		case <-ctx.Done():
			timer.Stop()
			return tokens.Token{}, tokens.NewRefreshError(0, "timeout", 0, ctx.Err())
		case <-timer.C:
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.outage != 0 {
		return tokens.Token{}, tokens.NewRefreshError(p.outage, "", p.outageRA, nil)
	}
	if p.configCode != "" {
		return tokens.Token{}, tokens.NewRefreshError(401, p.configCode, 0, nil)
	}
	if p.opt.ThrottleRate > 0 && p.rng.Float64() < p.opt.ThrottleRate {
		return tokens.Token{}, tokens.NewRefreshError(429, "", p.opt.RetryAfter, nil)
	}
	if p.opt.FailRate > 0 && p.rng.Float64() < p.opt.FailRate {
		return tokens.Token{}, tokens.NewRefreshError(503, "", 0, nil)
	}
	is, ok := p.refresh[t.RefreshToken]
	switch {
	case !ok || is.user != t.UserID:
		p.rejected++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	case !is.current:
		p.rejected++
		p.reused++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	case p.revoked[is.user]:
		p.rejected++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	case !is.expires.IsZero() && !p.opt.Clock.Now().Before(is.expires):
		p.rejected++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	}
	is.current = false
	p.refreshes[is.user]++
	return p.mint(is.user), nil
}

// Stats is what the fake has seen.
type Stats struct {
	Calls     int // refresh calls, including failed ones
	Refreshes int // successful refreshes
	Rejected  int // invalid_grant answers
	Reused    int // of which: an old, rotated refresh token was presented
}

// Stats returns counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Calls: p.calls, Rejected: p.rejected, Reused: p.reused}
	for _, n := range p.refreshes {
		s.Refreshes += n
	}
	return s
}

// Refreshes returns how many times user was refreshed successfully.
func (p *Provider) Refreshes(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes[user]
}

// Secrets returns every token value the fake has issued, for tests that
// check nothing leaked.
func (p *Provider) Secrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.values...)
}

// InvalidateAccess makes user's access tokens issued so far fail data
// calls with 401, as if they expired early.
func (p *Provider) InvalidateAccess(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.access {
		if a.user == user {
			a.valid = false
		}
	}
}

func (p *Provider) accessOK(user string, t tokens.Token) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.access[t.AccessToken]
	if !ok || !a.valid || a.user != user {
		return false
	}
	return true
}

// authorize gets a token from src and, like a real API, answers 401 to a
// stale one: the caller refreshes once through src and retries once.
func (p *Provider) authorize(ctx context.Context, op, user string, src provider.TokenSource) error {
	t, err := src.Token(ctx)
	if err != nil {
		return err
	}
	if p.accessOK(user, t) {
		return nil
	}
	if t, err = src.Rejected(ctx, t); err != nil {
		return err
	}
	if p.accessOK(user, t) {
		return nil
	}
	return &provider.Error{Op: op, Status: 401, Code: "invalid_token"}
}

// Pull delivers ItemsPerPull new items named item-N, N counting up from
// the cursor, and records the run.
func (p *Provider) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	res := provider.PullResult{Cursor: cursor, Status: "completed"}
	if err := p.authorize(ctx, "pull", user, src); err != nil {
		return res, err
	}
	p.mu.Lock()
	now := p.opt.Clock.Now()
	p.pulls[user] = append(p.pulls[user], now)
	p.mu.Unlock()
	seq, _ := strconv.Atoi(cursor)
	for i := 1; i <= max(p.opt.ItemsPerPull, 1); i++ {
		it := provider.Item{Name: "item-" + strconv.Itoa(seq+i), Data: []byte("data for " + user + " #" + strconv.Itoa(seq+i)),
			MimeType: "text/plain", UpdatedAt: now}
		if err := deliver(it); err != nil {
			return res, err
		}
		res.Cursor = strconv.Itoa(seq + i)
		res.Delivered++
	}
	return res, nil
}

// Push records an item; an item whose data starts with "poison" is
// rejected with a permanent 400.
func (p *Provider) Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error {
	if err := p.authorize(ctx, "push", user, src); err != nil {
		return err
	}
	if strings.HasPrefix(string(item.Data), "poison") {
		return &provider.Error{Op: "push", Status: 400, Code: "invalid_item", Permanent: true}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushed[user] = append(p.pushed[user], item)
	return nil
}

// Pulls returns the times user was pulled.
func (p *Provider) Pulls(user string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.pulls[user]...)
}

// Pushed returns the items pushed for user, in order.
func (p *Provider) Pushed(user string) []provider.PushItem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]provider.PushItem(nil), p.pushed[user]...)
}
