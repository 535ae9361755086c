package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// hostileClient bounds every hostile request: an answer that takes longer
// than this is itself a failure.
var hostileClient = &http.Client{Timeout: 10 * time.Second}

// rawGet sends one request with extra headers and returns status, headers
// and body.
func rawGet(t *testing.T, method, u string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hostileClient.Do(req)
	if err != nil {
		t.Fatalf("%s %.120s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %.120s: read body: %v", method, u, err)
	}
	return resp.StatusCode, resp.Header, b
}

// approvedLayer pushes a one-layer image, approves it and returns the
// layer's digest and compressed bytes.
func approvedLayer(t *testing.T, s *stack, repo string) (v1.Hash, []byte) {
	t.Helper()
	img := registrytest.Image(t, 1, 8192, types.OCIManifestSchema1)
	d := s.up.PushImage(t, repo+":1", img)
	ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
	s.get(t, "GET", "/v2/"+repo+"/manifests/1")
	s.waitState(t, ref, state.StateAwaitingApproval)
	if _, err := s.engine.Approve(ref, "admin", "hostile test"); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	full, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return ld, full
}

// checkContentRange checks a single-part 206 answer: its Content-Range
// names a span of full and the body is exactly those bytes.
func checkContentRange(t *testing.T, what, cr string, body, full []byte) {
	t.Helper()
	var first, last, size int64
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &size); err != nil {
		t.Fatalf("%s: Content-Range %q: %v", what, cr, err)
	}
	if size != int64(len(full)) || first < 0 || last < first || last >= size {
		t.Fatalf("%s: Content-Range %q does not fit a %d-byte blob", what, cr, len(full))
	}
	if !bytes.Equal(body, full[first:last+1]) {
		t.Fatalf("%s: body (%d bytes) is not bytes %d-%d of the blob", what, len(body), first, last)
	}
}

// checkMultipart checks a multipart/byteranges 206 answer part by part.
func checkMultipart(t *testing.T, what string, h http.Header, body, full []byte) int {
	t.Helper()
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("%s: multi-range 206 with Content-Type %q", what, h.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	n := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: part %d: %v", what, n, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("%s: part %d: %v", what, n, err)
		}
		checkContentRange(t, fmt.Sprintf("%s part %d", what, n), p.Header.Get("Content-Range"), b, full)
		n++
	}
	return n
}

