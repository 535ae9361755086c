package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
)

// maxDBArchiveBytes bounds an uploaded vulnerability DB archive when no
// bound is configured (WithDBMaxSize); it is scan.db_max_size's default.
const maxDBArchiveBytes = 4 << 30

// VulnerabilityReport is the answer of GET /api/v1/images/<image>/vulnerabilities.
type VulnerabilityReport struct {
	Image  state.Ref            `json:"image"`
	State  state.State          `json:"state"`
	Policy *state.PolicySummary `json:"policy,omitempty"`
	Report *gate.Report         `json:"report"`
}

// DBImportResult is the answer of POST /api/v1/db/import.
type DBImportResult struct {
	DB      scan.DBStatus `json:"db"`
	Rescans int           `json:"rescans_queued"`
	Retries int           `json:"retries_queued"`
}

// imageWithReport resolves the image in the URL and loads its scan report.
func (s *Server) imageWithReport(w http.ResponseWriter, r *http.Request) (state.Image, *gate.Report, bool) {
	if s.content == nil {
		writeErr(w, http.StatusNotFound, errors.New("scanning is not enabled (gate.policy is not scan)"))
		return state.Image{}, nil, false
	}
	ref, ok := s.imageRef(w, r)
	if !ok {
		return state.Image{}, nil, false
	}
	img, err := s.store.Image(ref)
	if err != nil {
		writeErr(w, statusOf(err), fmt.Errorf("%s: %w", ref, err))
		return img, nil, false
	}
	if img.Scan == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("%s has not been scanned (state %s)", ref, img.State))
		return img, nil, false
	}
	raw, err := s.content.Get(r.Context(), img.Scan.Report)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, fmt.Errorf("report of %s: %w", ref, err))
		return img, nil, false
	}
	var rep gate.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		writeErr(w, http.StatusInternalServerError, fmt.Errorf("report of %s: %w", ref, err))
		return img, nil, false
	}
	return img, &rep, true
}

func (s *Server) vulnerabilities(w http.ResponseWriter, r *http.Request) {
	img, rep, ok := s.imageWithReport(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, VulnerabilityReport{Image: img.Ref, State: img.State, Policy: img.Policy, Report: rep})
}

// sbom serves an SBOM: ?format=spdx (default) or syft; ?platform=<manifest
// digest> picks one platform of an index (default: the first).
func (s *Server) sbom(w http.ResponseWriter, r *http.Request) {
	_, rep, ok := s.imageWithReport(w, r)
	if !ok {
		return
	}
	want := r.URL.Query().Get("platform")
	var pr *gate.PlatformReport
	for i := range rep.Platforms {
		p := &rep.Platforms[i]
		if want == "" || string(p.Manifest) == want || p.Platform == want {
			pr = p
			break
		}
	}
	if pr == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no platform %q in the report", want))
		return
	}
	var d digest.Digest
	switch f := r.URL.Query().Get("format"); f {
	case "", "spdx", "spdx-json":
		d = pr.SPDX
	case "syft", "syft-json":
		d = pr.SyftJSON
	default:
		writeErr(w, http.StatusBadRequest, fmt.Errorf("format %q: want spdx or syft", f))
		return
	}
	raw, err := s.content.Get(r.Context(), d)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

func (s *Server) whereIs(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	hits, err := s.store.ImagesWithVuln(id)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if hits == nil {
		hits = []state.VulnHit{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"vulnerability": id, "images": hits})
}

func (s *Server) dbStatus(w http.ResponseWriter, _ *http.Request) {
	if s.vulndb == nil {
		writeErr(w, http.StatusNotFound, errors.New("scanning is not enabled (gate.policy is not scan)"))
		return
	}
	st, err := s.vulndb.Status()
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// dbImport installs the DB archive in the request body (?name= gives its
// file name, whose suffix tells a raw .db from an archive), then queues a
// rescan of every approved image.
func (s *Server) dbImport(w http.ResponseWriter, r *http.Request) {
	if s.vulndb == nil {
		writeErr(w, http.StatusNotFound, errors.New("scanning is not enabled (gate.policy is not scan)"))
		return
	}
	name := filepath.Base(r.URL.Query().Get("name"))
	if name == "." || name == ".." || name == "/" {
		name = "db.tar.gz"
	}
	dir, err := os.MkdirTemp(s.tmpDir, "db-upload-")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	limit := s.dbMaxSize
	if limit <= 0 {
		limit = maxDBArchiveBytes
	}
	_, err = io.Copy(f, http.MaxBytesReader(w, r.Body, limit))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("upload: the file is larger than the import limit of %s (scan.db_max_size)", config.Size(limit)))
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("upload: %w", err))
		return
	}
	st, err := s.vulndb.Import(path)
	if errors.Is(err, scan.ErrDBTooLarge) {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("import: %w", err))
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("import: %w", err))
		return
	}
	res := DBImportResult{DB: st}
	s.engine.DBUpdated("vulnerability DB", IdentityOf(r).Name, "new vulnerability DB imported", &state.EventDB{
		Built: st.Built, SchemaVersion: st.SchemaVersion, Checksum: st.Checksum, Source: st.Source,
	})
	if res.Rescans, res.Retries, err = s.engine.RescanAll(IdentityOf(r).Name, "new vulnerability DB imported", 0); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	s.log.Info("vulnerability DB imported", "built", st.Built, "rescans", res.Rescans, "retries", res.Retries)
	writeJSON(w, http.StatusOK, res)
}

// MalwareReloadResult is the answer of POST /api/v1/malware/reload.
type MalwareReloadResult struct {
	// Engine is clamd's version line after the reload (engine, database
	// version and date).
	Engine  string `json:"engine"`
	Rescans int    `json:"rescans_queued"`
	Retries int    `json:"retries_queued"`
}

// malwareReload has clamd load its signatures again (after freshclam, or
// after new signatures were copied in offline), then queues a rescan of
// every approved image, as a new vulnerability DB does.
func (s *Server) malwareReload(w http.ResponseWriter, r *http.Request) {
	if s.reloadMalware == nil {
		writeErr(w, http.StatusNotFound, errors.New("malware scanning is not enabled (malware.clamd)"))
		return
	}
	engine, err := s.reloadMalware(r.Context())
	if err != nil {
		writeErr(w, http.StatusBadGateway, fmt.Errorf("reload malware signatures: %w", err))
		return
	}
	res := MalwareReloadResult{Engine: engine}
	s.engine.DBUpdated("malware signatures", IdentityOf(r).Name, "malware signatures reloaded", &state.EventDB{Detail: engine})
	if res.Rescans, res.Retries, err = s.engine.RescanAll(IdentityOf(r).Name, "malware signatures reloaded", 0); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	s.log.Info("malware signatures reloaded", "engine", engine, "rescans", res.Rescans, "retries", res.Retries)
	writeJSON(w, http.StatusOK, res)
}
