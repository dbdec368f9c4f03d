package digime

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	"github.com/syncd/syncd/internal/provider"
)

// FuzzFileList feeds the file-list parsing (parseFileList, accountErrors,
// filesAfter, the cursor) any answer and cursor. It must never panic; the
// files to fetch are named, in strict (updatedDate, name) order, after the
// cursor; the cursor of each file reads back as its position, and a pull
// resumed from it skips that file and every earlier one.
func FuzzFileList(f *testing.F) {
	for _, seed := range []struct{ body, cursor string }{
		{`{"status":{"state":"completed"},"fileList":[{"name":"b.json","updatedDate":2},{"name":"a.json","updatedDate":2},{"name":"c","updatedDate":1}]}`, ""},
		{`{"status":{"state":"completed"},"fileList":[{"name":"a:b","updatedDate":5},{"name":"a:b","updatedDate":5}]}`, "5:a"},
		{`{"status":{"state":"partial","details":{"acct1":{"state":"partial"},"acct2":{"state":"error","error":{"code":"SourceAuthError","statusCode":511,"reauth":true,"retryAfter":1767366245000}},"acct3":{"state":"error","error":{"error":{"code":"X","message":"m","reauth":true}}},"acct4":[]}},"fileList":[]}`, ""},
		{`{"status":{"state":"running"},"fileList":null}`, ""},
		{`{"status":{"state":"bogus"}}`, ""},
		{`{"status":{"state":"completed"},"fileList":[{"name":"x","updatedDate":"1.5e3"},{"name":"","updatedDate":1},{"name":"y"}]}`, "1500:x"},
		{`{"status":{"state":"completed"},"fileList":[{"name":"x","updatedDate":-1}]}`, ""},
		{`{"status":{"state":"completed"},"fileList":[{"name":"a\r\nb","updatedDate":1e300}]}`, ""},
		{`{"status":{"state":"completed"},"fileList":[{"name":"../../x","updatedDate":9223372036854775807}]}`, "-1:x"},
		{`[]`, "x"},
		{``, ""},
	} {
		f.Add([]byte(seed.body), seed.cursor)
	}
	f.Fuzz(func(t *testing.T, body []byte, cursor string) {
		list, err := parseFileList(body)
		if err != nil {
			return
		}
		accts := accountErrors(list.Status.Details, list.Status.State)
		if !slices.IsSortedFunc(accts, func(a, b provider.AccountError) int { return strings.Compare(a.Account, b.Account) }) {
			t.Fatalf("account errors not sorted: %+v", accts)
		}
		for _, ae := range accts {
			if ae.Code == "" || len(ae.Message) > maxMessage+4 {
				t.Fatalf("account error %+v", ae)
			}
		}
		after, err := parseCursor(cursor)
		if err != nil {
			return
		}
		files, err := filesAfter(list.FileList, after)
		if err != nil {
			return
		}
		order := func(a, b fileEntry) int {
			return cmp.Or(cmp.Compare(a.updated, b.updated), strings.Compare(a.Name, b.Name))
		}
		for i, fe := range files {
			if fe.Name == "" || fe.updated < 0 {
				t.Fatalf("file %+v", fe)
			}
			if i > 0 && order(files[i-1], fe) >= 0 {
				t.Fatalf("files not in strict order: %+v then %+v", files[i-1], fe)
			}
			if after.set && order(fileEntry{Name: after.name, updated: after.updated}, fe) >= 0 {
				t.Fatalf("file %+v is not after the cursor %q", fe, cursor)
			}
			pos, err := parseCursor(formatCursor(fe.updated, fe.Name))
			if err != nil || pos != (cursorPos{set: true, updated: fe.updated, name: fe.Name}) {
				t.Fatalf("cursor of %+v reads back as %+v, %v", fe, pos, err)
			}
			rest, err := filesAfter(list.FileList, pos)
			if err != nil || len(rest) != len(files)-i-1 {
				t.Fatalf("resumed after %+v: %d files (%v), want %d", fe, len(rest), err, len(files)-i-1)
			}
		}
	})
}
