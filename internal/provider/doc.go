// Package provider holds what every provider shares: the TokenSource a
// provider gets a user's token from for data calls, pulled items (Item,
// PullResult, AccountError), PushItem, the data-call Error
// (Permanent4xx), the one Retry-After parser (ParseRetryAfter), and the
// consent-flow interfaces (Authorizer, Reauthorizer, AuthRequest,
// ExchangeRequest) that internal/authflow drives. The refresh side (a
// Refresh method returning a classified *tokens.RefreshError) is declared
// by its consumer, refresher.Provider.
//
// Implementations live in the sub-packages: digime (the digi.me API),
// oauth2 (any RFC 6749 API), and fake (in-process: a provider of
// kind fake, and the tests). digimefake and oauth2fake are HTTP servers
// that speak the real protocols as strictly as the strictest servers, for
// the tests (digimefake also for `syncd demo` and `syncd fake-digime`);
// providertest is the contract digime, oauth2 and fake all pass.
//
// It does not own when tokens are refreshed or where they are stored,
// scheduling, or what becomes of pulled items (internal/jobs' sinks).
package provider
