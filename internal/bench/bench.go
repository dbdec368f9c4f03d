package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// Options configure a run.
type Options struct {
	// RedisURL is the Redis to use, in any form redis.url takes; empty,
	// without ClusterAddrs, starts a private redis-server.
	RedisURL string
	// ClusterAddrs are Redis Cluster seed nodes (redis.cluster_addrs);
	// RedisURL then gives only TLS, user and password.
	ClusterAddrs []string

	Users   int
	Workers int
	// Latency is added to every provider call.
	Latency time.Duration
	// LagLoad is the fraction of measured job capacity the lag stage
	// schedules (default 0.5).
	LagLoad float64
	// Progress receives a line per stage.
	Progress io.Writer
	// Providers is how many providers the job runner is configured with
	// (default 1). Every user belongs to the first; with more, a new job
	// is scheduled from the token records rather than the refresh due set.
	Providers int
	// Until, if set, stops after that stage: "schedule" (scheduling,
	// re-scoring and memory), "jobs" or "refresh"; the lag stage is last.
	// For profiling a stage at a million users without the rest.
	Until string
}

// lease is every engine's lease, as syncd run's default.
const lease = time.Minute

// Stages Options.Until accepts.
var Stages = []string{"schedule", "jobs", "refresh"}

// Result is what a run measured.
type Result struct {
	Users                int     `json:"users"`
	Workers              int     `json:"workers"`
	LatencySeconds       float64 `json:"latency_seconds"`
	SeedSeconds          float64 `json:"seed_seconds"`
	JobsPerSec           float64 `json:"jobs_per_sec"`
	CPUSecondsPer1kJobs  float64 `json:"cpu_seconds_per_1k_jobs"`
	RoundTripsPerJob     float64 `json:"round_trips_per_job"`
	RedisCallsPerJob     float64 `json:"redis_calls_per_job"`
	RefreshPerSec        float64 `json:"refresh_per_sec"`
	RoundTripsPerRefresh float64 `json:"round_trips_per_refresh"`
	ScheduleSeconds      float64 `json:"schedule_seconds"`
	RescheduleSeconds    float64 `json:"reschedule_seconds"`
	PeakRSSBytes         int64   `json:"peak_rss_bytes"`
	RedisBytesPerUser    float64 `json:"redis_bytes_per_user"`
	LagLoad              float64 `json:"lag_load"`
	LagP50Seconds        float64 `json:"lag_p50_seconds"`
	LagP99Seconds        float64 `json:"lag_p99_seconds"`
	Cores                int     `json:"cores"`
	CPUModel             string  `json:"cpu_model"`
	RedisVersion         string  `json:"redis_version"`
	GoVersion            string  `json:"go_version"`
}

// counter counts client round trips: one per command, one per pipeline.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}

