package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	// The KMS providers signing.kms can name.
	"github.com/prometheus/client_golang/prometheus/promauto"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/console"
	"github.com/airlockproxy/airlock/events"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/listener"
	"github.com/airlockproxy/airlock/malware"
	"github.com/airlockproxy/airlock/proxy"
	"github.com/airlockproxy/airlock/pullauth"
	"github.com/airlockproxy/airlock/pullrec"
	"github.com/airlockproxy/airlock/retention"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/upstream"
	"github.com/airlockproxy/airlock/watch"
)

const serveUsage = `Usage: airlock serve [--config FILE]

Runs the registry API (listen, default :5000) and the admin API
(admin.listen, default 127.0.0.1:5001). Without --config the embedded
defaults are used, and an admin token is generated once into
<data_dir>/admin.token unless $AIRLOCK_ADMIN_TOKEN is set.
airlock.example.yaml shows every configuration key.

Flags:
`

func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveUsage)
		fs.PrintDefaults()
	}
	file := fs.String("config", "", "YAML config file (embedded defaults when empty)")
	if err := parseFlags(fs, args, stdout, fs.Parse); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock serve: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitError(2)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return fmt.Errorf("config %s: %w", *file, err)
	}
	if err := cfg.CheckTLSFiles(); err != nil {
		return fmt.Errorf("config %s: %w", *file, err)
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if *file == "" && cfg.Admin.Token == "" {
		// Running on the defaults is the first thing a new user does;
		// an admin API they cannot use would stop them at step 0.
		tok, path, created, err := adminToken(cfg.DataDir)
		if err != nil {
			return err
		}
		cfg.Admin.Token = tok
		verb := "read"
		if created {
			verb = "generated"
		}
		log.Info("admin token "+verb, "file", path, "use", "export AIRLOCK_ADMIN_TOKEN=$(cat "+path+")")
	}
	store, err := openState(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	// Webhook events (events/): the outbox records every state change from
	// here on, before the pipeline or the admin API can make one.
	deliverer, err := events.New(store, cfg.Events, events.WithLogger(log), events.WithUserAgent("airlock/"+version))
	if err != nil {
		return err
	}
	if err := store.ConfigureOutbox(deliverer.Names(), cfg.Events.MaxPending); err != nil {
		return fmt.Errorf("events outbox: %w", err)
	}

	params := map[string]any{}
	for k, v := range cfg.Storage.Parameters {
		params[k] = v
	}
	if cfg.Storage.Driver == "filesystem" && params["rootdirectory"] == nil {
		params["rootdirectory"] = filepath.Join(cfg.DataDir, "content")
	}
	cs, err := content.New(ctx, cfg.Storage.Driver, params)
	if err != nil {
		return err
	}
	// Uploads a kill interrupted are garbage; their jobs run again. On S3
	// this is also the first request to the bucket, so wrong credentials or
	// an unreachable endpoint stop the start here, named as storage.
	// With replicas sharing the storage, another one may be uploading
	// right now: only uploads untouched for a day are garbage then.
	var uploadAge time.Duration
	if store.Shared() {
		uploadAge = 24 * time.Hour
	}
	if _, err := cs.CleanUploads(ctx, uploadAge); err != nil {
		return fmt.Errorf("storage (%s): %w", cfg.Storage.Driver, err)
	}
	// A state file from before serving by role gets its links first.
	if n, err := gate.Relink(ctx, store, cs); err != nil {
		return err
	} else if n > 0 {
		log.Info("state upgraded: links derived from stored manifests", "images", n)
	}

	ups, err := upstream.NewSet(cfg.Upstreams, upstream.WithUserAgent("airlock/"+version))
	if err != nil {
		return err
	}
	// The scanner is built in the background: syft's license scanner
	// takes seconds to build, and the listeners must not wait for it.
	// /readyz answers 503 until it is ready; scans wait for it.
	var scanner *asyncScanner
	if cfg.Gate.Policy == config.PolicyScan {
		scanner = startScanner(log, cfg.ScanDBDir(), scan.WithMaxAge(cfg.Scan.MaxDBAge), scan.WithMaxDBSize(int64(cfg.Scan.DBMaxSize)))
	}
	var signer *sign.Signer
	if cfg.Signing.Enabled() {
		if signer, err = loadSigner(ctx, cfg.Signing); err != nil {
			return err
		}
	} else {
		log.Warn("signing disabled: approved images get no Airlock signature (set signing.key)")
	}
	var sc gate.Scanner
	if scanner != nil {
		sc = scanner
	}
	steps, err := gate.Pipeline(cfg, ups, cs, store, sc, signer)
	if err != nil {
		return err
	}
	if cfg.Gate.Policy == config.PolicyAuto {
		log.Warn("gate.policy is auto: images are approved without any check; use it for tests only")
	}
	engine := gate.New(store, cfg.Gate, steps, gate.WithLogger(log), gate.WithRescanFailure(cfg.Scan.OnRescanFail), gate.WithAuditRetention(cfg.Audit))
	promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_queue_depth",
		Help: "Jobs waiting in or running from the pipeline queue.",
	}, func() float64 { return float64(store.QueueDepth()) })

	// Pull records: gathered in memory, written by pullRec.Run (nil when off).
	pullRec := pullrec.New(store, cfg.Pulls, pullrec.WithLogger(log))
	proxyOpts := []proxy.Option{proxy.WithLogger(log), proxy.WithPullRecorder(pullRec)}
	if cfg.Registry.Auth.Enabled() {
		// Pull authentication (package pullauth): htpasswd users and API
		// tokens log in through the registry token flow.
		pa, err := pullauth.New(cfg.Registry.Auth, store, pullauth.WithLogger(log))
		if err != nil {
			return err
		}
		proxyOpts = append(proxyOpts, proxy.WithAuth(pa))
		log.Info("pull authentication on", "htpasswd", cfg.Registry.Auth.Htpasswd)
	}
	registry := proxy.New(cfg, store, cs, engine, ups, proxyOpts...)
	// Retention and content GC: `airlock gc`, and every retention.interval.
	collector := retention.New(store, cs, cfg.Retention, retention.WithLogger(log))
	// Watched repositories (watch/): the config's watch: list plus those
	// added through the admin API, queued through the gate like pulls.
	watches, err := watch.New(cfg, store, engine, ups, watch.WithLogger(log))
	if err != nil {
		return err
	}
	servers := []*http.Server{newServer(cfg.Listen, registry.Handler(), log)}
	apis := []string{"registry"}

	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			if window := store.FailStatic(); window > 0 {
				// Unready would take every replica out of the load
				// balancer at once; fail-static exists to keep serving.
				return fmt.Errorf("%w: state database unreachable, serving only images seen approved in the last %s: %v", admin.ErrDegraded, window, err)
			}
			return err
		}
		if scanner != nil {
			return scanner.Ready()
		}
		return nil
	}
	var clamd *malware.Client
	if cfg.Malware.Clamd != "" {
		if clamd, err = malware.NewClient(cfg.Malware.Clamd, cfg.Malware.Timeout); err != nil {
			return fmt.Errorf("malware.clamd: %w", err)
		}
	}
	if cfg.Admin.Token == "" {
		log.Error("admin API disabled: no token; set admin.token or AIRLOCK_ADMIN_TOKEN to enable it")
	} else {
		opts := []admin.Option{admin.WithLogger(log), admin.WithReady(ready), admin.WithUpstreams(cfg.Upstreams), admin.WithGC(collector)}
		if scanner != nil {
			opts = append(opts, admin.WithScanning(cs, scanner, cfg.DataDir), admin.WithDBMaxSize(int64(cfg.Scan.DBMaxSize)))
		}
		if signer != nil {
			opts = append(opts, admin.WithPublicKey(signer.PublicKeyPEM()))
		}
		if clamd != nil {
			opts = append(opts, admin.WithMalwareReload(func(ctx context.Context) (string, error) {
				// Signatures without an official version number show no
				// change in clamd's version line: give the reload 3s.
				if err := clamd.ReloadWait(ctx, 3*time.Second); err != nil {
					return "", err
				}
				return clamd.Version(ctx)
			}))
		}
		opts = append(opts, admin.WithEvents(deliverer))
		opts = append(opts, admin.WithWatches(watches))
		opts = append(opts, admin.WithSettings(*cfg))
		adm, err := admin.New(engine, store, cfg.Admin.Token, opts...)
		if err != nil {
			return err
		}
		// The web console (/ui/) shares the admin listener: it is a
		// client of the admin API, in process (package console).
		consOpts := []console.Option{console.WithLogger(log)}
		if cfg.Admin.OIDC.Enabled() {
			s, err := newConsoleSSO(ctx, cfg.Admin.OIDC, log)
			if err != nil {
				return err
			}
			consOpts = append(consOpts, console.WithSSO(s, cfg.Admin.OIDC.SessionLifetime()))
		}
		cons, err := console.New(adm, store, consOpts...)
		if err != nil {
			return err
		}
		adminMux := http.NewServeMux()
		adminMux.Handle("/ui/", cons.Handler())
		adminMux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
		adminMux.Handle("/", adm.Handler())
		adminSrv := newServer(cfg.Admin.Listen, adminMux, log)
		// Shutdown waits for open requests: end the console's live
		// update streams, which never end by themselves.
		adminSrv.RegisterOnShutdown(cons.Close)
		servers = append(servers, adminSrv)
		apis = append(apis, "admin")
	}

	var lns []net.Listener
	schemes := make([]string, len(servers))
	for i, srv := range servers {
		// Package listener: TLS from files reloaded on change, client
		// certificates (mTLS), the registry's connection bound.
		lo := listener.Options{TLS: cfg.TLS, Field: "tls", MaxConnections: cfg.Limits.MaxConnections, Logger: log}
		if apis[i] == "admin" {
			lo = listener.Options{TLS: cfg.Admin.TLS, Field: "admin.tls", HTTP2: true, Logger: log}
		}
		ln, err := listener.Listen(srv.Addr, lo)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		schemes[i] = "http"
		if lo.TLS.Enabled() {
			schemes[i] = "https"
		}
		lns = append(lns, ln)
	}

	var wg sync.WaitGroup
	engineCtx, stopEngine := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		engine.Run(engineCtx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		watches.Run(engineCtx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		deliverer.Run(engineCtx)
	}()
	// Stopped after the listeners shut down: its last flush writes every
	// pull served before the stop.
	wg.Add(1)
	go func() {
		defer wg.Done()
		pullRec.Run(engineCtx)
	}()
	if scanner != nil && cfg.Scan.RescanInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			engine.RunRescans(engineCtx, cfg.Scan.RescanInterval)
		}()
	}
	if scanner != nil && cfg.Scan.UpdateURL != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			engine.RunDBUpdates(engineCtx, cfg.Scan.UpdateInterval, "vulnerability DB", func(ctx context.Context) (bool, error) {
				return scanner.Update(ctx, cfg.Scan.UpdateURL)
			})
		}()
	}
	if cfg.Retention.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			collector.Schedule(engineCtx, cfg.Retention.Interval)
		}()
	}
	if clamd != nil && cfg.Malware.DBDir != "" {
		watch := malware.NewDBWatch(clamd, cfg.Malware.DBDir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			engine.RunDBUpdates(engineCtx, cfg.Malware.DBCheckInterval, "malware signatures", watch.Check)
		}()
	}
	errc := make(chan error, len(servers)+1)
	if scanner != nil {
		go func() {
			// A scanner that cannot be built fails serve, as it did
			// when it was built before listening.
			if _, err := scanner.wait(engineCtx); err != nil && engineCtx.Err() == nil {
				errc <- err
			}
		}()
	}
	for i, srv := range servers {
		log.Info("listening", "addr", lns[i].Addr().String(), "api", apis[i], "scheme", schemes[i])
		go func() {
			if err := srv.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("airlock started", "version", version, "data_dir", cfg.DataDir, "storage", cfg.Storage.Driver, "state", cfg.State.Driver, "lease_owner", store.Owner(),
		"policy", cfg.Gate.Policy, "tag_mode", cfg.Gate.TagMode, "upstreams", len(cfg.Upstreams))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server failed", "err", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdownCtx)
	}
	stopEngine()
	wg.Wait()
	return err
}

// loadSigner reads the enterprise key, or opens it in a KMS.
func loadSigner(ctx context.Context, c config.Signing) (*sign.Signer, error) {
	if c.KMS != "" {
		sv, err := kms.Get(ctx, c.KMS, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("signing.kms %s: %w", c.KMS, err)
		}
		s, err := sign.NewSigner(sv)
		if err != nil {
			return nil, fmt.Errorf("signing.kms %s: %w", c.KMS, err)
		}
		return s, nil
	}
	pem, err := os.ReadFile(c.Key)
	if err != nil {
		return nil, fmt.Errorf("signing.key: %w", err)
	}
	pw, err := c.Password()
	if err != nil {
		return nil, err
	}
	s, err := sign.LoadSigner(pem, pw)
	if err != nil {
		return nil, fmt.Errorf("signing.key %s: %w", c.Key, err)
	}
	return s, nil
}

// newServer sets timeouts that bound slow or idle clients; there is no
// write timeout because large blobs legitimately stream for minutes.
func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
