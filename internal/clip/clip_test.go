package clip_test

import (
	"testing"

	"github.com/syncd/syncd/internal/clip"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"abc", 0, "…"},
		{"aé", 2, "a…"}, // é is 2 bytes: not split
		{"日本", 4, "日…"},
		{"日本", 6, "日本"},
	} {
		if got := clip.String(tc.in, tc.n); got != tc.want {
			t.Errorf("String(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
