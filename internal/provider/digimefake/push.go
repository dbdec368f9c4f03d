package digimefake

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/golang-jwt/jwt/v5"
)

// maxImportBody bounds one pushed item.
const maxImportBody = 64 << 20

// descriptorClaims are the FileDescriptor JWT's claims.
type descriptorClaims struct {
	Metadata *struct {
		MimeType string `json:"mimeType"`
		Accounts []struct {
			AccountID string `json:"accountId"`
		} `json:"accounts"`
		Tags      []string `json:"tags"`
		Reference []string `json:"reference"`
	} `json:"metadata"`
	jwt.RegisteredClaims
}

// handleImport serves POST permission-access/import: raw bytes pushed into
// the user's library, described by the FileDescriptor JWT header.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	user, ok := s.dataUser(w, r)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		writeError(w, http.StatusBadRequest, "ValidationErrors", "Content-Type must be application/octet-stream")
		return
	}
	raw := r.Header.Get("FileDescriptor")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "ValidationErrors", "the FileDescriptor header is missing")
		return
	}
	var d descriptorClaims
	if jerr := s.parseContractJWT(raw, &d); jerr != nil {
		s.mu.Lock()
		(*jerr.counter)++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "ValidationErrors", "FileDescriptor: "+jerr.message)
		return
	}
	if d.Metadata == nil || d.Metadata.MimeType == "" {
		writeError(w, http.StatusBadRequest, "ValidationErrors", "FileDescriptor: metadata.mimeType is missing")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			writeError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", "the body is over 64 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "ValidationErrors", "read body: "+err.Error())
		return
	}
	im := Import{Data: data, MimeType: d.Metadata.MimeType, Tags: d.Metadata.Tags}
	for _, a := range d.Metadata.Accounts {
		im.Accounts = append(im.Accounts, a.AccountID)
	}

	s.mu.Lock()
	u := s.user(user)
	u.imports = append(u.imports, im)
	s.stats.Imports++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct{}{})
}
