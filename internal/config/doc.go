// Package config owns syncd's configuration: the YAML schema, its defaults,
// loading and validation.
//
// Loading happens in a fixed order: the raw file text has braced environment
// references (${NAME}) expanded, the YAML is decoded strictly (unknown keys
// are errors) over DefaultConfig, SYNCD_REDIS_URL overrides redis.url,
// relative *_file paths are resolved against the config file's directory,
// and finally Validate checks every field and derives the values other
// packages need already parsed: decoded encryption keys, cron schedules and
// time zones. A *Config returned by Load or Parse is valid and complete;
// callers never re-parse a cron spec, a key or a time zone.
//
// Validation problems are reported all at once, on one line, each naming the
// field path and the bad value (never a secret), for example
//
//	jobs[1].schedule: invalid cron spec "*/61 * * * *": ...
//
// Individual problems are *FieldError values reachable with errors.As.
//
// The files follow those steps: schema.go declares the types and documents
// every field; load.go finds the file (Path), reads and expands it, decodes
// it over the defaults (DefaultConfig, DefaultProvider, DefaultJob) and
// applies the environment override (Load, Parse); validate.go checks the
// result and derives the parsed values (Validate).
//
// The package does not own what the values mean at run time: it does not
// connect to Redis, build loggers, encrypt anything or run jobs, and it does
// not watch the file; reloading is the caller calling Load again.
package config
