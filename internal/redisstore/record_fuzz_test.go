package redisstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/syncd/syncd/internal/tokens"
)

// FuzzParseRecord feeds the record parser hashes as Redis could hold them
// (any field missing, empty, out of range, oversized). It must never
// panic; an error wraps tokens.ErrMalformedRecord and names no value; a
// record it accepts is one the walk (refOf) accepts too, with the same
// state and provider, and within MaxRecordBytes.
func FuzzParseRecord(f *testing.F) {
	for _, seed := range [][8]string{
		{"1", "fake", "k1", "sealed", "active", "1767366245000", "", ""},
		{"7", "digime", "k2", "sealed", "reauth_required", "0", "f", "3"},
		{"0", "fake", "k1", "sealed", "active", "1", "", ""},
		{"-1", "fake", "k1", "sealed", "active", "1", "", ""},
		{"1", "fake", "", "sealed", "active", "1", "", ""},
		{"1", "fake", "k1", "", "active", "1", "", ""},
		{"1", "fake", "k1", "sealed", "quarantined", "1", "", ""},
		{"1", "fake", "k1", "sealed", "active", "", "", ""},
		{"1", "fake", "k1", "sealed", "active", "1e3", "re", "-5"},
		{"9223372036854775807", "fake", "k1", "sealed", "disabled", "9223372036854775807", "lu", "x"},
		{"1", "fake", "k1", strings.Repeat("c", MaxRecordBytes), "active", "1", "", ""},
		{"1", "fake", "k1", "sealed", "active", "1", "le", strings.Repeat("e", MaxRecordBytes)},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7])
	}
	const secret = "SECRET-VALUE-"
	f.Fuzz(func(t *testing.T, v, p, k, c, s, ae, extraKey, extraVal string) {
		m := map[string]string{}
		for _, kv := range [][2]string{{"v", v}, {"p", p}, {"k", k}, {"c", secret + c}, {"s", s}, {"ae", ae}} {
			if kv[1] != "" {
				m[kv[0]] = kv[1]
			}
		}
		if extraKey != "" {
			m[extraKey] = extraVal
		}
		rec, err := parseRecord("u1", m)
		if err != nil {
			if !errors.Is(err, tokens.ErrMalformedRecord) {
				t.Fatalf("error %v does not wrap ErrMalformedRecord", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q shows the ciphertext", err)
			}
			return
		}
		if recordSize(m) > MaxRecordBytes {
			t.Fatalf("accepted a record of %d bytes", recordSize(m))
		}
		if rec.Version < 1 || rec.KeyID == "" || len(rec.Ciphertext) == 0 || rec.Failures < 0 {
			t.Fatalf("accepted %+v", rec)
		}
		get := func(f string) any {
			if x, ok := m[f]; ok {
				return x
			}
			return nil
		}
		ref, gone, bad := refOf("u1", []any{get("s"), get("p"), get("v"), get("k"), get("ae")})
		if gone || bad || ref.State != rec.State || ref.Provider != rec.Provider {
			t.Fatalf("the walk disagrees: gone %v bad %v ref %+v, record %+v", gone, bad, ref, rec)
		}
	})
}
