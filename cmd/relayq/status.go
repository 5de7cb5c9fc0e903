package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The CLI talks to a running API over HTTP, like any client: it needs no
// Redis, no node and no keys, only the API's URL (and an API key if the API
// wants one).

const (
	defaultAPIURL       = "http://127.0.0.1:8080"
	defaultWaitTimeout  = 5 * time.Minute
	defaultPollInterval = 500 * time.Millisecond
	// requestTimeout bounds one HTTP request of the CLI.
	requestTimeout = 15 * time.Second
	// spinnerEvery is how often the terminal's progress line is redrawn.
	spinnerEvery = 100 * time.Millisecond
)

const statusUsage = `Usage: relayq status ID [--wait] [--timeout 5m] [--json] [--api URL] [--key KEY]

Shows a job: its status, nonce, transaction hash, block and error. With
--wait it follows the job until it is confirmed, failed or cancelled,
printing each change, and exits 0 when confirmed, 3 when failed, 4 when
cancelled and 5 when --timeout passes first (1 on any other error).

Flags:
`

// runStatus is `relayq status`.
func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relayq status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage); fs.PrintDefaults() }
	cf := addClientFlags(fs, getenv)
	wf := addWaitFlags(fs)
	wait := fs.Bool("wait", false, "follow the job until it is confirmed, failed or cancelled")
	asJSON := fs.Bool("json", false, "print the job as the API returns it (JSON) instead of a summary")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return withCode(exitUsage, fmt.Errorf("status takes one job id, got %d arguments", len(pos)))
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := wf.check(); err != nil {
		return err
	}
	id := pos[0]
	if !*wait {
		j, raw, err := c.job(ctx, id)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, raw)
		}
		printJob(stdout, j)
		return nil
	}
	return follow(ctx, c, id, wf, *asJSON, stdout, stderr)
}

// follow waits for job id to end (see waitJob) and prints the outcome: the
// final job as JSON on stdout with asJSON (the progress goes to stderr
// then, so stdout stays parseable), else the progress and a summary on
// stdout. Its error carries the exit code of the outcome.
func follow(ctx context.Context, c *apiClient, id string, wf *waitFlags, asJSON bool, stdout, stderr io.Writer) error {
	progress := stdout
	if asJSON {
		progress = stderr
	}
	j, raw, err := waitJob(ctx, c, id, wf.timeout, wf.interval, progress, isTerminal(progress))
	if j == nil {
		return err
	}
	if asJSON {
		if perr := printJSON(stdout, raw); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintln(stdout)
		printJob(stdout, j)
	}
	return err
}

// clientFlags are the flags that say where the API is.
type clientFlags struct {
	api, key *string
}

func addClientFlags(fs *flag.FlagSet, getenv func(string) string) *clientFlags {
	api := getenv("RELAYQ_API_URL")
	if api == "" {
		api = defaultAPIURL
	}
	return &clientFlags{
		api: fs.String("api", api, "the API's base URL (default from RELAYQ_API_URL)"),
		key: fs.String("key", getenv("RELAYQ_API_KEY"), "API key, sent as Authorization: Bearer (default from RELAYQ_API_KEY)"),
	}
}

func (f *clientFlags) client() (*apiClient, error) {
	u, err := url.Parse(strings.TrimSpace(*f.api))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, withCode(exitUsage, fmt.Errorf("--api %q is not an http(s):// URL", *f.api))
	}
	return &apiClient{
		base: strings.TrimSuffix(u.String(), "/"),
		key:  strings.TrimSpace(*f.key),
		http: &http.Client{Timeout: requestTimeout},
	}, nil
}

// waitFlags are the flags of waiting for a job.
type waitFlags struct {
	timeout, interval time.Duration
}

func addWaitFlags(fs *flag.FlagSet) *waitFlags {
	wf := &waitFlags{}
	fs.DurationVar(&wf.timeout, "timeout", defaultWaitTimeout, "with --wait: give up after this long (exit 5)")
	fs.DurationVar(&wf.interval, "interval", defaultPollInterval, "with --wait: how often to ask the API")
	return wf
}

func (wf *waitFlags) check() error {
	if wf.timeout <= 0 {
		return withCode(exitUsage, fmt.Errorf("--timeout %v must be positive", wf.timeout))
	}
	if wf.interval < 50*time.Millisecond {
		return withCode(exitUsage, fmt.Errorf("--interval %v is below 50ms", wf.interval))
	}
	return nil
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (`status ID --wait` as well as `status --wait ID`),
// which the flag package alone stops at.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, withCode(exitUsage, err) // errors.Is(err, flag.ErrHelp) after -h
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// apiClient calls relayq's HTTP API.
type apiClient struct {
	base string
	key  string
	http *http.Client
}

// apiError is an error answer of the API: {"error":{code,message,field}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
	// RequestID is the id the API logged the request under: quote it when
	// asking an operator what happened.
	RequestID string `json:"request_id"`
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("API answered %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += fmt.Sprintf(" (field %q)", e.Field)
	}
	if e.RequestID != "" {
		s += fmt.Sprintf(" [request %s]", e.RequestID)
	}
	return s
}

