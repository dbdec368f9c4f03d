package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/daemon"
	"github.com/syncd/syncd/internal/errkind"
)

// defaultGOGC is the collector's target unless GOGC is set: syncd's live
// heap is a few MiB whatever the number of users (everything streams), so
// Go's default of 100 collects every few MiB of garbage, which cost a
// fifth of job throughput in the benchmark (docs/benchmarks.md). At 400
// the peak RSS at a million users stays under 50 MiB; GOMEMLIMIT still
// caps the heap as usual.
const defaultGOGC = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	// The first SIGINT/SIGTERM ends ctx: the command finishes its work
	// (the daemon drains). terms sees every one: a second exits at once.
	terms := make(chan os.Signal, 2)
	signal.Notify(terms, os.Interrupt, syscall.SIGTERM)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-terms
		<-terms
		log := newLogger(config.LogConfig{Format: "auto"}, os.Stderr)
		log.Warn().Msg("second signal: exiting now")
		os.Exit(exitError)
	}()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	// SIGHUP reloads the daemon's config; other commands keep its
	// default (they end with their terminal).
	if len(os.Args) > 1 && os.Args[1] == "run" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		reload := make(chan struct{}, 1)
		go func() {
			for range hup {
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}()
		e.reload = reload
	}
	os.Exit(run(ctx, os.Args[1:], e))
}

// env is what a command may touch of the outside world, so tests run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// reload receives a request per SIGHUP (run only; nil: never).
	reload <-chan struct{}
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed (Redis down, ...)
	exitUsage = 2 // bad input: flags, config, token; nothing was written
)

// exitCode is the exit code for a command's error, by its errkind: the
// one place kinds become exit codes. What the caller named or asked for
// is theirs to fix (2); an outage or an error of no kind is not (1).
func exitCode(err error) int {
	switch errkind.Of(err) {
	case errkind.Invalid, errkind.NotFound, errkind.Conflict:
		return exitUsage
	}
	return exitError
}

// requireUser checks a command's --user: given, and valid by check:
// tokens.ValidateUserID for a command that stores a token (it may create
// the user), tokens.ValidateExistingUserID for one that addresses a
// stored user, whose id an earlier syncd may have accepted.
func requireUser(cmd, user string, check func(string) error) error {
	if user == "" {
		return badInput("%s: --user is required", cmd)
	}
	if err := check(user); err != nil {
		return errkind.Errorf(errkind.Invalid, "%s: %w", cmd, err)
	}
	return nil
}

// badInput is an error about the caller's input (exit code 2).
func badInput(format string, args ...any) error {
	return errkind.Errorf(errkind.Invalid, format, args...)
}

type command struct {
	name string
	help string
	run  func(ctx context.Context, args []string, e env) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "the daemon: refresh tokens, run jobs, serve the admin API (SIGHUP reloads)", cmdRun},
		{"token put", "store a user's token (digi.me UserAccessToken or OAuth2 JSON) from --file or stdin", cmdTokenPut},
		{"token show", "show a user's token metadata (never a token value)", cmdTokenShow},
		{"users list", "list users, optionally by --state", cmdUsersList},
		{"users show", "everything about one user: state, tokens, each job's next run and last outcome", cmdUsersShow},
		{"users disable", "switch a user off: no refreshes, no jobs (operator)", cmdUsersDisable},
		{"users enable", "switch a disabled user back on", cmdUsersEnable},
		{"reauth list", "list users waiting for re-authorization (--links: with a fresh link each)", cmdReauthList},
		{"authorize start", "a consent link for a user: authorize start --user ID [--reauth]", cmdAuthorizeStart},
		{"authorize exchange", "finish consent: authorize exchange --state S --code C", cmdAuthorizeExchange},
		{"config check", "validate the config and print each job's next three runs", cmdConfigCheck},
		{"jobs list", "jobs: schedule, next slot, users due, lag, runs and failures in the last hour", cmdJobsList},
		{"jobs trigger", "run a job now: jobs trigger NAME [--user ID]", cmdJobsTrigger},
		{"jobs pause", "pause a job on every replica: jobs pause NAME", cmdJobsPause},
		{"jobs resume", "resume a paused job: jobs resume NAME", cmdJobsResume},
		{"keys rotate", "re-encrypt every token with the primary key", cmdKeysRotate},
		{"quarantine list", "users whose record could not be read, set aside: user, reason, since", cmdQuarantineList},
		{"quarantine restore", "bring a quarantined user back once the record reads: quarantine restore --user ID", cmdQuarantineRestore},
		{"fake-digime", "serve the fake digi.me API (for trying syncd without a contract)", cmdFakeDigime},
		{"bench", "measure throughput, scheduling, memory and lag at scale", cmdBench},
		{"demo", "run syncd with an embedded Redis and a fake provider", cmdDemo},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: syncd COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes --config PATH (else $SYNCD_CONFIG, else configs/syncd.yaml); -h for its flags.")
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			err := c.run(ctx, args[len(words):], e)
			return report(e.stderr, err)
		}
	}
	fmt.Fprintf(e.stderr, "syncd: unknown command %q (see syncd --help)\n", strings.Join(args, " "))
	return exitUsage
}

// report prints err on one line and returns its exit code.
func report(w io.Writer, err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(w, "syncd: %s\n", msg)
	return exitCode(err)
}

var errHelp = errors.New("help shown")

func init() {
	// go-redis logs dial failures through its own logger; syncd reports
	// errors itself, once, on one line.
	redis.SetLogger(quietRedis{})
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// flags returns a flag set for a command, with --config on every one.
// The flag package's own output is discarded: errors are reported on one
// line by report, and -h prints the flags to stdout.
func flags(name string, e env) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("syncd "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(e.stdout)
		fmt.Fprintf(e.stdout, "usage: %s [flags]\n", fs.Name())
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	cfg := fs.String("config", "", "config file (default $SYNCD_CONFIG, else configs/syncd.yaml)")
	return fs, cfg
}

// parseFlags parses args; a bad flag is input error, -h is not an error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errkind.Errorf(errkind.Invalid, "%s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return badInput("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// openCmd loads the config and opens storage, with keys checked.
func openCmd(ctx context.Context, cfgPath string, e env) (*daemon.Offline, error) {
	cfg, err := loadConfig(cfgPath, e)
	if err != nil {
		return nil, err
	}
	return daemon.Open(ctx, cfg, newLogger(cfg.Log, e.stderr))
}
