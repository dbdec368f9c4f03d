package redisstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/syncd/syncd/internal/tokens"
)

func TestParseRecord(t *testing.T) {
	good := func() map[string]string {
		return map[string]string{"v": "3", "p": "digime", "k": "k1", "c": "\x01sealed", "ae": "1700000000000",
			"re": "0", "s": "degraded", "sr": "transient_failures", "sa": "1699999999000", "f": "4", "le": "transient:http_503"}
	}
	rec, err := parseRecord("u", good())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != 3 || rec.State != tokens.Degraded || rec.Failures != 4 || !rec.RefreshExpiry.IsZero() || rec.AccessExpiry.UnixMilli() != 1700000000000 {
		t.Fatalf("parsed %+v", rec)
	}
	for field, bad := range map[string]string{"v": "x", "k": "", "c": "", "s": "sleepy", "ae": "soon", "f": "-1", "lu": "1.5"} {
		m := good()
		m[field] = bad
		_, err := parseRecord("u", m)
		if !errors.Is(err, tokens.ErrMalformedRecord) || !strings.Contains(err.Error(), `field "`+field+`"`) {
			t.Errorf("field %s = %q: %v", field, bad, err)
		}
		if strings.Contains(fmtErr(err), "sealed") {
			t.Errorf("error shows the ciphertext: %v", err)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
