package proxy

import (
	"net/http"

	"github.com/airlockproxy/airlock/pullrec"
	"github.com/airlockproxy/airlock/storage/state"
)

// WithPullRecorder records every served manifest of an image in rec (pull
// records: last_pulled, pull_count, recent pullers). A nil rec records
// nothing.
func WithPullRecorder(rec *pullrec.Recorder) Option { return func(s *Server) { s.pullRec = rec } }

// recordPull notes a served manifest for pull records. Only a digest with
// an image record of its own counts: a platform manifest of an index is
// part of the pull of its index, which a client fetched just before it
// (podman, docker and containerd all do), so counting it too would count
// one pull twice. A GET counts a pull; a HEAD (a tag or digest check, as
// kubelet's imagePullPolicy Always or containerd's resolve send) only
// moves last_pulled: the node uses the image but downloaded nothing.
// The client is the TCP peer; X-Forwarded-For is not trusted.
func (s *Server) recordPull(r *http.Request, ref state.Ref, dec state.Decision) {
	if s.pullRec == nil || dec.Image == nil || dec.Image.Digest != ref.Digest {
		return
	}
	s.pullRec.Record(ref, r.RemoteAddr, r.UserAgent(), r.Method == http.MethodHead)
}
