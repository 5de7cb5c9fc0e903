package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
)

// The UI's pages. Everything shown comes through html/template's
// contextual escaping: job fields (metadata, args, revert reasons) are
// attacker-controlled text and are never marked template.HTML.

// uiPageNames are the pages; each is parsed with the layout.
var uiPageNames = []string{"login", "jobs", "job", "signers", "overview"}

var uiFuncs = template.FuncMap{
	"age":    uiAge,
	"short":  uiShort,
	"gwei":   uiGwei,
	"ether":  uiEther,
	"stamp":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") },
	"add":    func(a, b int) int { return a + b },
	"deref":  func(p *uint64) uint64 { return *p },
	"status": func(s jobs.Status) string { return string(s) },
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range uiPageNames {
		t, err := template.New(name).Funcs(uiFuncs).ParseFS(uiFiles, "ui/templates/layout.html", "ui/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// uiBase is what the layout needs.
type uiBase struct {
	Title   string
	Nav     string // the current section
	Open    bool   // no login: no logout button
	CSRF    string
	Refresh int // live refresh period in ms (0: none)
}

// render executes a page, or only its live part for the live script.
func (s *Server) render(c echo.Context, status int, page string, data any) error {
	t := s.ui.pages[page]
	name := "layout"
	if c.Request().Header.Get(uiLiveHeader) != "" && t.Lookup("live") != nil {
		name = "live"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("ui: render", "page", page, "err", err)
		return uiFail(c, http.StatusInternalServerError, "could not render the page")
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func (s *Server) base(c echo.Context, title, nav string) uiBase {
	sess, _ := c.Get(uiSessionKey).(uiSession)
	return uiBase{Title: title, Nav: nav, Open: s.ui.open, CSRF: s.ui.csrfToken(sess), Refresh: int(uiRefresh / time.Millisecond)}
}

// uiErrorPage shows an error of the shared code paths with its status.
func (s *Server) uiErrorPage(c echo.Context, err error) error {
	st, msg := uiErrorStatus(err)
	return uiFail(c, st, msg)
}

type uiLoginPage struct {
	uiBase
	Next   string
	Failed bool
}

// --- Jobs list ---

type uiJobsPage struct {
	uiBase
	Chains   []string
	Chain    string
	Statuses []jobs.Status
	Form     uiListForm
	Rows     []uiRow
	Next     string // the next page's URL, "" on the last
	First    string // the first page's URL when not on it
	Error    string
}

// uiListForm is the filter form's values, as the user typed them.
type uiListForm struct {
	Status, From, Since, Until, Metadata, APIKey string
}

type uiRow struct {
	ID, Status, Age, Call, To, Nonce, Hash, Meta string
	CancelRequested                              bool
}

// uiTimeLayouts are what a datetime-local input sends, read as UTC.
var uiTimeLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

// uiListValues turns the filter form into the query of GET /v1/jobs.
func uiListValues(q url.Values) (url.Values, uiListForm, *Error) {
	f := uiListForm{Status: q.Get("status"), From: q.Get("from"), Since: q.Get("since"), Until: q.Get("until"), Metadata: q.Get("metadata"), APIKey: q.Get("api_key")}
	out := url.Values{}
	for k, vs := range q {
		if k == "chain" || len(vs) == 0 || vs[0] == "" {
			continue
		}
		out[k] = vs
	}
	for _, k := range []string{"since", "until"} {
		v := out.Get(k)
		if v == "" {
			continue
		}
		parsed := false
		for _, l := range uiTimeLayouts {
			if t, err := time.Parse(l, v); err == nil {
				out.Set(k, t.UTC().Format(time.RFC3339))
				parsed = true
				break
			}
		}
		if !parsed {
			return nil, f, invalid("invalid_time", k, "%s must be a time such as 2026-01-02T15:04", k)
		}
	}
	return out, f, nil
}

// uiChain picks the chain of a UI request: ?chain=, or the first.
func (s *Server) uiChain(c echo.Context) (*Server, []string) {
	names := make([]string, len(s.chains.list))
	for i, ch := range s.chains.list {
		names[i] = ch.name
	}
	if sel := c.QueryParam("chain"); sel != "" {
		if ch, e := s.chainFor(sel); e == nil {
			return ch, names
		}
	}
	return s.chains.list[0], names
}

func (s *Server) uiJobs(c echo.Context) error {
	ch, names := s.uiChain(c)
	page := uiJobsPage{uiBase: s.base(c, "Jobs", "jobs"), Chains: names, Chain: ch.name, Statuses: jobs.Statuses}
	q, form, e := uiListValues(c.QueryParams())
	page.Form = form
	var lq listQuery
	if e == nil {
		lq, e = parseListQuery(q)
	}
	if e != nil {
		page.Error = e.Message
		return s.render(c, http.StatusBadRequest, "jobs", page)
	}
	list, next, err := ch.list(c, lq)
	if err != nil {
		_, page.Error = uiErrorStatus(err)
		return s.render(c, http.StatusServiceUnavailable, "jobs", page)
	}
	now := s.ui.now()
	for _, j := range list {
		page.Rows = append(page.Rows, uiRowOf(j, now))
	}
	if next != "" {
		nq := c.QueryParams()
		nq.Set("cursor", next)
		page.Next = "/ui/?" + nq.Encode()
	}
	if lq.cursor != "" {
		fq := c.QueryParams()
		fq.Del("cursor")
		page.First = "/ui/?" + fq.Encode()
	}
	return s.render(c, http.StatusOK, "jobs", page)
}

func uiRowOf(j *jobs.Job, now time.Time) uiRow {
	r := uiRow{ID: j.ID, Status: string(j.Status), Age: uiAge(j.UpdatedAt, now), Call: uiCall(j), To: j.To, CancelRequested: j.CancelRequested}
	if j.Nonce != nil {
		r.Nonce = strconv.FormatUint(*j.Nonce, 10)
	}
	r.Hash = j.TxHash
	if n := len(j.Attempts); n > 0 {
		r.Hash = j.Attempts[n-1].Hash
	}
	if len(j.Metadata) > 0 {
		r.Meta = string(j.Metadata)
	}
	return r
}

// uiCall is how a job's call reads: its function with its arguments, or
// the selector of raw calldata.
func uiCall(j *jobs.Job) string {
	if j.Deployment() {
		if j.Function != "" { // constructor(uint256,string)
			return "deploy, " + j.Function + " " + string(j.Args)
		}
		return "deploy"
	}
	if j.Function != "" {
		if len(j.Args) > 0 && string(j.Args) != "[]" && string(j.Args) != "null" {
			return j.Function + " " + string(j.Args)
		}
		return j.Function
	}
	if len(j.Data) >= 10 {
		return "data " + j.Data[:10] + "…"
	}
	if j.Data == "" || j.Data == "0x" {
		return "transfer"
	}
	return "data " + j.Data
}

// --- One job ---

type uiJobPage struct {
	uiBase
	Job         *jobs.Job
	Call        string
	Age         string
	Timeline    []uiEvent
	Raw         string
	Cancellable bool
	Notice      string
}

// uiEvent is one line of a job's timeline: a status change or an attempt.
type uiEvent struct {
	At      time.Time
	Change  *jobs.Change
	Attempt *jobs.Attempt
	Outcome string // of an attempt: mined, replaced, dropped, reorged, pending
}

func (s *Server) uiJob(c echo.Context) error {
	id := c.Param("id")
	if _, ok := jobs.CreatedAt(id); !ok {
		return s.uiErrorPage(c, apiError(CodeNotFound, "no job %q", clip(id)))
	}
	j, err := s.getAnywhere(c.Request().Context(), id)
	if err == nil && !caller(c).owns(j) {
		err = jobs.ErrNotFound // another key's job, as GET /v1/jobs/{id}
	}
	if err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			return s.uiErrorPage(c, apiError(CodeNotFound, "no job %q", id))
		}
		return s.uiErrorPage(c, apiError(CodeUnavailable, "could not load the job: %v", err))
	}
	return s.render(c, http.StatusOK, "job", s.jobPage(c, j, c.QueryParam("notice")))
}

func (s *Server) jobPage(c echo.Context, j *jobs.Job, notice string) uiJobPage {
	// The raw JSON is the API's answer for the job, byte for byte but
	// indented: encoding/json as c.JSON writes it.
	raw, _ := json.MarshalIndent(j, "", "  ")
	return uiJobPage{
		uiBase:      s.base(c, "Job "+j.ID, "jobs"),
		Job:         j,
		Call:        uiCall(j),
		Age:         uiAge(j.UpdatedAt, s.ui.now()),
		Timeline:    timeline(j),
		Raw:         string(raw),
		Cancellable: (j.Status == jobs.Queued || j.Status == jobs.Submitted) && !j.CancelRequested,
		Notice:      notice,
	}
}

func (s *Server) uiCancel(c echo.Context) error {
	id := c.Param("id")
	_, status, err := s.cancel(c.Request().Context(), id)
	notice := "cancelled"
	if err != nil {
		_, notice = uiErrorStatus(err)
	} else if status == http.StatusAccepted {
		notice = "cancel requested: a no-op at the same nonce will replace the transaction"
	}
	s.log.Info("ui: cancel", "request_id", requestID(c), "job_id", id, "api_key_id", c.Get(apiKeyIDKey), "outcome", notice)
	return c.Redirect(http.StatusSeeOther, "/ui/jobs/"+url.PathEscape(id)+"?notice="+url.QueryEscape(notice))
}

// timeline merges a job's status changes and attempts by time, and derives
// each attempt's outcome.
func timeline(j *jobs.Job) []uiEvent {
	outcomes := attemptOutcomes(j)
	var ev []uiEvent
	for i := range j.History {
		ev = append(ev, uiEvent{At: j.History[i].At, Change: &j.History[i]})
	}
	for i := range j.Attempts {
		ev = append(ev, uiEvent{At: j.Attempts[i].SentAt, Attempt: &j.Attempts[i], Outcome: outcomes[i]})
	}
	slices.SortStableFunc(ev, func(a, b uiEvent) int { return a.At.Compare(b.At) })
	return ev
}

// Attempt outcomes, as the job page shows them.
const (
	outcomeMined    = "mined"
	outcomeReplaced = "replaced" // a later attempt took its nonce (fee bump, cancel, gap fill)
	outcomeDropped  = "dropped"  // never mined: its nonce went to another tx, or the job ended without it
	outcomeReorged  = "reorged"  // mined, then a reorg took the block away
	outcomePending  = "pending"
)

// attemptOutcomes derives what became of each attempt from the job: the
// hash that holds its block was mined; one followed by an attempt at the
// same nonce was replaced; one followed by an attempt at another nonce (a
// re-sign) was dropped, as is any other of a finished job; the last one
// before a reorg step back (mined → submitted) was reorged.
func attemptOutcomes(j *jobs.Job) []string {
	out := make([]string, len(j.Attempts))
	var reorgs []time.Time
	for _, h := range j.History {
		if h.From == jobs.Mined && h.To == jobs.Submitted {
			reorgs = append(reorgs, h.At)
		}
	}
	minedHash := ""
	if j.BlockNumber != nil {
		minedHash = j.TxHash
	}
	for i, a := range j.Attempts {
		switch {
		case a.Hash == minedHash:
			out[i] = outcomeMined
		case slices.ContainsFunc(j.Attempts[i+1:], func(b jobs.Attempt) bool { return b.Nonce == a.Nonce }):
			out[i] = outcomeReplaced
		case i < len(j.Attempts)-1:
			out[i] = outcomeDropped
		case slices.ContainsFunc(reorgs, func(t time.Time) bool { return !t.Before(a.SentAt) }):
			out[i] = outcomeReorged
		case j.Status.Terminal():
			out[i] = outcomeDropped
		default:
			out[i] = outcomePending
		}
	}
	return out
}

// --- Signers ---

type uiSignersPage struct {
	uiBase
	Lanes []uiLane
	Error string
}

// uiLane is one signer on one chain: GET /v1/signers' view and its nonces.
type uiLane struct {
	Chain string
	signerView
	Cells []uiCell
	More  int // in-flight nonces past the cells shown
	Gaps  int
	Fills int
}

// uiCell is one nonce of a lane from the chain's latest nonce to relayq's
// next: the job holding it, a fill (a no-op that uses a nonce its job
// could not), or a gap (no job holds it: the chain waits on it).
type uiCell struct {
	Nonce  uint64
	JobID  string
	Status string
	Fill   bool
	Gap    bool
}

const maxLaneCells = 64

func (s *Server) uiSigners(c echo.Context) error {
	page := uiSignersPage{uiBase: s.base(c, "Signers", "signers")}
	ctx := c.Request().Context()
	var errs []string
	for _, ch := range s.chains.list {
		views, err := ch.signerViews(ctx)
		if err != nil {
			_, msg := uiErrorStatus(err)
			errs = append(errs, ch.name+": "+msg)
			continue
		}
		for _, v := range views {
			lane, err := ch.lane(ctx, v)
			if err != nil {
				errs = append(errs, ch.name+": "+err.Error())
			}
			page.Lanes = append(page.Lanes, lane)
		}
	}
	page.Error = strings.Join(errs, "; ")
	return s.render(c, http.StatusOK, "signers", page)
}

// lane reads the in-flight jobs of a signer and lays out its nonces.
func (s *Server) lane(ctx context.Context, v signerView) (uiLane, error) {
	l := uiLane{Chain: s.name, signerView: v}
	addr := common.HexToAddress(v.Address)
	alloc := nonce.New(s.cfg.Redis, s.chain.Prefix, s.chainID, addr)
	inflight, err := alloc.All(ctx, 4*maxLaneCells)
	if err != nil {
		return l, fmt.Errorf("in-flight nonces of %s: %w", v.Address, err)
	}
	ids := make([]string, len(inflight))
	for i, f := range inflight {
		ids[i] = f.JobID
	}
	js, err := s.store.GetMany(ctx, ids)
	if err != nil {
		return l, err
	}
	byNonce := map[uint64]*jobs.Job{}
	lo, hi := v.Latest, v.Latest // [lo, hi)
	if v.Next != nil {
		hi = max(hi, *v.Next)
	}
	for i, f := range inflight {
		if js[i] != nil {
			byNonce[f.Nonce] = js[i]
		}
		lo, hi = min(lo, f.Nonce), max(hi, f.Nonce+1)
	}
	for n := lo; n < hi; n++ {
		j := byNonce[n]
		if j == nil && n < v.Latest {
			continue // used on chain and released: nothing to show
		}
		if len(l.Cells) == maxLaneCells {
			l.More++
			continue
		}
		cell := uiCell{Nonce: n}
		if j == nil {
			cell.Gap = true
			l.Gaps++
		} else {
			cell.JobID, cell.Status = j.ID, string(j.Status)
			if k := len(j.Attempts); k > 0 && j.Attempts[k-1].Kind == jobs.KindGapFill {
				cell.Fill = true
				l.Fills++
			}
		}
		l.Cells = append(l.Cells, cell)
	}
	return l, nil
}

// --- Overview ---

type uiOverviewPage struct {
	uiBase
	Chains []uiChainOverview
	Chart  uiChart
}

type uiChainOverview struct {
	Name    string
	ChainID uint64
	Counts  []uiCount
	Queues  []uiQueue
	Error   string
}

type uiCount struct {
	Status string
	N      int64
}

type uiQueue struct {
	Name                                       string
	Pending, Active, Scheduled, Retry, Archive int
}

func (s *Server) uiOverview(c echo.Context) error {
	page := uiOverviewPage{uiBase: s.base(c, "Overview", "overview")}
	ctx := c.Request().Context()
	for _, ch := range s.chains.list {
		o := uiChainOverview{Name: ch.name, ChainID: ch.chainID}
		for _, st := range jobs.Statuses {
			n, err := ch.store.Count(ctx, st)
			if err != nil {
				o.Error = fmt.Sprintf("could not count jobs: %v", err)
				break
			}
			o.Counts = append(o.Counts, uiCount{string(st), n})
		}
		for _, q := range []string{ch.queues.Send, ch.queues.Webhooks} {
			uq := uiQueue{Name: q}
			if info, err := s.ui.inspector.GetQueueInfo(q); err == nil {
				uq.Pending, uq.Active, uq.Scheduled, uq.Retry, uq.Archive = info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived
			}
			o.Queues = append(o.Queues, uq)
		}
		page.Chains = append(page.Chains, o)
	}
	page.Chart = chartOf(s.ui.tp.snapshot(), s.cfg.Metrics != nil)
	return s.render(c, http.StatusOK, "overview", page)
}

// uiChart is the throughput chart: jobs per minute between samples, as
// SVG polylines the template draws (numbers only: nothing to escape).
type uiChart struct {
	Enabled            bool
	W, H               int
	Accepted, Finished string  // polyline points
	Max                float64 // the highest rate, per minute
	Top                float64 // the rate at the top of the chart
	Span               string
	LastAccepted       float64
	LastFinished       float64
	Points             int
}

const chartW, chartH = 600, 160

func chartOf(ss []sample, enabled bool) uiChart {
	ch := uiChart{Enabled: enabled, W: chartW, H: chartH}
	if len(ss) < 2 {
		return ch
	}
	type rate struct{ acc, fin float64 }
	rates := make([]rate, len(ss)-1)
	for i := 1; i < len(ss); i++ {
		dt := ss[i].at.Sub(ss[i-1].at).Minutes()
		if dt <= 0 {
			continue
		}
		a, b := ss[i-1].t, ss[i].t
		rates[i-1] = rate{
			acc: increase(a.Accepted, b.Accepted) / dt,
			fin: increase(a.Confirmed+a.Failed+a.Cancelled, b.Confirmed+b.Failed+b.Cancelled) / dt,
		}
		ch.Max = max(ch.Max, rates[i-1].acc, rates[i-1].fin)
	}
	top := max(ch.Max, 1)
	ch.Top = math.Round(top*10) / 10
	var acc, fin []string
	for i, r := range rates {
		x := float64(i) * float64(chartW) / float64(max(len(rates)-1, 1))
		ya := float64(chartH) - r.acc/top*float64(chartH-10)
		yf := float64(chartH) - r.fin/top*float64(chartH-10)
		acc = append(acc, fmt.Sprintf("%.1f,%.1f", x, ya))
		fin = append(fin, fmt.Sprintf("%.1f,%.1f", x, yf))
	}
	if len(rates) == 1 { // one rate: a level line across the chart
		acc = append(acc, fmt.Sprintf("%d,%s", chartW, strings.Split(acc[0], ",")[1]))
		fin = append(fin, fmt.Sprintf("%d,%s", chartW, strings.Split(fin[0], ",")[1]))
	}
	ch.Accepted, ch.Finished = strings.Join(acc, " "), strings.Join(fin, " ")
	ch.Max = math.Round(ch.Max*10) / 10
	ch.LastAccepted = math.Round(rates[len(rates)-1].acc*10) / 10
	ch.LastFinished = math.Round(rates[len(rates)-1].fin*10) / 10
	ch.Span = ss[len(ss)-1].at.Sub(ss[0].at).Round(time.Second).String()
	ch.Points = len(rates)
	return ch
}

// increase is how much a counter grew from a to b; a counter that went
// down was reset (the process restarted), as Prometheus' rate reads it.
func increase(a, b float64) float64 {
	if b < a {
		return b
	}
	return b - a
}

// --- Formatting ---

// uiAge is how long ago t was, in the largest unit that fits.
func uiAge(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// uiShort shortens a hash or address to 0x1234…abcd.
func uiShort(s string) string {
	if len(s) <= 14 {
		return s
	}
	return s[:6] + "…" + s[len(s)-4:]
}

// uiGwei shows a wei amount in gwei.
func uiGwei(wei string) string {
	return uiUnits(wei, 9, "gwei")
}

// uiEther shows a wei amount in ether.
func uiEther(wei string) string {
	return uiUnits(wei, 18, "ETH")
}

func uiUnits(wei string, decimals int, unit string) string {
	v, ok := new(big.Int).SetString(wei, 10)
	if !ok {
		return wei
	}
	f := new(big.Float).Quo(new(big.Float).SetInt(v), new(big.Float).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)))
	return strings.TrimRight(strings.TrimRight(f.Text('f', 6), "0"), ".") + " " + unit
}
