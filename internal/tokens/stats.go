package tokens

import "context"

// CountStates counts every user by state, streaming records in batches.
func CountStates(ctx context.Context, store Store) (map[string]int64, error) {
	counts := make(map[string]int64, len(States))
	for _, st := range States {
		counts[string(st)] = 0
	}
	err := store.EachUser(ctx, func(refs []UserRef) error {
		for _, r := range refs {
			counts[string(r.State)]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}
