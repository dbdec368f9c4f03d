// Package clip shortens text that came from outside (server messages, ids,
// error strings) before it goes into an error, a log line or a record, so
// its size stays bounded and it stays valid UTF-8: String, the one
// truncation syncd has (jobs, tokens and the digi.me client use it).
//
// It does not redact: callers remove secrets first.
package clip
