package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
)

// browser is an HTTP client that keeps cookies and does not follow
// redirects, as the UI tests need to see them.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: base, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (b *browser) do(method, path string, form url.Values, headers ...string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := b.hc.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	return page{Status: res.StatusCode, Header: res.Header, Body: string(raw)}
}

func (b *browser) get(path string, headers ...string) page {
	return b.do(http.MethodGet, path, nil, headers...)
}

func (b *browser) login(key string) page {
	b.t.Helper()
	return b.do(http.MethodPost, "/ui/login", url.Values{"key": {key}, "next": {"/ui/signers"}})
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.Body)
	require.NotNil(t, m, "no CSRF token in the page")
	return m[1]
}

// Without a session a page goes to the login form and a live refresh gets
// 401; a wrong key is refused; the right one sets a signed cookie (not the
// key) with the flags a session needs, and the session ends when it
// expires, is tampered with, or its key is no longer configured.
func TestUILoginAndSession(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.APIKeys = []string{testKey, otherKey} })
	br := newBrowser(t, b.http.URL)

	p := br.get("/ui/?status=queued")
	require.Equal(t, http.StatusSeeOther, p.Status)
	require.Equal(t, "/ui/login?next="+url.QueryEscape("/ui/?status=queued"), p.Header.Get("Location"))
	require.Equal(t, http.StatusUnauthorized, br.get("/ui/", uiLiveHeader, "1").Status)
	require.Equal(t, http.StatusOK, br.get("/ui/login").Status)
	require.Equal(t, http.StatusFound, br.get("/ui").Status)

	p = br.login("not-a-key")
	require.Equal(t, http.StatusUnauthorized, p.Status)
	require.Contains(t, p.Body, "not one of this relayq")
	require.Empty(t, p.Header.Values("Set-Cookie"))

	p = br.login(testKey)
	require.Equal(t, http.StatusSeeOther, p.Status)
	require.Equal(t, "/ui/signers", p.Header.Get("Location"))
	cookie := p.Header.Get("Set-Cookie")
	require.Contains(t, cookie, uiCookie+"=")
	require.Contains(t, cookie, "HttpOnly")
	require.Contains(t, cookie, "SameSite=Strict")
	require.Contains(t, cookie, "Path=/ui/")
	require.NotContains(t, cookie, "Secure", "plain HTTP: a Secure cookie would never come back")
	require.NotContains(t, cookie, testKey)
	require.Equal(t, http.StatusOK, br.get("/ui/").Status)

	// Behind a TLS-terminating proxy the cookie is Secure.
	p = br.do(http.MethodPost, "/ui/login", url.Values{"key": {otherKey}}, "X-Forwarded-Proto", "https")
	require.Contains(t, p.Header.Get("Set-Cookie"), "Secure")

	// A login never redirects off the UI.
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/v1/jobs"} {
		p = br.do(http.MethodPost, "/ui/login", url.Values{"key": {testKey}, "next": {next}})
		require.Equal(t, "/ui/", p.Header.Get("Location"), next)
	}

	sess := b.srv.ui.newSession(b.srv.ui.mustKeyID(t, testKey))
	tampered := strings.Replace(sess.cookie, sess.keyID, b.srv.ui.mustKeyID(t, otherKey), 1)
	expired := b.srv.ui.newSession(sess.keyID)
	expired.cookie = strings.Replace(expired.cookie, fmt.Sprint(expired.expires.Unix()), fmt.Sprint(time.Now().Add(-time.Second).Unix()), 1)
	expiredSigned := uiSession{}
	{
		e := fmt.Sprint(time.Now().Add(-time.Second).Unix())
		expiredSigned.cookie = e + "." + sess.keyID + ".n." + b.srv.ui.mac("session", e, sess.keyID, "n")
	}
	other := setup(t, func(c *Config) { c.APIKeys = []string{"a-rotated-key-0123456789"} })
	for _, tc := range []struct {
		name   string
		srv    string
		cookie string
		ok     bool
	}{
		{"valid", b.http.URL, sess.cookie, true},
		{"tampered key id", b.http.URL, tampered, false},
		{"expiry changed", b.http.URL, expired.cookie, false},
		{"expired", b.http.URL, expiredSigned.cookie, false},
		{"garbage", b.http.URL, "x.y", false},
		{"keys rotated", other.http.URL, sess.cookie, false},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.srv+"/ui/", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: uiCookie, Value: tc.cookie})
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		require.NoError(t, err)
		res.Body.Close()
		if tc.ok {
			require.Equal(t, http.StatusOK, res.StatusCode, tc.name)
		} else {
			require.Equal(t, http.StatusSeeOther, res.StatusCode, tc.name)
		}
	}

	// Guessing keys through the form is limited per client address.
	limited := false
	for range uiLoginBurst + 1 {
		if br.login("guess").Status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	require.True(t, limited, "login attempts are rate limited")

	// Logging out clears the cookie.
	p = br.get("/ui/")
	p = br.do(http.MethodPost, "/ui/logout", url.Values{"csrf": {csrfOf(t, p)}})
	require.Equal(t, http.StatusSeeOther, p.Status)
	require.Equal(t, http.StatusSeeOther, br.get("/ui/").Status)
}