// TestHostileRange sends malformed, unsatisfiable, reversed, overflowing,
// suffix and multiple Range headers for an approved blob. Every answer is
// one RFC 9110 allows (200 with the whole blob when the header is ignored,
// 206 with exactly the named bytes, or 416 with "bytes */size"), never a
// 5xx or wrong bytes; and a quarantined blob is never served by any Range.
func TestHostileRange(t *testing.T) {
	s := newStack(t, nil)
	ld, full := approvedLayer(t, s, "library/ranged")
	size := len(full)
	u := s.srv.URL + "/v2/library/ranged/blobs/" + ld.String()

	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", i%size, i%size)
	}
	tests := []struct {
		rng   string
		allow []int // acceptable statuses
	}{
		{"bytes=abc", []int{200, 416}},
		{"bytes=999999999-", []int{416}},
		{"bytes=" + strconv.Itoa(size) + "-", []int{416}},
		{"bytes=999999999999999999999999-", []int{200, 416}}, // overflows int64
		{"bytes=0-999999999999999999999999", []int{200, 206, 416}},
		{"bytes=-5", []int{206}},         // suffix: the last 5 bytes
		{"bytes=-0", []int{416}},         // RFC 9110 14.1.1: a zero suffix-length is unsatisfiable
		{"bytes=-999999999", []int{206}}, // suffix longer than the blob: all of it
		{"bytes=--5", []int{200, 416}},
		{"bytes=-1-5", []int{200, 416}},
		{"bytes=5-2", []int{200, 416}}, // reversed
		{"bytes=0-", []int{206}},
		{"bytes=10-19", []int{206}},
		{"bytes=0-99999999", []int{206}},
		{"bytes=0-0,2-3,-1", []int{200, 206}},
		{"bytes=0-1,0-1", []int{200, 206}},
		{"bytes=" + strings.Join(many, ","), []int{200}}, // 2000 ranges: the whole blob, not a 35x larger multipart answer
		{"bytes=", []int{200, 416}},
		{"bytes", []int{200, 416}},
		{"items=0-5", []int{200, 416}}, // unknown unit
		{"bytes=\t0-5", []int{200, 206, 416}},
	}
	for _, tt := range tests {
		name := tt.rng
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			status, h, body := rawGet(t, "GET", u, map[string]string{"Range": tt.rng})
			if time.Since(start) > 5*time.Second {
				t.Errorf("answer took %s", time.Since(start))
			}
			ok := false
			for _, a := range tt.allow {
				ok = ok || a == status
			}
			if !ok {
				t.Fatalf("Range %.60q = %d (%.200s), want one of %v", tt.rng, status, body, tt.allow)
			}
			switch status {
			case 200:
				if !bytes.Equal(body, full) {
					t.Fatalf("200 with %d bytes, not the whole %d-byte blob", len(body), size)
				}
			case 206:
				if cr := h.Get("Content-Range"); cr != "" {
					checkContentRange(t, tt.rng, cr, body, full)
				} else if n := checkMultipart(t, tt.rng, h, body, full); n < 2 {
					t.Fatalf("multipart 206 with %d parts", n)
				}
			case 416:
				if cr := h.Get("Content-Range"); cr != "" && cr != fmt.Sprintf("bytes */%d", size) {
					t.Errorf("416 Content-Range %q, want bytes */%d", cr, size)
				}
			}
			t.Logf("Range %.60q -> %d (%d bytes)", tt.rng, status, len(body))
		})
	}
	// Exact answers for the well-formed cases.
	if _, _, b := rawGet(t, "GET", u, map[string]string{"Range": "bytes=-5"}); !bytes.Equal(b, full[size-5:]) {
		t.Errorf("suffix range: %x, want %x", b, full[size-5:])
	}
	// HEAD with a Range carries no body and the right length.
	if status, h, b := rawGet(t, "HEAD", u, map[string]string{"Range": "bytes=0-9"}); (status != 206 && status != 200) || len(b) != 0 {
		t.Errorf("HEAD with Range = %d, %d body bytes, Content-Length %s", status, len(b), h.Get("Content-Length"))
	}

	// A quarantined blob is refused whatever the Range says.
	img := registrytest.Image(t, 1, 4096, types.OCIManifestSchema1)
	qd := s.up.PushImage(t, "library/quarantined:1", img)
	qref := state.Ref{Upstream: "docker.io", Repository: "library/quarantined", Digest: digest.Digest(qd.String())}
	s.get(t, "GET", "/v2/library/quarantined/manifests/1")
	s.waitState(t, qref, state.StateAwaitingApproval)
	ql, _ := img.Layers()
	qld, _ := ql[0].Digest()
	for _, rng := range []string{"bytes=0-", "bytes=-5", "bytes=0-0,1-1", "bytes=abc", "bytes=999999999-"} {
		for _, repo := range []string{"library/quarantined", "library/ranged"} {
			status, _, body := rawGet(t, "GET", s.srv.URL+"/v2/"+repo+"/blobs/"+qld.String(), map[string]string{"Range": rng})
			if status != 403 && status != 404 {
				t.Errorf("quarantined blob via %s with Range %q = %d (%d bytes), want 403/404", repo, rng, status, len(body))
			}
		}
	}
}

