package console

import "net/http"

// STUB (to be replaced by image.go and pages.go; delete this file then).

func (c *Console) imagePage(w http.ResponseWriter, r *http.Request, image string) {
	c.fail(w, r, http.StatusNotImplemented, "not yet")
}

// routes adds the pages beyond sign-in, the queue and the image pages.
func (c *Console) routes(mux *http.ServeMux) {}
