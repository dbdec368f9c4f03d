package digime

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"

	"github.com/syncd/syncd/internal/clip"
)

// Decryption and decoding errors; they never contain file data.
var (
	errCiphertextLength = errors.New("ciphertext has a bad length")
	errDataKey          = errors.New("data key does not decrypt with the contract key")
	errPadding          = errors.New("bad PKCS#7 padding")
)

// decrypt opens a digi.me file: [0,k) is the 32-byte AES data key wrapped
// with RSA-OAEP (SHA-1, MGF1-SHA-1) for the contract's public key, where k
// is the key size in bytes (256 for the 2048-bit contract keys digi.me
// issues); [k,k+16) is the IV; the rest is AES-256-CBC with PKCS#7
// padding.
func decrypt(key *rsa.PrivateKey, data []byte) ([]byte, error) {
	k := key.Size()
	if len(data) < k+2*aes.BlockSize || (len(data)-k)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", errCiphertextLength, len(data))
	}
	dsk, err := rsa.DecryptOAEP(sha1.New(), nil, key, data[:k], nil)
	if err != nil {
		return nil, errDataKey
	}
	if len(dsk) != 32 {
		return nil, fmt.Errorf("%w: data key is %d bytes, want 32", errDataKey, len(dsk))
	}
	block, err := aes.NewCipher(dsk)
	if err != nil {
		return nil, errDataKey
	}
	iv := data[k : k+aes.BlockSize]
	ct := data[k+aes.BlockSize:]
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	return unpad(plain)
}

// unpad strips and checks PKCS#7 padding.
func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return nil, errPadding
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize {
		return nil, errPadding
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, errPadding
		}
	}
	return b[:len(b)-n], nil
}

// fileMeta is the decoded x-metadata header.
type fileMeta struct {
	Metadata    json.RawMessage `json:"metadata"`
	Compression string          `json:"compression"`
}

// parseXMetadata decodes x-metadata: base64url (padded or not; standard
// base64 also accepted) of JSON {metadata, compression}. An absent header
// means no metadata and no compression.
func parseXMetadata(h string) (fileMeta, error) {
	var m fileMeta
	h = strings.TrimRight(strings.TrimSpace(h), "=")
	if h == "" {
		return m, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(h); err != nil {
			return m, errors.New("x-metadata is not base64")
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, errors.New("x-metadata is not a JSON object")
	}
	if t := bytes.TrimSpace(m.Metadata); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		m.Metadata = nil
	}
	return m, nil
}

// mimeType returns metadata.mimetype or metadata.mimeType (raw metadata
// uses the former, the Node types the latter), "" when neither.
func (m fileMeta) mimeType() string {
	var v struct {
		Lower string `json:"mimetype"`
		Camel string `json:"mimeType"`
	}
	if len(m.Metadata) == 0 || json.Unmarshal(m.Metadata, &v) != nil {
		return ""
	}
	if v.Lower != "" {
		return v.Lower
	}
	return v.Camel
}

// decompress undoes x-metadata's compression: "gzip", "brotli" (or "br"),
// none for "" / "none" / "identity". Any other value is an error rather
// than data passed on still compressed. The output is bounded by limit.
func decompress(compression string, data []byte, limit int64) ([]byte, error) {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(compression)) {
	case "", "none", "identity":
		return data, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, errors.New("gzip: bad header")
		}
		defer zr.Close()
		r = zr
	case "brotli", "br":
		r = brotli.NewReader(bytes.NewReader(data))
	default:
		return nil, fmt.Errorf("unknown compression %q", clip.String(compression, 32))
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt data", compression)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%s: decompressed data exceeds %d bytes", compression, limit)
	}
	return out, nil
}
