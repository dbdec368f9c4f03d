package tokens

import "context"

// CountStates counts every user by state, streaming records in batches.
func CountStates(ctx context.Context, store Store) (map[string]int64, error) {
	counts := make(map[string]int64, len(States))
	for _, st := range States {
		counts[string(st)] = 0
	}
	var cursor uint64
	for {
		recs, next, err := store.ScanUsers(ctx, cursor, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			counts[string(r.State)]++
		}
		if cursor = next; cursor == 0 {
			return counts, nil
		}
	}
}
