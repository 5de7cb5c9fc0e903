package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"

	"github.com/relayq/relayq/metrics"
)

// The UI at /ui/: server-rendered pages over the same store and code paths
// as /v1 (ui_pages.go), behind a session cookie when the API has keys.

//go:embed ui/templates/*.html ui/static/*
var uiFiles embed.FS

// UI session and refresh settings.
const (
	uiCookie       = "relayq_session"
	uiSessionTTL   = 12 * time.Hour
	uiOpenID       = "open" // the key id of sessions of an API without keys
	uiRefresh      = 2 * time.Second
	uiSampleEvery  = 10 * time.Second
	uiSamples      = 61 // ten minutes of samples
	uiLiveHeader   = "X-Relayq-Live"
	uiSessionLabel = "relayq ui session v1"
)

// uiState is what the UI keeps across requests: the session signing key,
// the configured keys' ids, the parsed pages and the throughput samples.
type uiState struct {
	open       bool                 // no API keys: the UI is open, as the API is
	sessionKey []byte               // signs session cookies and CSRF tokens
	keys       map[string][]byte    // key id (as api_key_id) → SHA-256 of the key
	principals map[string]principal // key id → who a session of that key acts for
	pages      map[string]*template.Template
	inspector  *asynq.Inspector
	now        func() time.Time

	tp   *throughput
	stop chan struct{}
	once sync.Once
}

// newUIState derives the session key. With API keys it is an HMAC over all
// of them, so every api process of a deployment signs alike, a restart
// keeps sessions, and changing the keys ends every session; holding one
// key of several is not enough to forge a session. Without keys it is
// random per process: sessions there only carry the CSRF token.
func newUIState(s *Server) (*uiState, error) {
	u := &uiState{
		open:       len(s.cfg.APIKeys) == 0,
		keys:       map[string][]byte{},
		principals: map[string]principal{},
		inspector:  asynq.NewInspectorFromRedisClient(s.cfg.Redis),
		now:        time.Now,
		stop:       make(chan struct{}),
	}
	if u.open {
		u.sessionKey = make([]byte, 32)
		if _, err := rand.Read(u.sessionKey); err != nil {
			return nil, fmt.Errorf("ui: session key: %w", err)
		}
	} else {
		keys := slices.Clone(s.cfg.APIKeys)
		slices.Sort(keys)
		mac := hmac.New(sha256.New, []byte(strings.Join(keys, "\n")))
		mac.Write([]byte(uiSessionLabel))
		u.sessionKey = mac.Sum(nil)
		for _, k := range s.keys {
			sum := sha256.Sum256([]byte(k.Key))
			id, p := principalFor(k)
			u.keys[id], u.principals[id] = sum[:], p
		}
	}
	var err error
	if u.pages, err = parsePages(); err != nil {
		return nil, err
	}
	u.tp = newThroughput(s.cfg.Metrics, uiSamples)
	return u, nil
}

// run samples the counters until close.
func (u *uiState) run() {
	t := time.NewTicker(uiSampleEvery)
	defer t.Stop()
	u.tp.sample(u.now())
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
			u.tp.sample(u.now())
		}
	}
}

func (u *uiState) close() { u.once.Do(func() { close(u.stop) }) }

// uiRoutes registers the UI on the API's Echo.
func (s *Server) uiRoutes() error {
	u, err := newUIState(s)
	if err != nil {
		return err
	}
	for _, ch := range s.chains.list { // a job's page runs on its chain's Server
		ch.ui = u
	}
	go u.run()
	e := s.echo
	static, _ := fs.Sub(uiFiles, "ui/static")
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ui/") })
	g := e.Group("/ui", u.headers, u.sameOrigin)
	g.GET("/static/*", echo.WrapHandler(http.StripPrefix("/ui/static/", staticHandler(static))))
	g.GET("/login", s.uiLoginForm)
	g.POST("/login", s.uiLogin, loginLimit())
	g.POST("/logout", s.uiLogout, u.session, u.csrf)
	g.GET("/", s.uiJobs, u.session)
	g.GET("/jobs/:id", s.onChain(byJob, (*Server).uiJob), u.session)
	g.POST("/jobs/:id/cancel", s.onChain(byJob, (*Server).uiCancel), u.session, u.csrf)
	g.GET("/signers", s.uiSigners, u.session)
	g.GET("/overview", s.uiOverview, u.session)
	return nil
}

