package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scriptedAPI answers GET /v1/jobs/{id} with the next of its answers each
// time (repeating the last), to walk the CLI through a job's life and the
// API's hiccups deterministically.
type scriptedAPI struct {
	mu      sync.Mutex
	answers []scripted
	auth    []string // Authorization headers seen
	paths   []string
}

type scripted struct {
	status int
	body   string
}

func (s *scriptedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.paths = append(s.paths, r.URL.EscapedPath())
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(a.body))
}

func startScripted(t *testing.T, answers ...scripted) (*scriptedAPI, string) {
	t.Helper()
	s := &scriptedAPI{answers: answers}
	srv := httptest.NewServer(s) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return s, srv.URL
}

const jobBase = `"id":"j1","to":"0x5FbDB2315678afecb367f032d93F642f64180aa3","function":"increment()","data":"0xd09de08a","value":"0","confirmations":2`

func job(rest string) scripted { return scripted{http.StatusOK, "{" + jobBase + "," + rest + "}"} }

// --wait prints one line per change (a fee bump's new hash is a change),
// rides out an API that is briefly down, and exits with the cancelled code.
func TestStatusWaitPrintsEachChange(t *testing.T) {
	t.Parallel()
	api, url := startScripted(t,
		job(`"status":"queued","nonce":null,"attempts":[]`),
		job(`"status":"queued","nonce":null,"attempts":[]`),
		scripted{http.StatusServiceUnavailable, `{"error":{"code":"unavailable","message":"could not load the job: redis down"}}`},
		job(`"status":"submitted","nonce":7,"tx_hash":"0xaa","attempts":[{"kind":"original"}]`),
		job(`"status":"submitted","nonce":7,"tx_hash":"0xbb","attempts":[{"kind":"original"},{"kind":"bump"}]`),
		job(`"status":"submitted","nonce":7,"tx_hash":"0xbb","cancel_requested":true,"attempts":[{"kind":"original"},{"kind":"bump"}]`),
		job(`"status":"cancelled","nonce":7,"tx_hash":"0xcc","block_number":12,"attempts":[{"kind":"original"},{"kind":"bump"},{"kind":"cancel"}]`),
	)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"relayq", "status", "j1", "--wait", "--interval", "50ms", "--api", url, "--key", "k-123"}, envOf(nil), &out, &errOut)
	require.Error(t, err)
	require.Equal(t, exitCancelled, exitCode(err), "%v", err)
	lines := progressLines(out.String())
	require.Equal(t, []string{
		"queued",
		"(API not answering, retrying: API answered 503 unavailable: could not load the job: redis down)",
		"submitted  nonce 7, tx 0xaa",
		"submitted  nonce 7, tx 0xbb (bump, attempt 2)",
		"submitted  nonce 7, tx 0xbb (bump, attempt 2), cancel requested",
		"cancelled  block 12",
	}, lines, out.String())
	require.Contains(t, out.String(), "status     cancelled\n")
	require.NotContains(t, out.String(), "\r", "no spinner when stdout is not a terminal")
	api.mu.Lock()
	defer api.mu.Unlock()
	require.Equal(t, "Bearer k-123", api.auth[0])
	require.Equal(t, "/v1/jobs/j1", api.paths[0])
}

// progressLines returns the progress lines' text without the elapsed time.
func progressLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "s  "); i > 0 && strings.HasPrefix(l, " ") {
			lines = append(lines, l[i+3:])
		}
	}
	return lines
}

// An error the caller made (404, 401) ends the wait at once instead of
// retrying until the timeout.
func TestStatusWaitStopsOnAPIErrors(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t, scripted{http.StatusUnauthorized, `{"error":{"code":"unauthorized","message":"missing or invalid API key: send Authorization: Bearer <key>"}}`})
	var out, errOut bytes.Buffer
	start := time.Now()
	err := run(context.Background(), []string{"relayq", "status", "--wait", "--timeout", "1m", "--api", url, "j1"}, envOf(nil), &out, &errOut)
	require.Error(t, err)
	require.Less(t, time.Since(start), 30*time.Second, "gave up at once, not at the timeout")
	require.Equal(t, exitError, exitCode(err))
	require.Contains(t, err.Error(), "401 unauthorized: missing or invalid API key")

	// Something that is not relayq answers: its status and text are shown.
	_, url = startScripted(t, scripted{http.StatusNotFound, `<html>nginx</html>`})
	err = run(context.Background(), []string{"relayq", "status", "--api", url, "j1"}, envOf(nil), &out, &errOut)
	require.Error(t, err)
	require.Contains(t, err.Error(), "404 not_found: <html>nginx</html>")
}

