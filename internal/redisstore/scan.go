package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/errkind"
)

// SCAN walks one server's keyspace. On Redis Cluster each master holds
// its own slots' keys and a SCAN sent through the cluster client lands on
// one node, so every walk here runs on every master in turn (scanNodes).
// Reads and writes of the keys found still go through the store's client,
// which follows MOVED and ASK should a slot move meanwhile. A walk that
// spans a failover or a resharding may miss or repeat keys that moved
// during it, as SCAN does across a rehash; the walks are repeated
// (housekeeping, migration) or resumable (key rotation, user listing).

// nodeErr marks err, of a call to one node or of the cluster's topology
// (neither passes the store's outageHook), as outageHook would.
func nodeErr(err error) error {
	if outage(err) {
		return errkind.Mark(errkind.Unavailable, err)
	}
	return err
}

// scanNodes returns the servers a SCAN walk visits: every master of a
// Redis Cluster, ordered by the lowest slot each serves (a promoted
// replica serves its master's slots, so the order survives a failover),
// or the one server otherwise.
func (s *Store) scanNodes(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{s.rdb}, nil
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return nil, nodeErr(err)
	}
	first := make(map[string]int)
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" {
				continue
			}
			host := n.Endpoint
			if host == "" {
				host = n.IP
			}
			a := net.JoinHostPort(host, strconv.FormatInt(n.Port, 10))
			for _, r := range sh.Slots {
				if v, ok := first[a]; !ok || int(r.Start) < v {
					first[a] = int(r.Start)
				}
			}
		}
	}
	var mu sync.Mutex
	var masters []*redis.Client
	err = cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters = append(masters, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, nodeErr(err)
	}
	// A master serving no slot holds no keys of its own: last.
	at := func(c *redis.Client) int {
		if v, ok := first[c.Options().Addr]; ok {
			return v
		}
		return math.MaxInt
	}
	slices.SortFunc(masters, func(a, b *redis.Client) int {
		return cmp.Or(cmp.Compare(at(a), at(b)), cmp.Compare(a.Options().Addr, b.Options().Addr))
	})
	out := make([]redis.Cmdable, len(masters))
	for i, c := range masters {
		out[i] = c
	}
	return out, nil
}

// nodeBits is where a cluster-wide cursor (Store.Scan) keeps the index of
// the master it walks, above that master's own SCAN cursor. A Redis
// cursor addresses a bucket of the keyspace's hash table, far below 2^54
// buckets; 2^10 masters is the most Redis Cluster supports.
const nodeBits = 54

// scanAll runs SCAN over every node of scanNodes, one after the other,
// handing each batch of keys (of type typ; "" for any) to fn.
func (s *Store) scanAll(ctx context.Context, pattern, typ string, count int64, fn func(keys []string) error) error {
	nodes, err := s.scanNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		var cursor uint64
		for {
			keys, next, err := n.ScanType(ctx, cursor, pattern, count, typ).Result()
			if err != nil {
				return nodeErr(err)
			}
			if len(keys) > 0 {
				if err := fn(keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// scanStep runs one SCAN of a walk over every node, from cursor (0 to
// start), and returns the cursor to go on from (0 at the end). On one
// server it is that server's cursor; on a cluster it carries the index
// of the master it walks (nodeBits).
func (s *Store) scanStep(ctx context.Context, cursor uint64, pattern string, count int64) ([]string, uint64, error) {
	if _, ok := s.rdb.(*redis.ClusterClient); !ok {
		return s.rdb.Scan(ctx, cursor, pattern, count).Result()
	}
	nodes, err := s.scanNodes(ctx)
	if err != nil {
		return nil, 0, err
	}
	i, c := int(cursor>>nodeBits), cursor&(1<<nodeBits-1)
	if i >= len(nodes) {
		return nil, 0, fmt.Errorf("cursor %d: no master %d of %d", cursor, i, len(nodes))
	}
	keys, next, err := nodes[i].Scan(ctx, c, pattern, count).Result()
	if err != nil {
		return nil, 0, nodeErr(err)
	}
	switch {
	case next>>nodeBits != 0:
		return nil, 0, fmt.Errorf("scan cursor %d of master %d too large", next, i)
	case next != 0:
		return keys, uint64(i)<<nodeBits | next, nil
	case i+1 < len(nodes):
		return keys, uint64(i+1) << nodeBits, nil
	}
	return keys, 0, nil
}
