// Package e2e holds Airlock's end-to-end tests.
//
// The tests build the real `airlock` binary once (in TestMain), run it as a
// subprocess with a YAML config written to a temporary directory, and point
// it at an in-process distribution v3 registry (internal/registrytest) as its
// upstream. Clients pull THROUGH airlock with go-containerregistry's remote
// package and plain HTTP; admin actions go through the admin HTTP API and the
// airlock CLI itself. Nothing here talks to the internet and every listener
// binds 127.0.0.1, except one: the test of `airlock serve` with no config
// (embedded defaults, ":5000") runs it inside a network namespace of its
// own, where that address reaches nothing else.
//
// Run them with:
//
//	go test ./e2e/ -count=1 -v
//
// The web console's tests (TestConsole*, console_test.go) drive a real
// headless Chromium (Debian's chromium package, /usr/bin/chromium) with
// chromedp (browser_test.go). They save screenshots of the pages (PNG) for
// a person to review, in each test's t.ArtifactDir: kept only when the
// tests run with -artifacts, under -outputdir (the test log prints each
// file's path), e.g.
//
//	go test ./e2e/ -count=1 -v -run 'TestConsole' -artifacts -outputdir /tmp/airlock-shots
//
// and otherwise written to a temporary directory removed after the test.
// `make test` (test-e2e) keeps them under test-artifacts/ (ARTIFACTS=DIR).
// A failing browser step also saves a screenshot, named failed-<step>.
//
// This file exists so that the package has a non-test file; all the code is
// in *_test.go files.
package e2e
