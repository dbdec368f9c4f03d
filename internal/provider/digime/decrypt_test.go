package digime

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecryptVectors(t *testing.T) {
	testKeys(t)
	big := bytes.Repeat([]byte(`{"entry":"some health record","value":42}`+"\n"), 5000)
	for _, tc := range []struct {
		name, compression string
		plain             []byte
	}{
		{"none", "", []byte(`{"hello":"world"}`)},
		{"exact block", "", []byte("0123456789abcdef")}, // a full padding block
		{"empty", "", []byte{}},
		{"gzip", "gzip", big},
		{"brotli", "brotli", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := encryptFile(t, &contractKey.PublicKey, compress(t, tc.compression, tc.plain))
			plain, err := decrypt(contractKey, ct)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decompress(tc.compression, plain, maxFileSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plain) {
				t.Fatalf("decrypted %d bytes differ from the %d plaintext bytes", len(got), len(tc.plain))
			}
		})
	}
}

// TestDecryptFixed checks one hand-built vector with a fixed data key and
// IV, so the layout (wrapped key, IV, ciphertext) is pinned byte for byte.
func TestDecryptFixed(t *testing.T) {
	testKeys(t)
	dsk := sha256.Sum256([]byte("data key"))
	iv := []byte("0123456789ABCDEF")
	plain := []byte("digi.me file body") // 17 bytes: padded with 15 x 0x0f
	padded := append(append([]byte{}, plain...), bytes.Repeat([]byte{15}, 15)...)
	block, _ := aes.NewCipher(dsk[:])
	ct := make([]byte, 32)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &contractKey.PublicKey, dsk[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	file := append(append(append([]byte{}, wrapped...), iv...), ct...)
	if len(file) != 256+16+32 {
		t.Fatalf("file is %d bytes", len(file))
	}
	got, err := decrypt(contractKey, file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("got %q, want %q", got, plain)
	}
}

func TestDecryptMalformed(t *testing.T) {
	testKeys(t)
	good := encryptFile(t, &contractKey.PublicKey, []byte("a secret of some length"))
	wrongPad := func() []byte {
		// A valid file whose last block decrypts to bad padding: flip a
		// bit of the IV-side block so the final plaintext byte changes.
		b := bytes.Clone(good)
		b[len(b)-17] ^= 0x01
		return b
	}
	short32 := func() []byte {
		// A data key of 16 bytes instead of 32.
		wrapped, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, &contractKey.PublicKey, make([]byte, 16), nil)
		return append(wrapped, make([]byte, 32)...)
	}
	sha256Wrapped := func() []byte {
		dsk := make([]byte, 32)
		wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &contractKey.PublicKey, dsk, nil)
		return append(wrapped, make([]byte, 32)...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, errCiphertextLength},
		{"short", good[:287], errCiphertextLength},
		{"only key and iv", good[:272], errCiphertextLength},
		{"not a multiple of 16", good[:len(good)-1], errCiphertextLength},
		{"trailing byte", append(bytes.Clone(good), 0), errCiphertextLength},
		{"bad padding", wrongPad(), errPadding},
		{"other key", encryptFile(t, &otherKey.PublicKey, []byte("x")), errDataKey},
		{"16-byte data key", short32(), errDataKey},
		{"oaep sha256", sha256Wrapped(), errDataKey},
		{"zero key block", make([]byte, 304), errDataKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decrypt(contractKey, tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestUnpad(t *testing.T) {
	block := func(last ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, 16-len(last))
		return append(b, last...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want int // bytes kept, -1 for an error
	}{
		{"one", block(1), 15},
		{"full block", bytes.Repeat([]byte{16}, 16), 0},
		{"zero", block(0), -1},
		{"seventeen", block(17), -1},
		{"inconsistent", block(2, 3, 3), -1},
		{"empty", nil, -1},
		{"not a block", []byte{1}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unpad(tc.in)
			if tc.want < 0 {
				if err == nil {
					t.Fatalf("no error, kept %d", len(got))
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("got %d, %v; want %d", len(got), err, tc.want)
			}
		})
	}
}

func TestDecompress(t *testing.T) {
	data := []byte(strings.Repeat("abc", 1000))
	t.Run("limit", func(t *testing.T) {
		for _, kind := range []string{"gzip", "brotli"} {
			if _, err := decompress(kind, compress(t, kind, data), 100); err == nil {
				t.Errorf("%s: no error above the limit", kind)
			}
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		for _, kind := range []string{"gzip", "brotli"} {
			if _, err := decompress(kind, []byte("definitely not compressed data"), maxFileSize); err == nil {
				t.Errorf("%s: no error", kind)
			}
		}
	})
	t.Run("unknown compression is an error", func(t *testing.T) {
		if _, err := decompress("zstd", data, maxFileSize); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("none", func(t *testing.T) {
		for _, kind := range []string{"", "none", "identity"} {
			got, err := decompress(kind, data, maxFileSize)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%q: %v", kind, err)
			}
		}
	})
}

func TestParseXMetadata(t *testing.T) {
	raw := `{"metadata":{"mimetype":"application/json","accounts":[{"accountid":"a1"}]},"compression":"brotli"}`
	for _, tc := range []struct{ name, header string }{
		{"base64url", base64.RawURLEncoding.EncodeToString([]byte(raw))},
		{"padded", base64.URLEncoding.EncodeToString([]byte(raw))},
		{"standard", base64.StdEncoding.EncodeToString([]byte(raw))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseXMetadata(tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if m.Compression != "brotli" || m.mimeType() != "application/json" || !json.Valid(m.Metadata) {
				t.Fatalf("got %+v", m)
			}
		})
	}
	t.Run("mimeType spelling", func(t *testing.T) {
		m, err := parseXMetadata(xMetadata(map[string]any{"mimeType": "text/plain"}, ""))
		if err != nil || m.mimeType() != "text/plain" {
			t.Fatalf("got %+v, %v", m, err)
		}
	})
	t.Run("absent", func(t *testing.T) {
		m, err := parseXMetadata("")
		if err != nil || m.Metadata != nil || m.Compression != "" {
			t.Fatalf("got %+v, %v", m, err)
		}
	})
	t.Run("null metadata", func(t *testing.T) {
		m, err := parseXMetadata(xMetadata(nil, "gzip"))
		if err != nil || m.Metadata != nil || m.Compression != "gzip" {
			t.Fatalf("got %+v, %v", m, err)
		}
	})
	for _, bad := range []string{"!!!", base64.RawURLEncoding.EncodeToString([]byte("not json"))} {
		if _, err := parseXMetadata(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzDecrypt checks that no input makes decrypt or decompress panic.
func FuzzDecrypt(f *testing.F) {
	testKeys(f)
	f.Add(encryptFile(f, &contractKey.PublicKey, []byte("seed")), "")
	f.Add(make([]byte, 288), "gzip")
	f.Add([]byte{}, "brotli")
	f.Fuzz(func(t *testing.T, data []byte, compression string) {
		plain, err := decrypt(contractKey, data)
		if err != nil {
			return
		}
		_, _ = decompress(compression, plain, 1<<20)
	})
}
