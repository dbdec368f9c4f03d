package digimefake

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/andybalholm/brotli"
)

const (
	statePending   = "pending"
	stateRunning   = "running"
	statePartial   = "partial"
	stateCompleted = "completed"

	maxTriggerBody = 1 << 20
)

// fileListKeys are the mapped-metadata keys copied from File.Metadata into
// a file list entry.
var fileListKeys = []string{"objectType", "objectCount", "objectVersion", "serviceGroup", "serviceName", "schema"}

type triggerBody struct {
	Agent *struct {
		SDK *struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"sdk"`
	} `json:"agent"`
}

type sessionInfo struct {
	Key    string `json:"key"`
	Expiry int64  `json:"expiry"` // milliseconds since the epoch
}

// handleTrigger serves POST permission-access/trigger: it starts a pull
// session for the access token's user.
func (s *Server) handleTrigger(w http.ResponseWriter, r *http.Request) {
	user, ok := s.dataUser(w, r)
	if !ok {
		return
	}
	if !checkAgent(w, r) {
		return
	}

	key := rand.Text()
	s.mu.Lock()
	expires := s.opt.Clock.Now().Add(sessionLifetime)
	s.sessions[key] = &session{user: user, expires: expires}
	s.stats.Triggers++
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]sessionInfo{"session": {Key: key, Expiry: expires.UnixMilli()}})
}

// checkAgent reads the JSON body of trigger and of the consent calls and
// requires agent.sdk.name, as digi.me checks the SDK; otherwise it
// answers 400 SDKInvalid and returns false.
func checkAgent(w http.ResponseWriter, r *http.Request) bool {
	var body triggerBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTriggerBody))
	if err := dec.Decode(&body); err != nil || body.Agent == nil || body.Agent.SDK == nil || body.Agent.SDK.Name == "" {
		writeError(w, http.StatusBadRequest, "SDKInvalid", "The SDK is invalid: the body needs agent.sdk.name")
		return false
	}
	return true
}

// sessionLocked returns the live session key of user, or answers 404.
func (s *Server) sessionLocked(key, user string) (*session, string) {
	sess := s.sessions[key]
	switch {
	case sess == nil || sess.user != user:
		return nil, "unknown session"
	case !s.opt.Clock.Now().Before(sess.expires):
		return nil, "session expired"
	}
	return sess, ""
}

type accountState struct {
	State string        `json:"state"`
	Error *accountError `json:"error,omitempty"`
}

type accountError struct {
	Code       string `json:"code"`
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	Reauth     bool   `json:"reauth"`
}

type listStatus struct {
	State   string                  `json:"state"`
	Details map[string]accountState `json:"details"`
}

type fileListResponse struct {
	Status   listStatus       `json:"status"`
	FileList []map[string]any `json:"fileList,omitempty"`
}

// handleFileList serves GET permission-access/query/{session}. Each poll
// moves the session on: PendingPolls answers "pending" (no fileList), then
// RunningPolls "running", then "completed" or, after SetPartial,
// "partial". Every non-pending answer lists all the user's files.
func (s *Server) handleFileList(w http.ResponseWriter, r *http.Request) {
	user, ok := s.dataUser(w, r)
	if !ok {
		return
	}

	s.mu.Lock()
	sess, msg := s.sessionLocked(r.PathValue("session"), user)
	if sess == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "SessionInvalid", msg)
		return
	}
	sess.polls++
	u := s.user(user)
	resp := fileListResponse{Status: listStatus{Details: map[string]accountState{}}}
	switch {
	case sess.polls <= s.opt.PendingPolls:
		resp.Status.State = statePending
	case sess.polls <= s.opt.PendingPolls+s.opt.RunningPolls:
		resp.Status.State = stateRunning
		for _, a := range u.partial {
			resp.Status.Details[a.id] = accountState{State: stateRunning}
		}
	case len(u.partial) > 0:
		resp.Status.State = statePartial
		for _, a := range u.partial {
			resp.Status.Details[a.id] = accountState{State: statePartial, Error: &accountError{
				Code:       "ServiceAuthorizationError",
				StatusCode: http.StatusNetworkAuthenticationRequired,
				Message:    "The account " + a.id + " needs to be reauthorized",
				Reauth:     a.reauth,
			}}
		}
	default:
		resp.Status.State = stateCompleted
	}
	if resp.Status.State != statePending {
		resp.FileList = make([]map[string]any, 0, len(u.files))
		for _, f := range u.files {
			resp.FileList = append(resp.FileList, listEntry(f))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func listEntry(f File) map[string]any {
	e := map[string]any{"name": f.Name, "updatedDate": f.Updated.UnixMilli()}
	var meta map[string]json.RawMessage
	if json.Unmarshal(f.Metadata, &meta) == nil {
		for _, k := range fileListKeys {
			if v, ok := meta[k]; ok {
				e[k] = v
			}
		}
	}
	return e
}

type xMetadata struct {
	Metadata    json.RawMessage `json:"metadata"`
	Compression string          `json:"compression,omitempty"`
}

// handleFile serves GET (the encrypted file) and HEAD (its headers) of
// permission-access/query/{session}/{file}.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	user, ok := s.dataUser(w, r)
	if !ok {
		return
	}
	name := r.PathValue("file")

	s.mu.Lock()
	sess, msg := s.sessionLocked(r.PathValue("session"), user)
	if sess == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "SessionInvalid", msg)
		return
	}
	var f File
	found := false
	for _, uf := range s.user(user).files {
		if uf.Name == name {
			f, found = uf, true
			break
		}
	}
	if found && r.Method == http.MethodGet {
		s.stats.FilesServed++
	}
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, "FileNotFound", "no file "+name)
		return
	}

	xm, err := json.Marshal(xMetadata{Metadata: fileMetadata(f), Compression: f.Compression})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", "encode metadata: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("x-metadata", base64.RawURLEncoding.EncodeToString(xm))
	h.Set("Last-Modified", f.Updated.UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, err := encryptFile(s.opt.ContractKey, f.Data, f.Compression)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", "encrypt file: "+err.Error())
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// fileMetadata is x-metadata's "metadata" for f.
func fileMetadata(f File) json.RawMessage {
	switch {
	case len(bytes.TrimSpace(f.Metadata)) > 0:
		return f.Metadata
	case f.MimeType != "":
		m, _ := json.Marshal(map[string]string{"mimetype": f.MimeType})
		return m
	}
	return json.RawMessage("{}")
}

// encryptFile lays a file out as digi.me serves it: a random AES-256 key
// wrapped with RSA-OAEP-SHA1 under the contract key (256 bytes), a
// 16-byte IV, then AES-256-CBC with PKCS#7 padding of the data,
// compressed first when compression is "gzip" or "brotli".
func encryptFile(pub *rsa.PublicKey, data []byte, compression string) ([]byte, error) {
	plain, err := compress(data, compression)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, key, nil)
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	padded := make([]byte, len(plain)+pad)
	copy(padded, plain)
	for i := len(plain); i < len(padded); i++ {
		padded[i] = byte(pad)
	}
	out := make([]byte, 0, len(wrapped)+aes.BlockSize+len(padded))
	out = append(out, wrapped...)
	iv := make([]byte, aes.BlockSize)
	_, _ = rand.Read(iv)
	out = append(out, iv...)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	return append(out, ct...), nil
}

func compress(data []byte, compression string) ([]byte, error) {
	var buf bytes.Buffer
	switch compression {
	case "":
		return data, nil
	case "gzip":
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case "brotli":
		bw := brotli.NewWriter(&buf)
		if _, err := bw.Write(data); err != nil {
			return nil, err
		}
		if err := bw.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown compression %q", compression)
	}
	return buf.Bytes(), nil
}

// validFile panics on a File that AddFile cannot serve: it is a mistake
// in the test that built it.
func validFile(f File) {
	switch f.Compression {
	case "", "gzip", "brotli":
	default:
		panic(fmt.Sprintf("digimefake: AddFile %q: compression %q, want \"\", \"gzip\" or \"brotli\"", f.Name, f.Compression))
	}
	if len(bytes.TrimSpace(f.Metadata)) > 0 && !json.Valid(f.Metadata) {
		panic(fmt.Sprintf("digimefake: AddFile %q: metadata is not valid JSON", f.Name))
	}
	if f.Name == "" {
		panic("digimefake: AddFile: empty file name")
	}
}