// TestHostileNames sends path traversal, encoded separators, control
// characters and over-long names, tags and digests to every endpoint
// (manifests, blobs, tags/list, referrers, with GET and HEAD). Every
// answer is 400 or 404, fast; nothing reaches the upstream with a
// traversal in its path, and no image record or job is created.
func TestHostileNames(t *testing.T) {
	s := newStack(t, nil)
	dig := "sha256:" + strings.Repeat("b", 64)
	long := strings.Repeat("a", 256)
	names := []string{
		"..", "../etc", "library/..", "library/../../x", "%2e%2e/x", "library/%2e%2e", "library%2f..%2fx",
		"%2e%2e%2f%2e%2e%2fetc", "./x", "library/./x", "library//x", "/library/x", "library/x/",
		"library%5c..%5cx", "library/x%00", "library/x%0d%0aSet-Cookie:a=b", "library/%20x", "LIBRARY/x",
		long, "library/" + long, strings.Repeat("a/", 200) + "x", strings.Repeat("a", 100000),
		"docker.io/../../x", "ghcr/../library/x",
	}
	refs := []string{
		"..", "%2e%2e", "..%2f..%2fetc", strings.Repeat("t", 129), strings.Repeat("t", 100000),
		"sha256:" + strings.Repeat("a", 65), "sha256:" + strings.Repeat("a", 100000), "sha256:../../x", "md5:abc",
		"tag%00", "tag%0d%0a", ".tag", "-tag",
	}
	type req struct{ method, path string }
	var reqs []req
	for _, n := range names {
		for _, m := range []string{"GET", "HEAD"} {
			reqs = append(reqs,
				req{m, "/v2/" + n + "/manifests/latest"},
				req{m, "/v2/" + n + "/manifests/" + dig},
				req{m, "/v2/" + n + "/blobs/" + dig},
				req{m, "/v2/" + n + "/tags/list"},
				req{m, "/v2/" + n + "/referrers/" + dig},
			)
		}
	}
	for _, r := range refs {
		for _, m := range []string{"GET", "HEAD"} {
			reqs = append(reqs,
				req{m, "/v2/library/alpine/manifests/" + r},
				req{m, "/v2/library/alpine/blobs/" + r},
				req{m, "/v2/library/alpine/referrers/" + r},
			)
		}
	}
	reqs = append(reqs,
		req{"GET", "/v2/library/alpine/tags/list?n=-1"},
		req{"GET", "/v2/library/alpine/tags/list?n=99999999999999999999"},
		req{"GET", "/v2/library/alpine/tags/list?last=" + strings.Repeat("z", 100000)},
		req{"GET", "/v2/library/alpine/referrers/" + dig + "?artifactType=" + strings.Repeat("x", 100000)},
	)
	counts := map[int]int{}
	for _, r := range reqs {
		start := time.Now()
		status, _, body := rawGet(t, r.method, s.srv.URL+r.path, nil)
		counts[status]++
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%s %.100s took %s", r.method, r.path, el)
		}
		isList := strings.Contains(r.path, "/tags/list") || strings.Contains(r.path, "/referrers/")
		// tags/list and referrers of a well-formed name with odd query
		// parameters may answer 200 (an empty or bounded list).
		if status == 400 || status == 404 || (status == 200 && isList && strings.HasPrefix(r.path, "/v2/library/alpine/")) {
			continue
		}
		t.Errorf("%s %.100s = %d (%.200s), want 400 or 404", r.method, r.path, status, body)
	}
	t.Logf("%d hostile requests; answers by status: %v", len(reqs), counts)
	if imgs, _ := s.store.Images(""); len(imgs) != 0 {
		t.Fatalf("hostile names created %d records, e.g. %+v", len(imgs), imgs[0])
	}
	for _, r := range s.up.Requests() {
		if strings.Contains(r.Path, "..") || strings.Contains(strings.ToLower(r.Path), "%2e") || len(r.Path) > 1024 {
			t.Errorf("upstream saw a hostile path: %s %.200s", r.Method, r.Path)
		}
	}
}

// TestHostileQueryAndHeaders: thousands of query parameters and a long
// header value are answered quickly and correctly (no 5xx), and do not
// change which content is served.
func TestHostileQueryAndHeaders(t *testing.T) {
	s := newStack(t, nil)
	ld, full := approvedLayer(t, s, "library/params")
	var q strings.Builder
	for i := 0; i < 5000; i++ {
		if i > 0 {
			q.WriteByte('&')
		}
		fmt.Fprintf(&q, "p%d=%d&ns=docker.io", i, i)
	}
	base := s.srv.URL + "/v2/library/params/blobs/" + ld.String()
	cases := []struct {
		what string
		url  string
		hdr  map[string]string
	}{
		{"10000 query params", base + "?" + q.String(), nil},
		{"conflicting ns params", base + "?ns=docker.io&ns=ghcr.io&ns=unknown.example", nil},
		{"32 KiB header", base, map[string]string{"X-Junk": strings.Repeat("j", 32<<10)}},
		{"32 KiB Accept", base, map[string]string{"Accept": strings.Repeat("application/x,", 2<<10)}},
		{"32 KiB Authorization", base, map[string]string{"Authorization": "Bearer " + strings.Repeat("k", 32<<10)}},
	}
	for _, c := range cases {
		start := time.Now()
		status, _, body := rawGet(t, "GET", c.url, c.hdr)
		el := time.Since(start)
		switch {
		case el > 5*time.Second:
			t.Errorf("%s: answer took %s", c.what, el)
		case status >= 500:
			t.Errorf("%s: %d %.200s", c.what, status, body)
		case status == 200 && !bytes.Equal(body, full):
			t.Errorf("%s: 200 with wrong bytes", c.what)
		case status != 200 && status != 400 && status != 404 && status != 431:
			t.Errorf("%s: %d %.200s", c.what, status, body)
		}
		t.Logf("%s -> %d in %s", c.what, status, el.Round(time.Millisecond))
	}
	// The conflicting-namespace request must not serve docker.io's blob as
	// another upstream's.
	status, _, _ := rawGet(t, "GET", s.srv.URL+"/v2/library/params/blobs/"+ld.String()+"?ns=ghcr.io", nil)
	if status == 200 {
		t.Errorf("blob approved for docker.io served for ns=ghcr.io")
	}
}
