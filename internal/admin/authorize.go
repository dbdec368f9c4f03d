package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"

	"github.com/syncd/syncd/internal/authflow"
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
// browser is sent on to DoneURL, or shown a short page.
func (s *Server) publicCallback(w http.ResponseWriter, r *http.Request) {
	res, err := s.opt.Backend.FinishAuthorization(r.Context(), authflow.ParseCallback(r.URL.Query()))
	status, code, msg := http.StatusOK, "", ""
	if err != nil {
		// The page is public: only a refusal shows its message.
		status, code, msg = httpStatus(err), "internal", msgInternal
		var ae *authflow.Error
		if errors.As(err, &ae) {
			code, msg = ae.Code(), ae.Error()
		} else {
			s.log.Error().Err(err).Msg("authorization callback failed")
		}
	}
	if s.opt.DoneURL != "" {
		u, perr := url.Parse(s.opt.DoneURL)
		if perr == nil {
			q := u.Query()
			if err != nil {
				q.Set("result", "error")
				q.Set("error", code)
			} else {
				q.Set("result", "ok")
			}
			if res.User != "" {
				q.Set("user", res.User)
			}
			u.RawQuery = q.Encode()
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	page := struct{ Title, Text string }{"Authorization complete", "You can close this window."}
	if err != nil {
		page = struct{ Title, Text string }{"Authorization failed", msg}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = donePage.Execute(w, page)
}