// Run runs every stage and returns the figures.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Users < 1 {
		return Result{}, fmt.Errorf("bench: --users must be at least 1")
	}
	if opt.Workers < 1 {
		opt.Workers = 64
	}
	if opt.LagLoad <= 0 || opt.LagLoad >= 1 {
		opt.LagLoad = 0.5
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(opt.Progress, "bench: "+format+"\n", args...) }
	res := Result{Users: opt.Users, Workers: opt.Workers, LatencySeconds: opt.Latency.Seconds(), LagLoad: opt.LagLoad,
		Cores: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version()}

	rc := config.DefaultConfig().Redis
	rc.URL, rc.ClusterAddrs = opt.RedisURL, opt.ClusterAddrs
	if rc.URL == "" && len(rc.ClusterAddrs) == 0 {
		u, stop, err := startRedis()
		if err != nil {
			return res, err
		}
		defer stop()
		rc.URL = u
	} else if rc.URL == "" {
		rc.URL = "redis://"
	}
	if err := rc.Validate(); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	// As syncd run: a refresher and two jobs' engines, each with Workers.
	rdb := redisstore.NewClient(rc.ClientOptions(), 3*opt.Workers, lease)
	defer rdb.Close()
	rt := &counter{}
	rdb.AddHook(rt)
	prefix := "bench-" + randHex(4) + ":"
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Shards: 16})
	if err := store.Ping(ctx); err != nil {
		return res, err
	}
	info, _ := store.Info(ctx, "server")
	res.RedisVersion = info["redis_version"]
	memBefore := usedMemory(ctx, store)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keys, _ := tokens.NewKeyring("bench", map[string][]byte{"bench": key})
	if err := keys.Verify(ctx, store); err != nil { // as syncd run does
		return res, err
	}
	log := zerolog.Nop()
	prov := &noop{latency: opt.Latency}

	// Seed: users with sealed tokens, streamed in batches.
	say("seeding %d users", opt.Users)
	start := time.Now()
	now := time.Now()
	if err := seed(ctx, store, keys, opt.Users, now); err != nil {
		return res, err
	}
	res.SeedSeconds = time.Since(start).Seconds()

	// Scheduling a new job for every user, then a schedule change.
	jobsDoc := func(spec, spread string, push bool) []config.JobConfig {
		doc := fmt.Sprintf("encryption: {keys: [{id: k, secret: %q}]}\nproviders: [{name: bench, kind: fake}]\njobs:\n"+
			"  - {name: pull, kind: pull, schedule: %q, spread: %s, timeout: 30s}\n",
			"O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=", spec, spread)
		if push {
			doc += "  - {name: push, kind: push, schedule: \"@every 1h\"}\n"
		}
		cfg, err := config.Parse(strings.NewReader(doc), ".", func(string) string { return "" })
		if err != nil {
			panic(err)
		}
		return cfg.Jobs
	}
	var ref *refresher.Refresher
	var runs, lagN atomic.Int64
	var lags lagHist
	collectLag := atomic.Bool{}
	var lagFrom atomic.Int64
	provEntries := map[string]jobs.ProviderEntry{"bench": {Provider: prov, Burst: 1, MaxConcurrency: opt.Workers}}
	for i := 2; i <= opt.Providers; i++ {
		provEntries[fmt.Sprintf("bench-%d", i)] = jobs.ProviderEntry{Provider: prov, Burst: 1, MaxConcurrency: opt.Workers}
	}
	newRunner := func(js []config.JobConfig) (*jobs.Runner, error) {
		return jobs.NewRunner(store, func(rec tokens.Record, min time.Duration) provider.TokenSource { return ref.SourceFrom(rec, min) },
			provEntries, js,
			jobs.Options{Workers: opt.Workers, Batch: 512, Lease: lease, PollInterval: 20 * time.Millisecond, Logger: log,
				Observe: func(r jobs.Run) {
					if r.Result != jobs.ResultOK {
						return
					}
					runs.Add(1)
					if collectLag.Load() && r.Due.UnixNano() >= lagFrom.Load() {
						lagN.Add(1)
						lags.add(time.Since(r.Due).Seconds())
					}
				}})
	}
	ref, err := refresher.New(store, keys, map[string]refresher.ProviderEntry{"bench": {Provider: prov, Policy: refresher.Policy{
		Lead: 10 * time.Minute, Jitter: time.Minute, DefaultLifetime: time.Hour, Timeout: 10 * time.Second,
		RetryInitial: time.Second, RetryMax: time.Minute, RetryAfterCap: time.Minute, DegradedAfter: 3}}},
		refresher.Options{Workers: opt.Workers, Batch: 512, Lease: lease, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		return res, err
	}

	say("scheduling %d users for a new job", opt.Users)
	r0, err := newRunner(jobsDoc("@every 1h", "0s", false))
	if err != nil {
		return res, err
	}
	start = time.Now()
	if err := r0.Sync(ctx); err != nil {
		return res, err
	}
	res.ScheduleSeconds = time.Since(start).Seconds()
	rp, _ := newRunner(jobsDoc("@every 1h", "0s", true)) // adds the push job
	if err := rp.Sync(ctx); err != nil {
		return res, err
	}
	say("re-scoring after a schedule change")
	r1, _ := newRunner(jobsDoc("@every 2h", "0s", true))
	start = time.Now()
	if err := r1.Sync(ctx); err != nil {
		return res, err
	}
	res.RescheduleSeconds = time.Since(start).Seconds()
	res.RedisBytesPerUser = float64(usedMemory(ctx, store)-memBefore) / float64(opt.Users)
	stop := func() (Result, error) {
		res.PeakRSSBytes = peakRSS()
		_ = dropKeys(ctx, rdb, prefix)
		return res, nil
	}
	if opt.Until == "schedule" {
		return stop()
	}

	// Job throughput: every pull entry due now, no-op pulls.
	say("job throughput: %d no-op pulls, %d workers", opt.Users, opt.Workers)
	if _, err := r1.Trigger(ctx, "pull", ""); err != nil {
		return res, err
	}
	if err := store.SetPaused(ctx, "push", true); err != nil {
		return res, err
	}
	cpu0, rt0, calls0 := cpuSeconds(), rt.n.Load(), redisCalls(ctx, store)
	start = time.Now()
	runs.Store(0)
	if err := r1.Start(ctx); err != nil {
		return res, err
	}
	waitFor(ctx, func() bool { return runs.Load() >= int64(opt.Users) })
	el := time.Since(start).Seconds()
	res.JobsPerSec = float64(opt.Users) / el
	res.CPUSecondsPer1kJobs = (cpuSeconds() - cpu0) / float64(opt.Users) * 1000
	res.RoundTripsPerJob = float64(rt.n.Load()-rt0) / float64(opt.Users)
	res.RedisCallsPerJob = float64(redisCalls(ctx, store)-calls0) / float64(opt.Users)
	_ = r1.Stop(context.Background())
	if opt.Until == "jobs" {
		return stop()
	}

	// Refresh throughput: every token due now.
	say("refresh throughput: %d tokens", opt.Users)
	entries := make([]scheduler.Entry, 0, 1000)
	var cursor uint64
	for {
		recs, _, next, err := store.Scan(ctx, cursor, 1000)
		if err != nil {
			return res, err
		}
		entries = entries[:0]
		for _, r := range recs {
			entries = append(entries, scheduler.Entry{Member: r.UserID, At: now.Add(-time.Second)})
		}
		_ = store.ScheduleDue(ctx, tokens.RefreshSet, entries)
		if cursor = next; cursor == 0 {
			break
		}
	}
	var refreshed atomic.Int64
	ref2, _ := refresher.New(store, keys, map[string]refresher.ProviderEntry{"bench": {Provider: prov, Policy: refresher.Policy{
		Lead: 10 * time.Minute, Jitter: time.Minute, DefaultLifetime: time.Hour, Timeout: 10 * time.Second,
		RetryInitial: time.Second, RetryMax: time.Minute, RetryAfterCap: time.Minute, DegradedAfter: 3}}},
		refresher.Options{Workers: opt.Workers, Batch: 512, Lease: lease, PollInterval: 20 * time.Millisecond, Logger: log,
			Observe: func(r refresher.Result) {
				if r.Outcome == refresher.OutcomeOK {
					refreshed.Add(1)
				}
			}})
	rt0 = rt.n.Load()
	start = time.Now()
	_ = ref2.Start(ctx)
	waitFor(ctx, func() bool { return refreshed.Load() >= int64(opt.Users) })
	el = time.Since(start).Seconds()
	res.RefreshPerSec = float64(opt.Users) / el
	res.RoundTripsPerRefresh = float64(rt.n.Load()-rt0) / float64(opt.Users)
	_ = ref2.Stop(context.Background())
	if opt.Until == "refresh" {
		return stop()
	}

	// Lag: a steady schedule whose load is LagLoad of the measured
	// capacity, spread evenly over the interval. Only runs due after the
	// runner started count (re-scoring a million entries takes seconds
	// and must not show as lag), and at most a minute is observed.
	interval := time.Duration(float64(opt.Users) / (opt.LagLoad * res.JobsPerSec) * float64(time.Second))
	interval = max(interval.Round(time.Second), 2*time.Second)
	say("lag: @every %s spread over the interval (load %.0f%% of capacity)", interval, opt.LagLoad*100)
	r2, _ := newRunner(jobsDoc("@every "+interval.String(), (interval - time.Second).String(), true))
	if err := r2.Sync(ctx); err != nil {
		return res, err
	}
	lagFrom.Store(time.Now().UnixNano())
	collectLag.Store(true)
	_ = r2.Start(ctx)
	select {
	case <-time.After(min(interval, time.Minute) + 2*time.Second):
	case <-ctx.Done():
	}
	_ = r2.Stop(context.Background())
	res.LagP50Seconds, res.LagP99Seconds = lags.quantile(0.5), lags.quantile(0.99)
	return stop()
}

