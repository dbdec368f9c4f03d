// Package digimefake is an HTTP server that speaks the digi.me API (v1.7)
// the way the public digi.me SDKs do, so syncd's digi.me client can be
// tested end to end and `syncd demo` has something to talk to. The wire
// protocol it follows is written up in shared/digime-protocol.md.
//
// It owns: request JWT checks (PS512 with the contract key, client_id,
// nonce replay, millisecond timestamp window), the JWKS, refresh with
// rotation and reuse detection (oauth/token: a rotated-away refresh
// token presented again revokes its consent's whole token family, unless
// Options.RotationGracePeriod forgives it), the consent flow (oauth/authorize,
// oauth/token/reference, onboarding pages under OnboardPrefix that
// simulate the user's answer, and the authorization_code grant with PKCE
// S256), pull sessions (trigger, file list moving
// pending→running→completed|partial, encrypted file download in the
// RSA-OAEP-SHA1 + AES-256-CBC layout, optionally gzip or brotli), direct
// import with a FileDescriptor JWT, and fault knobs (latency, random 500s,
// outages with Retry-After), all deterministic under a seed where they are
// random. Tests drive it through Issue, Revoke, ExpireRefresh,
// InvalidateAccess, AddFile, SetPartial, SetOutage and the onboarding
// pages' query knobs (see OnboardPrefix), and read it back through
// Imports, Stats, Reuses, ReusesOf, RefreshesOf, ReuseRevocations, Live,
// Secrets.
//
// It does not implement accounts, deletion, the optional storage
// reference (POST reference), onboarding of further services or account
// reauthorization pages, push to providers (FHIR) or the cloud storage
// API; those requests get an error answer. Users get tokens from Issue or
// from the consent flow.
package digimefake
