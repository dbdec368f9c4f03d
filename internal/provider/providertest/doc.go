// Package providertest is the contract every provider passes: Run drives
// the same cases against digime (with digimefake), oauth2 (with
// oauth2fake) and the in-process fake, each wired to its server by a
// Harness. The cases cover refresh and rotation, reuse of a rotated-away
// refresh token revoking the whole token family (unless a rotation grace
// period forgives it), revocation, outages with Retry-After, client
// credential errors, and pulls and pushes that ask the token source for a
// new token once after a 401. Each fake is as strict as the strictest real
// server, so passing here means a provider behaves the same under the
// refresher whichever it is.
//
// It does not test a provider's own wire details (each package's tests
// do) nor the refresher and job runner on top of them.
package providertest
