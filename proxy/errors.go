package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes of the OCI distribution spec that Airlock answers with.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeDenied          = "DENIED"
	CodeUnsupported     = "UNSUPPORTED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	// CodeUnavailable is not in the spec; clients treat any 5xx as
	// retryable, and the message says why.
	CodeUnavailable = "UNAVAILABLE"
)

type registryError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers with a distribution-spec error body. HEAD responses
// carry no body, so the message also goes in a header that shows up in
// client debug logs.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Errors []registryError `json:"errors"`
	}{Errors: []registryError{{Code: code, Message: msg}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Airlock-Reason", sanitizeHeader(msg))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// sanitizeHeader drops bytes that are not allowed in a header value.
func sanitizeHeader(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 512; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}