func (u *uiState) mustKeyID(t *testing.T, key string) string {
	id, ok := u.keyID(key)
	require.True(t, ok)
	return id
}

// The cancel button goes through the API's cancel, and only with the
// page's CSRF token from the same site.
func TestUICancelNeedsTheCSRFToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, testCounter))
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	id := r.job(t).ID
	br := newBrowser(t, b.http.URL)
	require.Equal(t, http.StatusSeeOther, br.login(testKey).Status)
	p := br.get("/ui/jobs/" + id)
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, `id="cancel"`)
	token := csrfOf(t, p)

	other := newBrowser(t, b.http.URL)
	require.Equal(t, http.StatusSeeOther, other.login(testKey).Status)
	otherToken := csrfOf(t, other.get("/ui/"))
	require.NotEqual(t, token, otherToken, "tokens are bound to their session")

	cancel := "/ui/jobs/" + id + "/cancel"
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {"x"}}, nil},
		{"another session's token", url.Values{"csrf": {otherToken}}, nil},
		{"cross-site", url.Values{"csrf": {token}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"other origin", url.Values{"csrf": {token}}, []string{"Origin", "https://evil.example"}},
	} {
		p := br.do(http.MethodPost, cancel, tc.form, tc.headers...)
		require.Equal(t, http.StatusForbidden, p.Status, tc.name)
		j, err := b.store.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, jobs.Queued, j.Status, tc.name)
	}

	p = br.do(http.MethodPost, cancel, url.Values{"csrf": {token}}, "Origin", b.http.URL, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, p.Status)
	require.Equal(t, "/ui/jobs/"+id+"?notice=cancelled", p.Header.Get("Location"))
	j, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, jobs.Cancelled, j.Status)
	p = br.get(p.Header.Get("Location"))
	require.Contains(t, p.Body, `<p class="notice" id="notice">cancelled</p>`)
	require.NotContains(t, p.Body, `id="cancel"`, "a cancelled job has no cancel button")

	// Again: the API's answer (409) comes back as the notice.
	p = br.do(http.MethodPost, cancel, url.Values{"csrf": {token}})
	require.Contains(t, p.Header.Get("Location"), url.QueryEscape("only queued or submitted jobs can be cancelled"))
}

// Without API keys the UI is open, as the API is, and forms still carry a
// CSRF token (from a session issued on the first page).
func TestUIOpenWithoutKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.APIKeys = nil })
	br := newBrowser(t, b.http.URL)
	p := br.get("/ui/")
	require.Equal(t, http.StatusOK, p.Status)
	require.NotContains(t, p.Body, "Log out")
	require.Contains(t, p.Header.Get("Set-Cookie"), uiCookie+"=")
	require.Equal(t, http.StatusSeeOther, br.get("/ui/login").Status)
	require.Equal(t, http.StatusForbidden, br.do(http.MethodPost, "/ui/jobs/"+jobs.NewID()+"/cancel", url.Values{}).Status)
}

