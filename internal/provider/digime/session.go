package digime

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// session runs one user's data calls with the token from a TokenSource.
// It holds a token: never log or print it.
type session struct {
	c    *Client
	src  provider.TokenSource
	log  zerolog.Logger
	tok  tokens.Token
	have bool
}

func (c *Client) session(user string, src provider.TokenSource) *session {
	return &session{c: c, src: src, log: c.log.With().Str(fieldUser, user).Logger()}
}

// call sends cl with the current access token. On a 401 whose body is
// digi.me's InvalidToken, or has no recognisable JSON error (the SDKs'
// rule), it calls Rejected once and resends once with the token it gets;
// a second 401 is an error. A TokenSource error is returned wrapped, as
// is; HTTP failures are *provider.Error.
func (s *session) call(ctx context.Context, cl call) (*response, error) {
	if !s.have {
		tok, err := s.src.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: token: %w", cl.op, err)
		}
		s.tok, s.have = tok, true
	}
	cl.sign = true
	cl.log = &s.log
	rejected := false
	for {
		cl.access = s.tok.AccessToken
		resp, err := s.c.do(ctx, cl)
		if err != nil {
			return nil, &provider.Error{Op: cl.op, Err: err}
		}
		if resp.status == http.StatusUnauthorized && !rejected && refreshable(resp.body) {
			rejected = true
			s.log.Info().Str(fieldOp, cl.op).Msg("access token rejected; refreshing")
			tok, err := s.src.Rejected(ctx, s.tok)
			if err != nil {
				return nil, fmt.Errorf("%s: token rejected: %w", cl.op, err)
			}
			s.tok = tok
			continue
		}
		if !resp.ok() {
			e := httpError(cl.op, resp, s.tok.AccessToken, s.tok.RefreshToken)
			s.log.Debug().Str(fieldOp, cl.op).Int(fieldStatus, e.Status).Str(fieldCode, e.Code).Msg("data call failed")
			return nil, e
		}
		return resp, nil
	}
}

// refreshable reports whether a 401 body asks for a token refresh: code
// InvalidToken, or no recognisable JSON error at all.
func refreshable(body []byte) bool {
	code, _, ok := parseErrorBody(body)
	return !ok || strings.EqualFold(code, "InvalidToken")
}
