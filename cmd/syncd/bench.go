package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/syncd/syncd/internal/bench"
	"github.com/syncd/syncd/internal/errkind"
)

// cmdBench runs the benchmark harness (internal/bench).
func cmdBench(ctx context.Context, args []string, e env) error {
	fs, _ := flags("bench", e)
	users := fs.Int("users", 100000, "users to seed")
	workers := fs.Int("workers", 64, "workers per engine")
	latency := fs.Duration("latency", 0, "latency added to every provider call")
	redisURL := fs.String("redis-url", "", "Redis to use, as redis.url: redis://, redis-sentinel://, redis-cluster:// (default: start a private redis-server)")
	clusterAddrs := fs.String("cluster-addrs", "", "Redis Cluster seed nodes, comma-separated host:port, as redis.cluster_addrs")
	asJSON := fs.Bool("json", false, "print JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	providers := fs.Int("providers", 1, "providers configured (more than 1: new jobs are scheduled from the token records)")
	until := fs.String("until", "", "stop after this stage: "+strings.Join(bench.Stages, ", ")+" (default: run all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return errkind.Errorf(errkind.Invalid, "bench: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return errkind.Errorf(errkind.Invalid, "bench: --memprofile: %w", err)
		}
		defer func() {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	if *users < 1 || *workers < 1 || *providers < 1 {
		return badInput("bench: --users, --workers and --providers must be at least 1")
	}
	if *until != "" && !slices.Contains(bench.Stages, *until) {
		return badInput("bench: --until %q: want one of %s", *until, strings.Join(bench.Stages, ", "))
	}
	var seeds []string
	if *clusterAddrs != "" {
		seeds = strings.Split(*clusterAddrs, ",")
	}
	res, err := bench.Run(ctx, bench.Options{RedisURL: *redisURL, ClusterAddrs: seeds, Users: *users, Workers: *workers, Latency: *latency, Progress: e.stderr, Until: *until, Providers: *providers})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("users / workers / latency", fmt.Sprintf("%d / %d / %s", res.Users, res.Workers, *latency))
	row("machine", fmt.Sprintf("%d cores, %s; redis %s; %s", res.Cores, res.CPUModel, res.RedisVersion, res.GoVersion))
	row("job throughput", fmt.Sprintf("%.0f no-op pull runs/s, %.3f CPU s per 1k runs", res.JobsPerSec, res.CPUSecondsPer1kJobs))
	row("round trips per job", fmt.Sprintf("%.2f (Redis commands incl. script calls: %.2f)", res.RoundTripsPerJob, res.RedisCallsPerJob))
	row("refresh throughput", fmt.Sprintf("%.0f tokens/s (%.2f round trips each)", res.RefreshPerSec, res.RoundTripsPerRefresh))
	row("schedule a new job", fmt.Sprintf("%.2f s", res.ScheduleSeconds))
	row("re-score after an edit", fmt.Sprintf("%.2f s", res.RescheduleSeconds))
	row("peak RSS", fmt.Sprintf("%.1f MiB", float64(res.PeakRSSBytes)/(1<<20)))
	row("Redis memory per user", fmt.Sprintf("%.0f bytes", res.RedisBytesPerUser))
	row("lag at load", fmt.Sprintf("%.0f%%: p50 %s, p99 %s", res.LagLoad*100,
		time.Duration(res.LagP50Seconds*float64(time.Second)).Round(time.Millisecond), time.Duration(res.LagP99Seconds*float64(time.Second)).Round(time.Millisecond)))
	return tw.Flush()
}