// noop is a zero-latency provider: refreshes issue fresh tokens, pulls
// find nothing new, pushes succeed. It keeps no state per user.
type noop struct{ latency time.Duration }

func (p *noop) wait(ctx context.Context) error {
	if p.latency <= 0 {
		return nil
	}
	t := time.NewTimer(p.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (p *noop) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if err := p.wait(ctx); err != nil {
		return tokens.Token{}, err
	}
	return tokens.Token{AccessToken: "at-" + randHex(8), RefreshToken: "rt-" + randHex(8), AccessExpiry: time.Now().Add(time.Hour)}, nil
}

func (p *noop) Pull(ctx context.Context, _ string, src provider.TokenSource, cursor string, _ func(provider.Item) error) (provider.PullResult, error) {
	if _, err := src.Token(ctx); err != nil {
		return provider.PullResult{}, err
	}
	return provider.PullResult{Cursor: cursor, Status: "completed"}, p.wait(ctx)
}

func (p *noop) Push(ctx context.Context, _ string, src provider.TokenSource, _ provider.PushItem) error {
	if _, err := src.Token(ctx); err != nil {
		return err
	}
	return p.wait(ctx)
}

func seed(ctx context.Context, store *redisstore.Store, keys *tokens.Keyring, n int, now time.Time) error {
	const batch = 1000
	recs := make([]tokens.Record, 0, batch)
	for i := 0; i < n; i += batch {
		recs = recs[:0]
		for j := i; j < min(n, i+batch); j++ {
			u := "user-" + strconv.Itoa(j)
			// 5 minutes left: inside the refresher's 10m lead, so the
			// refresh stage refreshes every token; well over the jobs'
			// 30s timeout, so job runs do not.
			tok := tokens.Token{UserID: u, AccessToken: "at-" + randHex(16), RefreshToken: "rt-" + randHex(16), AccessExpiry: now.Add(5 * time.Minute)}
			kid, ct, err := keys.SealToken(tok, "bench")
			if err != nil {
				return err
			}
			recs = append(recs, tokens.Record{UserID: u, Provider: "bench", KeyID: kid, Ciphertext: ct, AccessExpiry: tok.AccessExpiry})
		}
		if err := store.PutMany(ctx, recs, now); err != nil {
			return err
		}
		entries := make([]scheduler.Entry, len(recs))
		for k, r := range recs {
			entries[k] = scheduler.Entry{Member: r.UserID, At: now.Add(time.Hour)}
		}
		if err := store.ScheduleDue(ctx, tokens.RefreshSet, entries); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(ctx context.Context, ok func() bool) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func usedMemory(ctx context.Context, s *redisstore.Store) int64 {
	m, _ := s.Info(ctx, "memory")
	n, _ := strconv.ParseInt(m["used_memory"], 10, 64)
	return n
}

// redisCalls sums every command Redis executed (scripts' inner calls
// included), from INFO commandstats.
func redisCalls(ctx context.Context, s *redisstore.Store) int64 {
	m, _ := s.Info(ctx, "commandstats")
	var total int64
	for k, v := range m {
		if !strings.HasPrefix(k, "cmdstat_") || strings.HasPrefix(k, "cmdstat_info") {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if c, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(c, 10, 64)
				total += n
			}
		}
	}
	return total
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func peakRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024 // kilobytes on Linux
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func dropKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return dropKeys(ctx, m, prefix) })
	}
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	// One key per UNLINK: keys of different slots cannot share one on a
	// cluster node.
	pipe := rdb.Pipeline()
	for iter.Next(ctx) {
		pipe.Unlink(ctx, iter.Val())
		if pipe.Len() == 1000 {
			_, _ = pipe.Exec(ctx)
		}
	}
	_, _ = pipe.Exec(ctx)
	return iter.Err()
}

