package digime

import (
	"context"
	"errors"
	"net/http"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/provider"
)

// Push writes item into the user's digi.me library: POST
// permission-access/import with the raw bytes (not encrypted; TLS only),
// Content-Type application/octet-stream, and a FileDescriptor header
// holding a PS512 JWT (contract key, no nonce or timestamp) with claims
// {"metadata":{"mimeType","accounts":[{"accountId"}],"tags"}}; tags only
// when item has some. item.ID is not sent (the SDKs do not send a file
// name). The answer's body is ignored. A POST is never retried, apart
// from one resend after a 401 and a refresh. An item without MimeType is a
// permanent *provider.Error and nothing is sent.
func (c *Client) Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error {
	if item.MimeType == "" {
		return &provider.Error{Op: "push", Permanent: true, Err: errors.New("item has no mime type")}
	}
	fd, err := c.fileDescriptor(item)
	if err != nil {
		return &provider.Error{Op: "push", Err: err}
	}
	body := item.Data
	if body == nil {
		body = []byte{}
	}
	s := c.session(user, src)
	_, err = s.call(ctx, call{
		op: "import", method: http.MethodPost, url: c.endpoint("permission-access/import"),
		header: http.Header{
			"Content-Type":   {"application/octet-stream"},
			"Accept":         {"application/json"},
			"Filedescriptor": {fd},
		},
		body: body,
	})
	if err != nil {
		return err
	}
	s.log.Debug().Str("item", item.ID).Int("bytes", len(item.Data)).Msg("item pushed")
	return nil
}

// fileDescriptor signs the FileDescriptor JWT of a push.
func (c *Client) fileDescriptor(item provider.PushItem) (string, error) {
	accounts := make([]map[string]string, 0, len(item.Accounts))
	for _, a := range item.Accounts {
		accounts = append(accounts, map[string]string{"accountId": a})
	}
	meta := map[string]any{"mimeType": item.MimeType, "accounts": accounts}
	if len(item.Tags) > 0 {
		meta["tags"] = item.Tags
	}
	return c.sign(jwt.MapClaims{"metadata": meta})
}
