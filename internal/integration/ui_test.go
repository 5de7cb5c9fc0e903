package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
)

// chromiumPath finds the distribution's Chromium (scripts/install-test-deps.sh
// installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	// As with anvil and redis-server, a missing program fails the test:
	// make test installs it, and a skip would pass a run that tested nothing.
	t.Fatal("chromium is not installed: run scripts/install-test-deps.sh (make deps)")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile. The
// background-networking flags matter: without them Chromium waits on
// network it cannot reach in a closed sandbox.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	return ctx
}

// screenshot saves the page to docs/ui/<name>.png when
// RELAYQ_UI_SCREENSHOTS=1, so a normal run leaves the tree alone.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("RELAYQ_UI_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (below that, JPEG)
	require.NoError(t, err)
	dir := filepath.Join("..", "..", "docs", "ui")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// The UI in a real browser against the API and a worker on Redis and
// anvil: log in with a key, watch a job reach confirmed on the list without
// a reload, see its attempts, cancel a queued job with the button, see a
// paused signer, and find that a script in metadata does not run.
func TestUIInABrowser(t *testing.T) {
	t.Parallel()
	chromiumPath(t) // skip before starting anything
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, metrics: metrics.New()})
	ctx := context.Background()

	// A signer no worker holds a key for, marked paused as a worker marks
	// one that cannot pay: a job pinned to it stays queued.
	held := crypto.PubkeyToAddress(s.anvil.Keys()[3].PublicKey)
	require.NoError(t, nonce.NewRegistry(s.rdb, "relayq:").Register(ctx, 31337, []common.Address{held}))
	require.NoError(t, nonce.New(s.rdb, "relayq:", 31337, held).SetPaused(ctx, "insufficient funds for gas * price + value"))
	queued := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","from":%q,"metadata":{"order":"held"}}`, s.counter, held.Hex()))

	const evil = `<script>document.title='pwned';window.pwned=1</script><img src=x onerror="window.pwned=2">`
	hostile := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"note":%q}}`, s.counter, evil))

	b := newBrowser(t)
	base := s.api.URL
	// Logging in: the list page sends the browser to the form and back.
	require.NoError(t, chromedp.Do(b,
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), testAPIKey),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("table.jobs")),
	))
	loc, err := chromedp.Run(b, chromedp.Location())
	require.NoError(t, err)
	require.Equal(t, base+"/ui/", loc)

	// A job submitted after the page loaded shows up and turns confirmed
	// by the live refresh: the marker set on this page survives, so the
	// page was never reloaded.
	require.NoError(t, chromedp.Do(b, chromedp.Evaluate[chromedp.Void]("window.relayqMarker = 42")))
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"order":"first"}}`, s.counter))
	row := fmt.Sprintf(`tr[data-id=%q]`, j.ID)
	require.NoError(t, chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS(row+" .badge.st-confirmed"))))
	require.Equal(t, 42, evalJS[int](t, b, "window.relayqMarker"))
	require.Contains(t, evalJS[string](t, b, fmt.Sprintf("document.querySelector('%s').textContent", row)), "increment()")
	screenshot(t, b, "jobs")

	// The script in the hostile job's metadata is shown as text and never
	// ran, neither on load nor through the live refresh.
	meta := evalJS[string](t, b, fmt.Sprintf("document.querySelector('tr[data-id=%q] td.meta').textContent", hostile.ID))
	require.Contains(t, meta, "<script>document.title='pwned'")
	require.Equal(t, "Jobs · relayq", evalJS[string](t, b, "document.title"))
	require.Equal(t, "undefined", evalJS[string](t, b, "typeof window.pwned"))

	// The confirmed job's page: its timeline has the attempt, mined.
	require.NoError(t, chromedp.Do(b,
		chromedp.Click(chromedp.CSS(row+" a")),
		chromedp.WaitVisible(chromedp.CSS("#timeline tr.attempt")),
	))
	attempt := evalJS[string](t, b, "document.querySelector('#timeline tr.attempt').textContent")
	require.Contains(t, attempt, "original")
	require.Contains(t, attempt, "mined")
	require.Contains(t, evalJS[string](t, b, "document.getElementById('raw').textContent"), `"status": "confirmed"`)
	screenshot(t, b, "job")

	// The hostile job's page shows the script as text, and it does not run.
	require.NoError(t, chromedp.Do(b,
		chromedp.Navigate(base+"/ui/jobs/"+hostile.ID),
		chromedp.WaitVisible(chromedp.CSS("#job-meta")),
	))
	require.Contains(t, evalJS[string](t, b, "document.getElementById('job-meta').textContent"), "<script>")
	require.Equal(t, "undefined", evalJS[string](t, b, "typeof window.pwned"))
	require.NotEqual(t, "pwned", evalJS[string](t, b, "document.title"))

	// The queued job is cancelled through its button.
	require.NoError(t, chromedp.Do(b,
		chromedp.Navigate(base+"/ui/jobs/"+queued.ID),
		chromedp.WaitVisible(chromedp.CSS("#cancel")),
	))
	require.Equal(t, "queued", evalJS[string](t, b, "document.getElementById('job-status').textContent"))
	require.NoError(t, chromedp.Do(b,
		chromedp.Click(chromedp.CSS("#cancel")),
		chromedp.WaitVisible(chromedp.CSS("#notice")),
	))
	require.Equal(t, "cancelled", evalJS[string](t, b, "document.getElementById('job-status').textContent"))
	got, err := s.store.Get(ctx, queued.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Cancelled, got.Status)
	require.Equal(t, "cancelled by request", got.History[len(got.History)-1].Note, "the API's cancel path")

	// The held signer is shown paused, with why; the worker's is active.
	lane := fmt.Sprintf(`section.lane[data-signer=%q]`, held.Hex())
	require.NoError(t, chromedp.Do(b,
		chromedp.Navigate(base+"/ui/signers"),
		chromedp.WaitVisible(chromedp.CSS(lane+" .badge.paused")),
	))
	require.Contains(t, evalJS[string](t, b, fmt.Sprintf("document.querySelector('%s').textContent", lane)), "insufficient funds")
	active := fmt.Sprintf(`section.lane[data-signer=%q] .badge.ok`, s.signer.Hex())
	require.NoError(t, chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS(active))))
	screenshot(t, b, "signers")

	require.NoError(t, chromedp.Do(b,
		chromedp.Navigate(base+"/ui/overview"),
		chromedp.WaitVisible(chromedp.CSS(`td.n[data-status="confirmed"]`)),
	))
	require.NotEqual(t, "0", strings.TrimSpace(evalJS[string](t, b, `document.querySelector('td.n[data-status="confirmed"]').textContent`)))
	// The throughput chart comes with the second sample of the counters
	// (10 s after the API started); the live refresh brings it in.
	require.NoError(t, chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS("svg.chart polyline.finished"))))
	screenshot(t, b, "overview")

	// After logging out the pages need the key again.
	r := s.do(http.MethodGet, "/v1/jobs/"+j.ID, "")
	require.Equal(t, http.StatusOK, r.Status)
	require.NoError(t, chromedp.Do(b,
		chromedp.Click(chromedp.CSS(".logout button")),
		chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.Navigate(base+"/ui/signers"),
		chromedp.WaitVisible(chromedp.CSS("#key")),
	))
}
