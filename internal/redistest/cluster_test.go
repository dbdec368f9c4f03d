package redistest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/syncd/syncd/internal/redistest"
)

// TestClusterSpreadsAndFailsOver: StartCluster gives three masters that
// share the keys, and Failover promotes a master's replica with the data.
func TestClusterSpreadsAndFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := redistest.StartCluster(t)
	rdb := c.Client(t)
	ctx := context.Background()
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("masters: %v", masters)
	}
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("%sk%d", c.Prefix, i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	holders := map[string]bool{}
	for i := range 100 {
		m, err := rdb.MasterForKey(ctx, fmt.Sprintf("%sk%d", c.Prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		holders[m.Options().Addr] = true
	}
	if len(holders) != 3 {
		t.Fatalf("100 keys on %d masters", len(holders))
	}

	promoted := c.Failover(t, masters[0])
	after := c.Masters(t)
	if slices.Contains(after, masters[0]) || !slices.Contains(after, promoted) {
		t.Fatalf("after failover of %s: masters %v", masters[0], after)
	}
	for i := range 100 {
		if got, err := rdb.Get(ctx, fmt.Sprintf("%sk%d", c.Prefix, i)).Int(); err != nil || got != i {
			t.Fatalf("k%d after failover: %d %v", i, got, err)
		}
	}
}
