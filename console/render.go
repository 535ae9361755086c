package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/admin"
)

// contentSecurityPolicy allows the console's own script, styles and
// images and nothing else: no inline script, no foreign origin, no
// framing, forms only to the console.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the console's security headers on every answer and refuses
// cross-origin form posts (Sec-Fetch-Site / Origin: a forged sign-in or
// action from another site). The headers are set first, so that the
// refusal of a cross-origin post carries them too.
func secure(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection().Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		cop.ServeHTTP(w, r)
	})
}

// pageTemplate is one page: the layout around the page's "content".
type pageTemplate struct{ t *template.Template }

// funcs are the template functions of every page.
var funcs = template.FuncMap{
	// when is a time for people, UTC; "" for the zero time.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	// iso is a time for machines (datetime attributes, sorting).
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	// ago is how long ago t was, roughly.
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t)
		switch {
		case d < time.Minute:
			return "just now"
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d/time.Minute))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d/time.Hour))
		}
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	},
	"join": strings.Join,
	// dict makes the argument of a shared template (templates/filters.html)
	// from key, value pairs.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict: %d arguments, want key, value pairs", len(kv))
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

// sharedTemplates are parsed with every page and are no page themselves:
// the layout around the page's "content" and the shared partials.
var sharedTemplates = []string{"templates/layout.html", "templates/filters.html"}

// parsePages parses every page of templates/ with the shared templates.
func parsePages() (map[string]*pageTemplate, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*pageTemplate{}
	for _, n := range names {
		if slices.Contains(sharedTemplates, n) {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, append(slices.Clone(sharedTemplates), n)...)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		pages[strings.TrimSuffix(path.Base(n), ".html")] = &pageTemplate{t: t}
	}
	return pages, nil
}

// view is what every page template gets.
type view struct {
	// Title is the page's title.
	Title string
	// Me is the signed-in identity; zero on the sign-in page.
	Me admin.Identity
	// CSRF is the session's anti-forgery token for the page's forms.
	CSRF string
	// Path is the request's path (the navigation marks the current page).
	Path string
	// Data is the page's own data.
	Data any
}

// Can reports whether the signed-in identity has at least role: the
// console hides what the API would refuse (the API still decides).
func (v view) Can(role string) bool {
	return v.Me.Role.AtLeast(admin.Role(role))
}

// render writes page name with status. A template error is a 500 with
// nothing of the half-rendered page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p, ok := c.pages[name]
	if !ok {
		c.log.Error("console: no such template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s := sessionOf(r)
	v := view{Title: title, Me: s.id, CSRF: s.CSRF, Path: r.URL.Path, Data: data}
	var buf bytes.Buffer
	if err := p.t.Execute(&buf, v); err != nil {
		c.log.Error("console: render failed", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail answers with the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", http.StatusText(status), errorData{Status: status, Message: msg})
}

type errorData struct {
	Status  int
	Message string
}
