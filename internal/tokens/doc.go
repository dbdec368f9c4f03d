// Package tokens owns the token model: what a user's token is and how it
// is kept at rest.
//
// It owns Token and the documents it is parsed from (ParseToken), the
// sealing of its secret parts (Keyring, SealToken, OpenRecord), the check
// of the configured keys against the database (Keyring.Verify) and key
// rotation (Rotate); the stored Record, the user State and its
// Transitions, the Status shown to operators, the classes of refresh
// failures (Class, RefreshError, Classify) that providers report, and the
// quarantine entries. Store declares what the token lifecycle needs from
// storage; the refresh due set is RefreshSet.
//
// It does not refresh tokens, schedule refreshes or call providers: that
// is internal/refresher. It does not talk to Redis: internal/redisstore
// implements Store (and the lease, commit and flag scripts behind it).
package tokens