// Metadata, arguments, revert reasons, notes and webhook errors are
// attacker-controlled: each page shows them as text, never as markup.
func TestUIEscapesAttackerText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const evil = `<script>window.pwned=1</script><img src=x onerror=alert(1)>`
	js := `"` + evil + `"` // as a client may send it: JSON need not escape < and >
	j := &jobs.Job{
		ChainID: 1337, To: testCounter, Function: "setNote(string)", Args: json.RawMessage("[" + string(js) + "]"),
		Data: "0x", Value: "0", Confirmations: 1, Metadata: json.RawMessage(`{"note":` + string(js) + `}`),
		WebhookURL: "https://example.com/hook",
	}
	_, _, err := b.store.Create(ctx, j, "")
	require.NoError(t, err)
	require.NoError(t, b.store.SetWebhookState(ctx, j.ID, jobs.WebhookState{LastStatus: jobs.WebhookFailed, LastError: evil, LastType: evil}))
	_, err = b.store.Transition(ctx, j.ID, jobs.Failed, evil, jobs.Fields{"error", fmt.Sprintf(`{"code":"reverted_at_estimate","message":%s,"revert_reason":%s}`, js, js)}, nil)
	require.NoError(t, err)

	br := newBrowser(t, b.http.URL)
	require.Equal(t, http.StatusSeeOther, br.login(testKey).Status)
	for _, path := range []string{"/ui/", "/ui/?metadata=" + url.QueryEscape("note:"+evil), "/ui/jobs/" + j.ID} {
		for _, live := range []string{"", "1"} {
			p := br.get(path, uiLiveHeader, live)
			require.Equal(t, http.StatusOK, p.Status, path)
			require.NotContains(t, p.Body, "<script>window", path)
			require.NotContains(t, p.Body, "<img", path)
			require.Contains(t, p.Body, "&lt;script&gt;window.pwned=1&lt;/script&gt;", path)
		}
	}
	p := br.get("/ui/jobs/" + j.ID)
	for _, id := range []string{`id="job-meta"`, `id="job-revert"`, `id="job-call"`, `id="job-error"`} {
		i := strings.Index(p.Body, id)
		require.Positive(t, i, id)
		require.Contains(t, p.Body[i:i+400], "&lt;script&gt;", id)
	}
	// The raw JSON is the API's, which escapes < and > itself.
	i := strings.Index(p.Body, `id="raw"`)
	require.Positive(t, i)
	require.Contains(t, p.Body[i:i+400], `\u003cscript\u003ewindow`)
	require.Contains(t, p.Header.Get("Content-Security-Policy"), "script-src 'self'")
}

// Every attempt's outcome is derived from the job: mined, replaced (same
// nonce later), dropped, reorged or pending.
func TestAttemptOutcomes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	att := func(hash string, n uint64, sec int) jobs.Attempt {
		return jobs.Attempt{Hash: hash, Nonce: n, SentAt: at.Add(time.Duration(sec) * time.Second)}
	}
	block := uint64(9)
	for _, tc := range []struct {
		name string
		job  jobs.Job
		want []string
	}{
		{"pending", jobs.Job{Status: jobs.Submitted, Attempts: []jobs.Attempt{att("a", 1, 0)}}, []string{"pending"}},
		{"bumped then mined", jobs.Job{Status: jobs.Confirmed, TxHash: "b", BlockNumber: &block,
			Attempts: []jobs.Attempt{att("a", 1, 0), att("b", 1, 5)}}, []string{"replaced", "mined"}},
		{"cancel mined", jobs.Job{Status: jobs.Cancelled, TxHash: "c", BlockNumber: &block,
			Attempts: []jobs.Attempt{att("a", 1, 0), att("c", 1, 5)}}, []string{"replaced", "mined"}},
		{"re-signed at a new nonce", jobs.Job{Status: jobs.Mined, TxHash: "b", BlockNumber: &block,
			Attempts: []jobs.Attempt{att("a", 1, 0), att("b", 2, 5)}}, []string{"dropped", "mined"}},
		{"original mined over a bump", jobs.Job{Status: jobs.Confirmed, TxHash: "a", BlockNumber: &block,
			Attempts: []jobs.Attempt{att("a", 1, 0), att("b", 1, 5)}}, []string{"mined", "dropped"}},
		{"reorged", jobs.Job{Status: jobs.Submitted, Attempts: []jobs.Attempt{att("a", 1, 0)},
			History: []jobs.Change{{To: jobs.Submitted, At: at}, {From: jobs.Submitted, To: jobs.Mined, At: at.Add(2 * time.Second)}, {From: jobs.Mined, To: jobs.Submitted, At: at.Add(4 * time.Second)}}},
			[]string{"reorged"}},
		{"failed without a receipt", jobs.Job{Status: jobs.Failed, Attempts: []jobs.Attempt{att("a", 1, 0)}}, []string{"dropped"}},
	} {
		require.Equal(t, tc.want, attemptOutcomes(&tc.job), tc.name)
	}
}

