// Package admin is syncd's HTTP surface: /healthz, /readyz, /metrics, the
// /v1 JSON API for operators and apps, and the public authorization
// callback. It declares the Backend it serves (the daemon implements it)
// and the Gauges behind the shared-state metrics (users by state, the
// re-auth queue, the refresh backlog, quarantined records), which it reads
// from Redis at scrape time, so every replica reports the same values.
//
// Every /v1 request needs a bearer credential (access.go): the read scope
// for reads, the write scope for writes (the read one gets 403); with none
// configured /v1 answers 401. Tokens are compared in constant time, by
// hash; the daemon swaps them with SetCredentials on reload. Every write,
// and every refusal, is logged with its route, method, path and the
// credential's name, never a token. Requests whose Host is not one the
// server answers to are refused with 421 (DNS rebinding), except the
// public callback; every response says X-Content-Type-Options: nosniff.
// Request bodies are limited to MaxBody; errors are
// JSON {"error": "..."}. The error kinds a Backend returns (invalid, not
// found, conflict, unavailable) are mapped to HTTP statuses here, in one
// place (errors.go), and no response ever holds a token value. The
// public callback shows a failure by its code only and never names the
// user; results sent to done_url are signed (authorize.go).
//
// It does not own what a request does (users, tokens, jobs, consent: the
// Backend and the packages behind it), the metrics other components
// register, or where it listens (the daemon hands it listeners).
package admin
