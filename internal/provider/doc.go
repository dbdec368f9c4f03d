// Package provider holds the implementations of the provider interfaces
// that syncd's consumers declare (tokens.Provider; jobs' providers with
// the jobs issue): fake (in-process, for tests, benchmarks and the demo),
// and, with the providers issue, digime and oauth2.
package provider