// Login attempts allowed per client address: a burst, then one every six
// seconds, so the form cannot be used to guess keys quickly.
const (
	uiLoginBurst = 10
	uiLoginEvery = 6 * time.Second
)

// loginLimit limits login attempts per client address (the connection's,
// not X-Forwarded-For, which a caller could choose), in this process.
func loginLimit() echo.MiddlewareFunc {
	direct := echo.ExtractIPDirect()
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Every(uiLoginEvery), Burst: uiLoginBurst, ExpiresIn: 10 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return direct(c.Request()), nil },
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(uiLoginEvery/time.Second)))
			return uiFail(c, http.StatusTooManyRequests, "too many login attempts from this address: wait a few seconds")
		},
	})
}

// staticHandler serves the embedded assets, cacheable for an hour.
func staticHandler(files fs.FS) http.Handler {
	fsrv := http.FileServer(http.FS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// headers sets what every UI answer carries: a CSP that allows only the
// embedded script and styles (so even markup that escaped escaping could
// not run a script), no framing, no caching of pages.
func (u *uiState) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(c.Request().URL.Path, "/ui/static/") {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// sameOrigin refuses a state-changing request another site sent: by its
// Origin header, or the browser's Sec-Fetch-Site. It backs up the CSRF
// token, and guards the login form, which has no session yet.
func (u *uiState) sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return next(c)
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			return uiFail(c, http.StatusForbidden, "this form was sent from another site")
		}
		if o := r.Header.Get("Origin"); o != "" && o != "null" {
			ou, err := url.Parse(o)
			if err != nil || ou.Host != r.Host {
				return uiFail(c, http.StatusForbidden, "this form was sent from another origin")
			}
		}
		return next(c)
	}
}

// uiSession is a verified session cookie.
type uiSession struct {
	keyID   string // the key's id (api_key_id), or uiOpenID
	expires time.Time
	cookie  string // the cookie's value: what the CSRF token is bound to
}

func (u *uiState) mac(parts ...string) string {
	m := hmac.New(sha256.New, u.sessionKey)
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession makes the cookie value "<expiry>.<key id>.<nonce>.<mac>":
// the key's id (the first 8 bytes of its SHA-256, as the API logs it),
// never the key, and a random nonce that sets each session's CSRF token
// apart.
func (u *uiState) newSession(keyID string) uiSession {
	exp := u.now().Add(uiSessionTTL).Truncate(time.Second)
	e := strconv.FormatInt(exp.Unix(), 10)
	n := make([]byte, 12)
	_, _ = rand.Read(n) // crypto/rand.Read never fails (Go 1.24+)
	nonce := base64.RawURLEncoding.EncodeToString(n)
	return uiSession{keyID: keyID, expires: exp, cookie: e + "." + keyID + "." + nonce + "." + u.mac("session", e, keyID, nonce)}
}

// readSession verifies the request's session cookie: its MAC, its expiry,
// and that its key is still configured.
func (u *uiState) readSession(c echo.Context) (uiSession, bool) {
	ck, err := c.Cookie(uiCookie)
	if err != nil {
		return uiSession{}, false
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 4 {
		return uiSession{}, false
	}
	want := u.mac("session", parts[0], parts[1], parts[2])
	if subtle.ConstantTimeCompare([]byte(want), []byte(parts[3])) != 1 {
		return uiSession{}, false
	}
	sec, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !u.now().Before(time.Unix(sec, 0)) {
		return uiSession{}, false
	}
	if u.open != (parts[1] == uiOpenID) {
		return uiSession{}, false
	}
	if _, ok := u.keys[parts[1]]; !u.open && !ok {
		return uiSession{}, false
	}
	return uiSession{keyID: parts[1], expires: time.Unix(sec, 0), cookie: ck.Value}, true
}

// setCookie sends the session: HttpOnly, SameSite=Strict, Secure when the
// request came over TLS (or through a proxy that says so).
func (u *uiState) setCookie(c echo.Context, sess uiSession) {
	c.SetCookie(&http.Cookie{
		Name: uiCookie, Value: sess.cookie, Path: "/ui/", Expires: sess.expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Scheme() == "https",
	})
}

// csrfToken is bound to the session: a form of one session is refused in
// another, and a new login makes the old forms stale.
func (u *uiState) csrfToken(sess uiSession) string { return u.mac("csrf", sess.cookie) }

const uiSessionKey = "ui_session"

// session lets a request through with a valid session (an open UI issues
// one on the spot); otherwise a page goes to the login form and a live
// refresh gets 401, on which the script goes to the login form.
func (u *uiState) session(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, ok := u.readSession(c)
		if !ok && u.open {
			sess, ok = u.newSession(uiOpenID), true
			u.setCookie(c, sess)
		}
		if !ok {
			r := c.Request()
			if r.Method != http.MethodGet || r.Header.Get(uiLiveHeader) != "" {
				return uiFail(c, http.StatusUnauthorized, "your session has ended: log in again")
			}
			return c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()))
		}
		c.Set(uiSessionKey, sess)
		if !u.open {
			// As the bearer auth does: the page acts for the session's key,
			// with that key's view of the jobs (tenancy).
			p, known := u.principals[sess.keyID]
			if !known {
				return uiFail(c, http.StatusUnauthorized, "your session's API key is no longer configured: log in again")
			}
			c.Set(apiKeyIDKey, sess.keyID)
			c.Set(apiKeyNameKey, p.name)
			c.SetRequest(c.Request().WithContext(withPrincipal(c.Request().Context(), p)))
		}
		return next(c)
	}
}