// An API that never answers makes --wait end with the timeout code.
func TestStatusWaitTimesOutWhileTheAPIIsDown(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t, scripted{http.StatusBadGateway, `bad gateway`})
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"relayq", "status", "j1", "--wait", "--timeout", "300ms", "--interval", "50ms", "--api", url}, envOf(nil), &out, &errOut)
	require.Error(t, err)
	require.Equal(t, exitTimeout, exitCode(err), "%v", err)
	require.Contains(t, err.Error(), "job j1 is still unknown after 300ms")
	require.Contains(t, out.String(), "API not answering, retrying: API answered 502")
}

// Ctrl-C (the context ending) stops the wait, not the job, and says where
// the job was.
func TestStatusWaitStopsWhenInterrupted(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t, job(`"status":"submitted","nonce":1,"tx_hash":"0xaa","attempts":[{"kind":"original"}]`))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"relayq", "status", "j1", "--wait", "--interval", "50ms", "--api", url}, envOf(nil), &out, &errOut)
	require.Error(t, err)
	require.Equal(t, exitError, exitCode(err))
	require.Contains(t, err.Error(), "stopped waiting: job j1 is submitted")
}

// On a terminal the last line is a spinner with the elapsed time, erased
// before each new line.
func TestStatusWaitSpinnerOnATerminal(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t,
		job(`"status":"mined","nonce":1,"tx_hash":"0xaa","block_number":5,"attempts":[{"kind":"original"}]`),
		job(`"status":"mined","nonce":1,"tx_hash":"0xaa","block_number":5,"attempts":[{"kind":"original"}]`),
		job(`"status":"confirmed","nonce":1,"tx_hash":"0xaa","block_number":5,"attempts":[{"kind":"original"}]`),
	)
	c := &apiClient{base: url, http: http.DefaultClient}
	var out bytes.Buffer
	j, _, err := waitJob(context.Background(), c, "j1", time.Minute, 250*time.Millisecond, &out, true)
	require.NoError(t, err)
	require.Equal(t, "confirmed", j.Status)
	s := out.String()
	require.Regexp(t, `\r\x1b\[K[|/\\-] mined [0-9.]+s`, s, "a spinner line")
	require.Regexp(t, `\r\x1b\[K +[0-9.]+s  confirmed  block 5\n$`, s, "the spinner is erased before the last line")
	require.Contains(t, s, "mined      block 5, waiting for 2 confirmations\n")
}

// A job that moves faster than the polls still shows every status it passed
// through: they come from its history.
func TestStatusWaitShowsStepsBetweenPolls(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t,
		job(`"status":"queued","nonce":null,"attempts":[],"history":[{"to":"queued"}]`),
		job(`"status":"confirmed","nonce":3,"tx_hash":"0xaa","block_number":9,"attempts":[{"kind":"original"}],
			"history":[{"to":"queued"},{"to":"submitted"},{"to":"mined"},{"to":"confirmed"}]`),
	)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"relayq", "status", "j1", "--wait", "--interval", "50ms", "--api", url}, envOf(nil), &out, &errOut)
	require.NoError(t, err, errOut.String())
	require.Equal(t, []string{"queued", "submitted", "mined", "confirmed  block 9"}, progressLines(out.String()), out.String())
}

// A status already shown on its own progress line is not shown again when
// the job then moves on two steps between polls (the trial found
// "submitted" printed twice).
func TestStatusWaitShowsEachStatusOnce(t *testing.T) {
	t.Parallel()
	_, url := startScripted(t,
		job(`"status":"submitted","nonce":3,"tx_hash":"0xaa","attempts":[{"kind":"original"}],"history":[{"to":"queued"},{"to":"submitted"}]`),
		job(`"status":"confirmed","nonce":3,"tx_hash":"0xaa","block_number":9,"attempts":[{"kind":"original"}],
			"history":[{"to":"queued"},{"to":"submitted"},{"to":"mined"},{"to":"confirmed"}]`),
	)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"relayq", "status", "j1", "--wait", "--interval", "50ms", "--api", url}, envOf(nil), &out, &errOut)
	require.NoError(t, err, errOut.String())
	lines := progressLines(out.String())
	require.Len(t, lines, 4, out.String())
	require.Equal(t, "queued", lines[0])
	require.Regexp(t, `^submitted`, lines[1])
	require.Equal(t, []string{"mined", "confirmed  block 9"}, lines[2:], out.String())
}