// startRedis starts a private redis-server on a free loopback port.
func startRedis() (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("bench: redis-server not found (install it, or pass --redis-url)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "syncd-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	// hash-max-listpack-value 256 keeps a token record (whose sealed
	// token is over Redis' default 64-byte limit) in the compact
	// encoding: the setting docs/benchmarks.md recommends.
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir,
		"--hash-max-listpack-value", "256")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for i := 0; i < 200; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return url, stop, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("bench: redis-server did not start")
}

// lagHist counts lags in buckets 1% wide from 100µs up, so observing a
// minute of runs costs the same memory at any rate (a slice of every
// sample added tens of MiB to the peak RSS the harness reports).
type lagHist struct {
	mu sync.Mutex
	n  int64
	b  [2000]int64
}

const (
	lagMin    = 1e-4
	lagFactor = 1.01
)

func (h *lagHist) add(sec float64) {
	i := 0
	if sec > lagMin {
		i = min(int(math.Log(sec/lagMin)/math.Log(lagFactor))+1, len(h.b)-1)
	}
	h.mu.Lock()
	h.b[i]++
	h.n++
	h.mu.Unlock()
}

// quantile is the upper bound of the bucket holding quantile q (0 when
// nothing was observed).
func (h *lagHist) quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	target := int64(math.Ceil(q * float64(h.n)))
	var cum int64
	for i, c := range h.b {
		if cum += c; cum >= target {
			return lagMin * math.Pow(lagFactor, float64(i))
		}
	}
	return lagMin * math.Pow(lagFactor, float64(len(h.b)-1))
}
