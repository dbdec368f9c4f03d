package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
)

// link serves POST /v1/users/{id}/authorize and .../reauthorize: a JSON
// body {redirect_uri, state, provider}, all optional, answered with the
// link {url, state, expires_at, ...}.
func (s *Server) link(reauth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody))
			return
		}
		var req authflow.Request
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeErr(w, http.StatusBadRequest, "body: want {\"redirect_uri\", \"state\", \"provider\"}: "+err.Error())
				return
			}
		}
		req.User = r.PathValue("id")
		var l authflow.Link
		if reauth {
			l, err = s.opt.Backend.Reauthorize(r.Context(), req)
		} else {
			l, err = s.opt.Backend.Authorize(r.Context(), req)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, l)
	}
}

// callback serves POST /v1/authorize/callback: the app forwards the query
// the provider sent to its redirect URI, as this request's query or as a
// form body.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeErr(w, http.StatusBadRequest, "callback: unreadable query or form: "+err.Error())
		return
	}
	res, err := s.opt.Backend.FinishAuthorization(r.Context(), authflow.ParseCallback(r.Form))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

var donePage = template.Must(template.New("done").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// publicCallback serves GET <authorize.callback_path>: the provider
// redirects the user's browser here. The state is the credential; the
// browser is sent on to DoneURL, or shown a short page. The page is
// anyone's to open with any query, so a failure shows only its code: the
// message (which may quote the provider) goes to the log, and neither the
// page nor the redirect names the user.
func (s *Server) publicCallback(w http.ResponseWriter, r *http.Request) {
	res, err := s.opt.Backend.FinishAuthorization(r.Context(), authflow.ParseCallback(r.URL.Query()))
	status, code := http.StatusOK, ""
	if err != nil {
		status, code = httpStatus(err), "internal"
		var ae *authflow.Error
		if errors.As(err, &ae) {
			code = ae.Code()
			s.log.Info().Err(err).Str("code", code).Str("user", res.User).Msg("public authorization callback refused")
		} else {
			s.log.Error().Err(err).Msg("authorization callback failed")
		}
	}
	if s.opt.DoneURL != "" {
		u, perr := url.Parse(s.opt.DoneURL)
		if perr == nil {
			q := u.Query()
			for k, v := range s.doneQuery(res.User, code) {
				q[k] = v
			}
			u.RawQuery = q.Encode()
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	page := struct{ Title, Text string }{"Authorization complete", "You can close this window."}
	if err != nil {
		text := "The authorization did not complete (error: " + code + "). Start again from the app."
		if status == http.StatusBadGateway {
			text = "The provider did not answer (error: " + code + "). Try again in a moment."
		}
		page = struct{ Title, Text string }{"Authorization failed", text}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = donePage.Execute(w, page)
}

// doneQuery is the result added to DoneURL: result=ok and user, or
// result=error and error (the code, never the user). With a secret it is
// signed: t (unix seconds) and sig, the hex HMAC-SHA256 under the secret
// of "<t>.<result>.<error>.<user>" (error empty on success, user empty
// on failure; result and error never hold a dot, so the user, last, may).
func (s *Server) doneQuery(user, code string) url.Values {
	q := url.Values{"result": {"ok"}}
	if code != "" {
		q.Set("result", "error")
		q.Set("error", code)
		user = ""
	} else {
		q.Set("user", user)
	}
	if s.opt.DoneURLSecret == "" {
		return q
	}
	clk := s.opt.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	t := strconv.FormatInt(clk.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(s.opt.DoneURLSecret))
	mac.Write([]byte(t + "." + q.Get("result") + "." + code + "." + user))
	q.Set("t", t)
	q.Set("sig", hex.EncodeToString(mac.Sum(nil)))
	return q
}
