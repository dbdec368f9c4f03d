package digime

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

func TestPush(t *testing.T) {
	item := provider.PushItem{
		ID:       "item-1",
		Data:     []byte{0x00, 0x01, 0xfe, 0xff, '{', '}'},
		MimeType: "application/fhir+json",
		Accounts: []string{"acct-1", "acct-2"},
		Tags:     []string{"syncd", "blood-pressure"},
	}

	t.Run("file descriptor and raw body", func(t *testing.T) {
		a := newAPI(t)
		if err := a.client().Push(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, item); err != nil {
			t.Fatal(err)
		}
		if len(a.pushes) != 1 {
			t.Fatalf("%d pushes", len(a.pushes))
		}
		p := a.pushes[0]
		if p.contentType != "application/octet-stream" || !bytes.Equal(p.body, item.Data) || p.access != "acc" {
			t.Fatalf("push content type %q body %x access %q", p.contentType, p.body, p.access)
		}
		claims, err := checkPS512(p.fileDescriptor, &contractKey.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"metadata": map[string]any{
			"mimeType": "application/fhir+json",
			"accounts": []any{map[string]any{"accountId": "acct-1"}, map[string]any{"accountId": "acct-2"}},
			"tags":     []any{"syncd", "blood-pressure"},
		}}
		if !reflect.DeepEqual(map[string]any(claims), want) {
			t.Fatalf("file descriptor claims %v\nwant %v", claims, want)
		}
	})

	t.Run("no tags, no accounts", func(t *testing.T) {
		a := newAPI(t)
		it := provider.PushItem{Data: []byte("x"), MimeType: "text/plain"}
		if err := a.client().Push(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, it); err != nil {
			t.Fatal(err)
		}
		claims, err := checkPS512(a.pushes[0].fileDescriptor, &contractKey.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"metadata": map[string]any{"mimeType": "text/plain", "accounts": []any{}}}
		if !reflect.DeepEqual(map[string]any(claims), want) {
			t.Fatalf("claims %v", claims)
		}
	})

	t.Run("401 refreshes once and resends the body", func(t *testing.T) {
		a := newAPI(t)
		a.access = map[string]bool{"new": true}
		src := &testSource{tok: userToken("old", "ref"), next: []tokens.Token{userToken("new", "ref2")}}
		if err := a.client().Push(waitCtx(t), "u1", src, item); err != nil {
			t.Fatal(err)
		}
		imports := a.recorded("import")
		if len(imports) != 2 || imports[0].access != "old" || imports[1].access != "new" {
			t.Fatalf("imports %+v", imports)
		}
		if len(a.pushes) != 1 || !bytes.Equal(a.pushes[0].body, item.Data) {
			t.Fatalf("pushes %+v", a.pushes)
		}
		if len(src.rejections()) != 1 {
			t.Fatalf("rejections %d", len(src.rejections()))
		}
	})

	t.Run("503 is not retried", func(t *testing.T) {
		a := newAPI(t)
		a.fault("import", fault{status: 503, header: map[string]string{"Retry-After": "0"}})
		err := a.client().Push(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, item)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Op != "import" || pe.Status != 503 || pe.Permanent {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("import")); n != 1 {
			t.Fatalf("%d attempts", n)
		}
	})

	t.Run("400 is permanent", func(t *testing.T) {
		a := newAPI(t)
		a.fault("import", fault{status: 400, body: `{"error":{"code":"ValidationErrors","message":"Parameter validation errors"}}`})
		err := a.client().Push(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, item)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Code != "ValidationErrors" || !pe.Permanent {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("no mime type is permanent and sends nothing", func(t *testing.T) {
		a := newAPI(t)
		err := a.client().Push(waitCtx(t), "u1", &testSource{tok: userToken("acc", "ref")}, provider.PushItem{Data: []byte("x")})
		var pe *provider.Error
		if !errors.As(err, &pe) || !pe.Permanent {
			t.Fatalf("err %v", err)
		}
		if n := len(a.recorded("import")); n != 0 {
			t.Fatalf("%d imports", n)
		}
	})
}