// The signers page shows a paused signer with its reason and its nonce
// lane; the overview shows counts, queues and the throughput chart.
func TestUISignersAndOverview(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alloc := nonce.New(b.rdb, "relayq:", 1337, b.signer)
	_, err := alloc.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, alloc.SetPaused(ctx, "insufficient funds <b>for gas</b>"))
	// Two jobs bound to nonces 0 and 2: nonce 1 is a gap.
	for _, want := range []uint64{0, 1, 2} {
		r := b.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, testCounter))
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		id := r.job(t).ID
		n, err := alloc.Reserve(ctx, id, b.store.JobKey(id))
		require.NoError(t, err)
		require.Equal(t, want, n)
		if want == 1 {
			require.NoError(t, alloc.Release(ctx, id))
		}
	}
	br := newBrowser(t, b.http.URL)
	require.Equal(t, http.StatusSeeOther, br.login(testKey).Status)
	p := br.get("/ui/signers")
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, b.signer.Hex())
	require.Contains(t, p.Body, `<span class="badge paused">paused</span>`)
	require.Contains(t, p.Body, "insufficient funds &lt;b&gt;for gas&lt;/b&gt;")
	require.Equal(t, 2, strings.Count(p.Body, `class="cell st-`), p.Body)
	require.Contains(t, p.Body, `<span class="cell gap" title="nonce 1: no job holds it">1</span>`)

	b.srv.ui.tp.add(time.Unix(0, 0), metrics.Totals{})
	b.srv.ui.tp.add(time.Unix(60, 0), metrics.Totals{Accepted: 30, Confirmed: 12, Failed: 3})
	p = br.get("/ui/overview")
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, `<td class="n" data-status="queued">3</td>`)
	require.Contains(t, p.Body, `<polyline class="accepted"`)
	require.Contains(t, p.Body, "30/min")
	require.Contains(t, p.Body, "15/min")
	require.Contains(t, p.Body, `href="/monitor/"`)
}

// The chart turns counter samples into per-minute rates; a counter that
// went down (a restart) counts as zero, not negative.
func TestChartOf(t *testing.T) {
	t.Parallel()
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	for _, tc := range []struct {
		name       string
		samples    []sample
		points     int
		acc, fin   float64
		peak       float64
		acceptedPt string
	}{
		{"one sample", []sample{{at(0), metrics.Totals{}}}, 0, 0, 0, 0, ""},
		{"steady", []sample{{at(0), metrics.Totals{}}, {at(30), metrics.Totals{Accepted: 10, Confirmed: 5}}, {at(60), metrics.Totals{Accepted: 20, Confirmed: 10, Cancelled: 1}}}, 2, 20, 12, 20, "0.0,10.0 600.0,10.0"},
		{"restart", []sample{{at(0), metrics.Totals{Accepted: 50}}, {at(60), metrics.Totals{Accepted: 5}}}, 1, 5, 0, 5, "0.0,10.0 600,10.0"},
	} {
		c := chartOf(tc.samples, true)
		require.Equal(t, tc.points, c.Points, tc.name)
		require.Equal(t, tc.acc, c.LastAccepted, tc.name)
		require.Equal(t, tc.fin, c.LastFinished, tc.name)
		require.Equal(t, tc.peak, c.Max, tc.name)
		require.Equal(t, tc.acceptedPt, c.Accepted, tc.name)
	}
}

// With several chains the list shows one chain at a time (the first by
// default, or the one chosen), a job's page finds the job on its chain,
// and the overview and signers pages cover every chain.
func TestUIServesEveryChain(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	ids := map[string]string{}
	for _, ch := range []string{"a", "b"} {
		r := tc.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","function":"increment()","chain":"`+ch+`"}`)
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		ids[ch] = r.job(t).ID
	}
	br := newBrowser(t, tc.http.URL)
	require.Equal(t, http.StatusSeeOther, br.login(testKey).Status)
	for _, c := range []struct{ path, has, hasNot string }{
		{"/ui/", ids["a"], ids["b"]},
		{"/ui/?chain=a", ids["a"], ids["b"]},
		{"/ui/?chain=b", ids["b"], ids["a"]},
		{"/ui/?chain=202", ids["b"], ids["a"]},
	} {
		p := br.get(c.path)
		require.Equal(t, http.StatusOK, p.Status, c.path)
		require.Contains(t, p.Body, `<tr data-id="`+c.has+`">`, c.path)
		require.NotContains(t, p.Body, c.hasNot, c.path)
		require.Contains(t, p.Body, `<select name="chain">`, c.path)
	}
	p := br.get("/ui/jobs/" + ids["b"])
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, "chain 202")
	require.Equal(t, http.StatusNotFound, br.get("/ui/jobs/"+jobs.NewID()).Status)
	require.Equal(t, http.StatusNotFound, br.get("/ui/jobs/not-an-id").Status)

	p = br.get("/ui/overview")
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, "chain 101")
	require.Contains(t, p.Body, "chain 202")
	require.Equal(t, 2, strings.Count(p.Body, `<td class="n" data-status="queued">1</td>`))
	p = br.get("/ui/signers")
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, "a (101)")
	require.Contains(t, p.Body, "b (202)")
}
