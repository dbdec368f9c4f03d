package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/redistest"
)

// TestReplicaFollowsAndFreezes: a replica holds what its master wrote
// once WAIT counts it; frozen, it acknowledges nothing; thawed, it
// catches up.
func TestReplicaFollowsAndFreezes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers")
	}
	master := redistest.StartPrivate(t)
	replica := redistest.StartReplica(t, master)
	mc, rc := master.Client(t), replica.Client(t)
	ctx := context.Background()
	conn := mc.Conn()
	defer conn.Close()

	if err := conn.Set(ctx, master.Prefix+"k", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("wait: %d %v", n, err)
	}
	if got, err := rc.Get(ctx, master.Prefix+"k").Result(); err != nil || got != "1" {
		t.Fatalf("replica has %q %v", got, err)
	}

	thaw := replica.Freeze(t)
	if err := conn.Set(ctx, master.Prefix+"k", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(ctx, 1, 100*time.Millisecond).Result(); err != nil || n != 0 {
		t.Fatalf("wait on a frozen replica: %d %v", n, err)
	}
	thaw()
	redistest.WaitReplicated(t, mc)
	if got, err := rc.Get(ctx, master.Prefix+"k").Result(); err != nil || got != "2" {
		t.Fatalf("thawed replica has %q %v", got, err)
	}
}
