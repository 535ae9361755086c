package console

import "net/http"

// STUB (to be replaced by actions.go and live.go; delete this file then).

func (c *Console) confirmAction(w http.ResponseWriter, r *http.Request, image, action string) {
	c.fail(w, r, http.StatusNotImplemented, "not yet")
}

func (c *Console) act(w http.ResponseWriter, r *http.Request, image, action string) {
	c.fail(w, r, http.StatusNotImplemented, "not yet")
}

func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	c.fail(w, r, http.StatusNotImplemented, "not yet")
}
