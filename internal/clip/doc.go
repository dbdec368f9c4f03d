// Package clip shortens text that came from outside (server messages, ids,
// error strings) before it goes into an error, a log line or a record, so
// its size stays bounded and it stays valid UTF-8. It does not redact:
// callers remove secrets first.
package clip