// temporary reports whether asking again later may succeed.
func (e *apiError) temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// do sends one request and returns the answer's status and body. Answers of
// 400 and above come back as an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, header http.Header) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("%s %s: read the answer: %w", method, c.base+path, err)
	}
	if res.StatusCode >= 400 {
		var e struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Message == "" {
			// Not the API's error format: a proxy in between, or not relayq.
			e.Error = &apiError{Code: strings.ToLower(strings.ReplaceAll(http.StatusText(res.StatusCode), " ", "_")), Message: clipText(string(b), 200)}
		}
		e.Error.Status = res.StatusCode
		return res.StatusCode, b, e.Error
	}
	return res.StatusCode, b, nil
}

// jobView is the part of a job the CLI shows; --json prints the whole.
type jobView struct {
	ID              string  `json:"id"`
	Status          string  `json:"status"`
	From            string  `json:"from"`
	To              string  `json:"to"`
	ContractAddress string  `json:"contract_address"`
	Function        string  `json:"function"`
	Data            string  `json:"data"`
	Value           string  `json:"value"`
	Confirmations   uint64  `json:"confirmations"`
	Nonce           *uint64 `json:"nonce"`
	TxHash          string  `json:"tx_hash"`
	BlockNumber     *uint64 `json:"block_number"`
	GasUsed         *uint64 `json:"gas_used"`
	CancelRequested bool    `json:"cancel_requested"`
	Warning         string  `json:"warning"`
	Attempts        []struct {
		Kind string `json:"kind"`
	} `json:"attempts"`
	History []struct {
		To string `json:"to"`
	} `json:"history"`
	Error *struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RevertReason string `json:"revert_reason"`
	} `json:"error"`
}

func (j *jobView) terminal() bool {
	return j.Status == "confirmed" || j.Status == "failed" || j.Status == "cancelled"
}

// job loads job id and returns it with the API's JSON.
func (c *apiClient) job(ctx context.Context, id string) (*jobView, []byte, error) {
	if strings.TrimSpace(id) == "" {
		return nil, nil, withCode(exitUsage, errors.New("the job id is empty"))
	}
	_, b, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	var j jobView
	if err := json.Unmarshal(b, &j); err != nil || j.ID == "" {
		return nil, nil, fmt.Errorf("the API's answer is not a job: %s", clipText(string(b), 200))
	}
	return &j, b, nil
}

// waitJob polls job id every interval until it is terminal or timeout
// passes, writing a line to out whenever it changes (and, on a terminal,
// a spinner with the elapsed time in between). Network errors and 5xx/429
// answers are retried until the timeout; other API errors end the wait.
// It returns the last job seen (nil if none) and an error with the exit
// code of the outcome: nil for confirmed.
func waitJob(ctx context.Context, c *apiClient, id string, timeout, interval time.Duration, out io.Writer, tty bool) (*jobView, []byte, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := &progress{out: out, tty: tty, start: start}
	p.linef("waiting for job %s (up to %v; Ctrl-C stops waiting, not the job)", id, timeout)
	var last *jobView
	var lastRaw []byte
	lastLine, lastErr := "", ""
	shown := 0 // history entries accounted for (the last one by its progress line)
	for {
		j, raw, err := c.job(wctx, id)
		var ae *apiError
		switch {
		case err == nil:
			last, lastRaw, lastErr = j, raw, ""
			// Statuses the job passed through between two polls come from
			// its history, so a fast job still shows every step.
			for k := shown; k < len(j.History)-1; k++ {
				if k > 0 || lastLine == "" {
					p.event(j.History[k].To)
				}
			}
			shown = max(shown, len(j.History))
			if line := progressLine(j); line != lastLine {
				p.event(line)
				lastLine = line
			}
			if j.terminal() {
				p.clear()
				return last, lastRaw, outcome(j)
			}
		case wctx.Err() != nil:
			// The deadline or Ctrl-C cut the request short: decided below.
		case errors.As(err, &ae) && !ae.temporary():
			p.clear()
			return last, lastRaw, err
		default:
			// The API is restarting or overloaded: keep asking.
			if msg := err.Error(); msg != lastErr {
				p.event("(API not answering, retrying: " + clipText(msg, 120) + ")")
				lastErr = msg
			}
		}
		status := "unknown"
		if last != nil {
			status = last.Status
		}
		if err := p.sleep(wctx, interval, status); err != nil {
			p.clear()
			if ctx.Err() != nil {
				return last, lastRaw, fmt.Errorf("stopped waiting: job %s is %s", id, status)
			}
			return last, lastRaw, withCode(exitTimeout, fmt.Errorf("job %s is still %s after %v (--timeout)", id, status, timeout))
		}
	}
}

// outcome is the exit of waiting for terminal job j.
func outcome(j *jobView) error {
	switch j.Status {
	case "confirmed":
		return nil
	case "cancelled":
		return withCode(exitCancelled, fmt.Errorf("job %s was cancelled", j.ID))
	default:
		msg := "no error recorded"
		if j.Error != nil {
			msg = j.Error.Code + ": " + j.Error.Message
		}
		return withCode(exitFailed, fmt.Errorf("job %s failed: %s", j.ID, msg))
	}
}