// csrf checks the form's token against the session's.
func (u *uiState) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, _ := c.Get(uiSessionKey).(uiSession)
		got := c.FormValue("csrf")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(u.csrfToken(sess))) != 1 {
			return uiFail(c, http.StatusForbidden, "this form is stale or was not sent from this page: reload the page and try again")
		}
		return next(c)
	}
}

// keyID returns the id of a configured key equal to key, comparing every
// key's digest in constant time.
func (u *uiState) keyID(key string) (string, bool) {
	got := sha256.Sum256([]byte(key))
	found := ""
	for id, sum := range u.keys {
		if subtle.ConstantTimeCompare(got[:], sum) == 1 {
			found = id
		}
	}
	return found, found != ""
}

// safeNext keeps a post-login redirect on the UI.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

func (s *Server) uiLoginForm(c echo.Context) error {
	if s.ui.open {
		return c.Redirect(http.StatusSeeOther, "/ui/")
	}
	return s.render(c, http.StatusOK, "login", uiLoginPage{uiBase: uiBase{Title: "Log in", Open: false}, Next: safeNext(c.QueryParam("next"))})
}

func (s *Server) uiLogin(c echo.Context) error {
	next := safeNext(c.FormValue("next"))
	if s.ui.open {
		return c.Redirect(http.StatusSeeOther, next)
	}
	id, ok := s.ui.keyID(c.FormValue("key"))
	if !ok {
		s.log.Info("ui: login refused", "request_id", requestID(c), "remote", c.RealIP())
		return s.render(c, http.StatusUnauthorized, "login", uiLoginPage{uiBase: uiBase{Title: "Log in"}, Next: next, Failed: true})
	}
	s.ui.setCookie(c, s.ui.newSession(id))
	s.log.Info("ui: login", "request_id", requestID(c), "api_key_id", id)
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *Server) uiLogout(c echo.Context) error {
	c.SetCookie(&http.Cookie{Name: uiCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Scheme() == "https"})
	if s.ui.open {
		return c.Redirect(http.StatusSeeOther, "/ui/")
	}
	return c.Redirect(http.StatusSeeOther, "/ui/login")
}

// uiFail answers a UI request with a plain-text error (no page around it:
// it may be a live refresh).
func uiFail(c echo.Context, status int, msg string) error {
	return c.String(status, msg)
}

// uiErrorStatus is the HTTP status of an error from the shared code paths.
func uiErrorStatus(err error) (int, string) {
	var ae *Error
	if errors.As(err, &ae) {
		if st, ok := statusOf[ae.Kind]; ok {
			return st, ae.Message
		}
		return http.StatusInternalServerError, ae.Message
	}
	return http.StatusInternalServerError, err.Error()
}

// throughput keeps samples of this process's job counters.
type throughput struct {
	m *metrics.Metrics

	mu      sync.Mutex
	samples []sample
	max     int
}

type sample struct {
	at time.Time
	t  metrics.Totals
}

func newThroughput(m *metrics.Metrics, n int) *throughput {
	return &throughput{m: m, max: n}
}

func (tp *throughput) sample(at time.Time) {
	tp.add(at, tp.m.Totals())
}

func (tp *throughput) add(at time.Time, t metrics.Totals) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.samples = append(tp.samples, sample{at, t})
	if len(tp.samples) > tp.max {
		tp.samples = slices.Delete(tp.samples, 0, len(tp.samples)-tp.max)
	}
}

func (tp *throughput) snapshot() []sample {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.samples)
}
