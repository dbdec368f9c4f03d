package scheduler

// Shard returns the due-set shard of member among n shards (FNV-1a), the
// same on every replica and in every process.
func Shard(member string, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(member); i++ {
		h ^= uint32(member[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