// progressLine describes the state of j worth a line of its own: its
// status and what came with it (a new transaction hash after a fee bump is
// a change too).
func progressLine(j *jobView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s", j.Status)
	switch j.Status {
	case "submitted":
		if j.Nonce != nil {
			fmt.Fprintf(&b, " nonce %d", *j.Nonce)
		}
		if j.TxHash != "" {
			fmt.Fprintf(&b, ", tx %s", j.TxHash)
		}
		if n := len(j.Attempts); n > 1 {
			fmt.Fprintf(&b, " (%s, attempt %d)", j.Attempts[n-1].Kind, n)
		}
		if j.CancelRequested {
			b.WriteString(", cancel requested")
		}
	case "mined", "confirmed", "cancelled":
		if j.BlockNumber != nil {
			fmt.Fprintf(&b, " block %d", *j.BlockNumber)
		}
		if j.Status == "mined" {
			fmt.Fprintf(&b, ", waiting for %d confirmation%s", j.Confirmations, plural(j.Confirmations))
		}
	case "failed":
		if j.Error != nil {
			fmt.Fprintf(&b, " %s", j.Error.Code)
			if j.Error.RevertReason != "" {
				fmt.Fprintf(&b, ": %s", j.Error.RevertReason)
			}
		}
	}
	if j.Warning != "" {
		fmt.Fprintf(&b, " (warning: %s)", j.Warning)
	}
	return strings.TrimRight(b.String(), " ")
}

// progress writes the lines of a wait; on a terminal it keeps a spinner
// with the elapsed time on the last line, redrawn in place.
type progress struct {
	out     io.Writer
	tty     bool
	start   time.Time
	spinner int
	drawn   bool // a spinner line is on screen
}

var spinnerFrames = []string{"|", "/", "-", `\`}

func (p *progress) linef(format string, args ...any) {
	p.clear()
	fmt.Fprintf(p.out, format+"\n", args...)
}

// event prints a line stamped with the time since the wait began.
func (p *progress) event(line string) {
	p.linef("%7.1fs  %s", time.Since(p.start).Seconds(), line)
}

// clear erases the spinner line, if one is drawn.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.out, "\r\033[K")
		p.drawn = false
	}
}

// sleep waits d (redrawing the spinner on a terminal) or until ctx ends.
func (p *progress) sleep(ctx context.Context, d time.Duration, status string) error {
	step := d
	if p.tty {
		step = spinnerEvery
	}
	deadline := time.Now().Add(d)
	for {
		if p.tty {
			p.spinner++
			fmt.Fprintf(p.out, "\r\033[K%s %s %.1fs", spinnerFrames[p.spinner%len(spinnerFrames)], status, time.Since(p.start).Seconds())
			p.drawn = true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(step, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// printJob writes a compact summary of j.
func printJob(w io.Writer, j *jobView) {
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-10s %s\n", k, fmt.Sprintf(format, args...)) }
	row("job", "%s", j.ID)
	st := j.Status
	if j.CancelRequested && !j.terminal() {
		st += " (cancel requested)"
	}
	row("status", "%s", st)
	switch {
	case j.To == "": // a deployment
		row("call", "deploy (%d bytes of initcode)", max(0, len(j.Data)-2)/2)
		if j.ContractAddress != "" {
			row("contract", "%s", j.ContractAddress)
		}
	case j.Function != "":
		row("call", "%s on %s", j.Function, j.To)
	case j.Data != "" && j.Data != "0x":
		row("call", "data %s on %s", clipText(j.Data, 42), j.To)
	default:
		row("call", "transfer to %s", j.To)
	}
	if j.Value != "" && j.Value != "0" {
		row("value", "%s wei", j.Value)
	}
	if j.From != "" {
		row("from", "%s", j.From)
	}
	if j.Nonce != nil {
		row("nonce", "%d", *j.Nonce)
	}
	if j.TxHash != "" {
		tx := j.TxHash
		if n := len(j.Attempts); n > 1 {
			tx += fmt.Sprintf(" (%d transactions sent; the last was a %s)", n, j.Attempts[n-1].Kind)
		}
		row("tx", "%s", tx)
	}
	if j.BlockNumber != nil {
		row("block", "%d (%d confirmation%s required)", *j.BlockNumber, j.Confirmations, plural(j.Confirmations))
	}
	if j.GasUsed != nil {
		row("gas used", "%d", *j.GasUsed)
	}
	if j.Error != nil {
		row("error", "%s: %s", j.Error.Code, j.Error.Message)
		if j.Error.RevertReason != "" {
			row("reason", "%s", j.Error.RevertReason)
		}
	}
	if j.Warning != "" {
		row("warning", "%s", j.Warning)
	}
}

// printJSON writes the API's JSON indented.
func printJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		b.Reset()
		b.Write(raw)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// isTerminal reports whether w is a terminal (a character device), where a
// spinner can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func clipText(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
