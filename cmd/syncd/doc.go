// Command syncd keeps delegated access to users' data alive and uses it in
// the background; README.md is its manual.
//
// It owns the command line: flags, subcommand dispatch (main.go's command
// table), signals (the first SIGTERM/SIGINT stops the command and the
// daemon drains, a second exits at once, SIGHUP reloads `syncd run`),
// what each command prints, and exit codes: exitCode is the one place
// errkind kinds become them (invalid, not found, conflict: 2; anything
// else: 1).
//
// It does not own the daemon (internal/daemon: `syncd run` and the demo
// call daemon.New, commands on the records daemon.Open), the config
// (internal/config), or what a command does to tokens, users and jobs
// (internal/refresher, internal/jobs, internal/authflow, built by the
// daemon package); the benchmark is internal/bench.
package main
