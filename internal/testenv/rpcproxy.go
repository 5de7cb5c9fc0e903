package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	// rpcProxyMaxBody bounds a request body and an upstream answer.
	rpcProxyMaxBody = 32 << 20
	// rpcProxyUpstreamTimeout bounds one forwarded request.
	rpcProxyUpstreamTimeout = time.Minute
	// rpcProxyRelistenTimeout bounds how long Up retries binding the port.
	rpcProxyRelistenTimeout = 5 * time.Second
	// rpcProxyDefaultErrorCode is the JSON-RPC code of an injected error
	// whose Code is 0: geth's code for transaction pool and state errors
	// ("nonce too low", "insufficient funds for gas * price + value").
	rpcProxyDefaultErrorCode = -32000
)

// RPCProxy forwards JSON-RPC over HTTP to a node and injects faults. It
// listens on a fixed 127.0.0.1 port for its whole life, so a client dialed
// to URL keeps working across Down and Up.
//
// Every request, whatever its path, is forwarded as-is to the upstream URL
// (HTTP only, not WebSocket). A request that matches no rule is forwarded
// even when the client gives up waiting, as a node would still process it.
// When the upstream cannot be reached the proxy answers 502.
//
// Faults are picked per HTTP request: the first rule (in Inject order) that
// matches the request is used, once, for the whole request; a JSON-RPC batch
// is one request and matches a rule when any of its elements does. All of
// its methods are safe for concurrent use.
type RPCProxy struct {
	t        testing.TB
	upstream string
	port     int
	client   *http.Client

	// stateMu serializes Down, Up and the final close.
	stateMu sync.Mutex

	mu      sync.Mutex
	rules   []*proxyRule
	calls   map[string]int
	faulted int
	srv     *http.Server       // nil while down
	stop    context.CancelFunc // ends the current up period's handlers
	closed  bool
	running sync.WaitGroup // Serve loops and handlers; Add only under mu while !closed
}

// Fault describes what to do with matching requests. Its actions apply in
// this order: Delay first, then the first of Status, RPCError and
// DropAfterForward that is set; with none of those the request is forwarded.
// A Fault with no action at all (only Methods and Times) lets matching
// requests through unchanged, which with Times keeps later rules from
// applying to the next N of them; it does not count in Faulted.
type Fault struct {
	// Methods are the JSON-RPC methods the rule applies to; empty means every
	// request (including bodies that are not JSON-RPC).
	Methods []string
	// Status answers with this HTTP status (e.g. 429, 503) and a short
	// text body, without forwarding.
	Status int
	// Delay sleeps before acting (to trigger client timeouts). The sleep
	// does not end when the client gives up, so a delayed request is still
	// forwarded afterwards, as a slow node would still process it; it does
	// end, dropping the request, when the proxy goes Down or is closed.
	Delay time.Duration
	// DropAfterForward forwards the request, waits for the node's answer and
	// then closes the client's connection without answering: the node took
	// it but the answer was lost. The client sees EOF.
	DropAfterForward bool
	// RPCError answers with this JSON-RPC error object, without forwarding.
	// In a batch only the elements whose method matches get the error; the
	// others are forwarded (as a smaller batch) and the answers merged in
	// request order.
	RPCError *RPCErrorSpec
	// Null answers "result": null without forwarding, as a node behind a
	// load balancer that has not seen a transaction or receipt yet does
	// (in a batch, like RPCError, only the matching elements).
	Null bool
	// Times applies the rule to the next Times matching requests, then
	// removes it; 0 (or less) keeps it until Clear.
	Times int
}

// RPCErrorSpec is a JSON-RPC error object an RPCProxy answers with, e.g.
// {Message: "nonce too low: next nonce 5, tx nonce 3"} or
// {Code: 3, Message: "execution reverted", Data: "0x08c379a0…"}.
type RPCErrorSpec struct {
	// Code is the JSON-RPC error code; 0 means -32000, what geth uses for
	// transaction pool and state errors.
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Data, when not nil, is sent as the error's data member (encoded with
	// encoding/json; a json.RawMessage is sent verbatim).
	Data any `json:"data,omitempty"`
}

// proxyRule is an injected Fault and how many uses it has left.
type proxyRule struct {
	Fault
	left int // uses left when Times > 0
}

func (f *Fault) hasAction() bool {
	if f.Null {
		return true
	}
	return f.Status != 0 || f.Delay > 0 || f.DropAfterForward || f.RPCError != nil
}

func (f *Fault) matchesMethod(method string) bool {
	return len(f.Methods) == 0 || slices.Contains(f.Methods, method)
}

func (f *Fault) matches(calls []proxyCall) bool {
	if len(f.Methods) == 0 {
		return true
	}
	for _, c := range calls {
		if slices.Contains(f.Methods, c.Method) {
			return true
		}
	}
	return false
}

// NewRPCProxy starts a proxy on a free 127.0.0.1 port that forwards to
// upstream, a node's HTTP JSON-RPC URL (e.g. AnvilNode.URL()). t.Cleanup
// closes it, waiting for requests in progress (a Delay is cut short).
func NewRPCProxy(t testing.TB, upstream string) *RPCProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("testenv: rpc proxy upstream %q is not an http(s) URL", upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: rpc proxy: listen: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// Keep FreePort from handing the port out while the proxy is down.
	portsMu.Lock()
	portsGiven[port] = true
	portsMu.Unlock()

	p := &RPCProxy{
		t:        t,
		upstream: upstream,
		port:     port,
		calls:    map[string]int{},
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

// URL returns the proxy's endpoint, http://127.0.0.1:<port>; it stays the
// same across Down and Up.
func (p *RPCProxy) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// Inject adds a fault rule after the existing ones. A Status outside
// 100-999 fails the test (with t.Errorf) and the rule is not added.
func (p *RPCProxy) Inject(f Fault) {
	if f.Status != 0 && (f.Status < 100 || f.Status > 999) {
		p.t.Errorf("testenv: rpc proxy: fault status %d is not an HTTP status", f.Status)
		return
	}
	f.Methods = slices.Clone(f.Methods)
	if f.RPCError != nil {
		spec := *f.RPCError
		f.RPCError = &spec
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &proxyRule{Fault: f, left: f.Times})
}

// Clear removes all fault rules. Requests already being faulted (e.g.
// sleeping a Delay) finish their fault.
func (p *RPCProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Calls returns how many JSON-RPC calls of method the proxy has received,
// counting each element of a batch and faulted calls too.
func (p *RPCProxy) Calls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method]
}

// Faulted returns how many requests a fault has been applied to so far (a
// batch counts once). Rules without an action are not counted.
func (p *RPCProxy) Faulted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faulted
}

// Down makes the node unreachable: it closes the listening socket, so new
// connections are refused (ECONNREFUSED), and closes every open connection,
// including idle keep-alive ones and those with a request in progress (whose
// clients see EOF or a reset; a client reusing an idle connection may see
// "server closed idle connection" once before it is refused). Down on a
// proxy that is down does nothing.
func (p *RPCProxy) Down() {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.down()
}

func (p *RPCProxy) down() {
	p.mu.Lock()
	srv, stop := p.srv, p.stop
	p.srv, p.stop = nil, nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	stop()
	_ = srv.Close() // closes the listener and all connections
}

// Up listens again on the same port. The port was bound with SO_REUSEADDR
// (Go's default for listeners on Unix), so connections the proxy closed and
// left in TIME_WAIT do not stand in the way; if another program took the
// port meanwhile, Up retries for a few seconds and then fails the test (with
// t.Errorf, so it may be called from any goroutine). Up on a proxy that is
// up does nothing.
func (p *RPCProxy) Up() {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.mu.Lock()
	up, closed := p.srv != nil, p.closed
	p.mu.Unlock()
	if up || closed {
		return
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	deadline := time.Now().Add(rpcProxyRelistenTimeout)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			p.t.Errorf("testenv: rpc proxy: listen again on %s: %v", addr, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve starts an http.Server on ln for one up period.
func (p *RPCProxy) serve(ln net.Listener) {
	ctx, stop := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.handle(ctx, w, r) }),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // Down makes it complain
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		stop()
		_ = ln.Close()
		return
	}
	p.srv, p.stop = srv, stop
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		_ = srv.Serve(ln) // returns when Down closes it
	}()
}

// close is the cleanup: down for good, and wait for the handlers.
func (p *RPCProxy) close() {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.down()
	p.running.Wait()
	p.client.CloseIdleConnections()
}

// enter registers a handler so close waits for it; false once closed.
func (p *RPCProxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.running.Add(1)
	return true
}

// proxyCall is what the proxy reads of one JSON-RPC request.
type proxyCall struct {
	ID     json.RawMessage `json:"id"` // nil for a notification
	Method string          `json:"method"`
}

// proxyParseRPC reads a single request or a batch. For a batch, elems holds the
// raw elements; a body that is not JSON-RPC gives no calls.
func proxyParseRPC(body []byte) (calls []proxyCall, elems []json.RawMessage, batch bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(body, &elems); err != nil {
			return nil, nil, false
		}
		calls = make([]proxyCall, len(elems))
		for i, e := range elems {
			_ = json.Unmarshal(e, &calls[i]) // a bad element keeps method ""
		}
		return calls, elems, true
	}
	var c proxyCall
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, nil, false
	}
	return []proxyCall{c}, nil, false
}

// match counts the calls and picks the first rule matching them, using it
// up once. ok is false when no rule matches.
func (p *RPCProxy) match(calls []proxyCall) (f Fault, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range calls {
		if c.Method != "" {
			p.calls[c.Method]++
		}
	}
	for i, r := range p.rules {
		if !r.matches(calls) {
			continue
		}
		if r.Times > 0 {
			r.left--
			if r.left <= 0 {
				p.rules = slices.Delete(p.rules, i, i+1)
			}
		}
		if r.hasAction() {
			p.faulted++
		}
		return r.Fault, true
	}
	return Fault{}, false
}

func (p *RPCProxy) handle(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		proxyDropConnection(w)
		return
	}
	defer p.running.Done()

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rpcProxyMaxBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			http.Error(w, "testenv rpc proxy: request body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "testenv rpc proxy: read request: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	calls, elems, batch := proxyParseRPC(body)
	f, ok := p.match(calls)
	if !ok {
		p.forward(ctx, w, r, body)
		return
	}

	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		select {
		case <-timer.C:
		case <-ctx.Done(): // Down or closed: the node is gone
			timer.Stop()
			proxyDropConnection(w)
			return
		}
	}
	switch {
	case f.Status != 0:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, "testenv rpc proxy: injected HTTP %d %s\n", f.Status, http.StatusText(f.Status))
	case f.RPCError != nil || f.Null:
		p.answerRPCError(ctx, w, r, &f, calls, elems, batch)
	case f.DropAfterForward:
		_, _, _, _ = p.roundTrip(ctx, r, body)
		proxyDropConnection(w)
	default:
		p.forward(ctx, w, r, body)
	}
}

// forward relays the request upstream and the answer back.
func (p *RPCProxy) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) {
	status, header, answer, err := p.roundTrip(ctx, r, body)
	if err != nil {
		p.upstreamFailed(ctx, w, err)
		return
	}
	proxyWriteAnswer(w, status, header, answer)
}

func (p *RPCProxy) upstreamFailed(ctx context.Context, w http.ResponseWriter, err error) {
	if ctx.Err() != nil { // Down or closed while forwarding
		proxyDropConnection(w)
		return
	}
	http.Error(w, "testenv rpc proxy: upstream: "+err.Error(), http.StatusBadGateway)
}

// proxyHopHeaders are not passed on by the proxy (RFC 9110 section 7.6.1), nor
// are the ones the transports set themselves.
var proxyHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
	"Accept-Encoding", // so the transport decompresses for us
}

// roundTrip sends body upstream with the client's method and headers and
// reads the whole answer. It is bound to ctx (the up period), not to the
// client's request: a client that gives up does not stop it.
func (p *RPCProxy) roundTrip(ctx context.Context, r *http.Request, body []byte) (status int, header http.Header, answer []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, rpcProxyUpstreamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, p.upstream, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header = r.Header.Clone()
	for _, h := range proxyHopHeaders {
		req.Header.Del(h)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(io.LimitReader(resp.Body, rpcProxyMaxBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	if len(answer) > rpcProxyMaxBody {
		return 0, nil, nil, fmt.Errorf("answer larger than %d bytes", rpcProxyMaxBody)
	}
	return resp.StatusCode, resp.Header, answer, nil
}

func proxyWriteAnswer(w http.ResponseWriter, status int, header http.Header, body []byte) {
	for k, vs := range header {
		if !slices.ContainsFunc(proxyHopHeaders, func(h string) bool { return http.CanonicalHeaderKey(h) == k }) {
			w.Header()[k] = vs
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// proxyDropConnection closes the client's connection without an answer, or
// answers 502 with an empty body when the connection cannot be taken over.
func proxyDropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	_ = conn.Close()
}

// proxyErrorResponse is a JSON-RPC error response.
type proxyErrorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"` // nil encodes as null
	Error   RPCErrorSpec    `json:"error"`
}

// proxyFaultAnswer is a fault's answer to the call with id: null or its
// error.
func proxyFaultAnswer(id json.RawMessage, f *Fault) json.RawMessage {
	if f.Null {
		if id == nil {
			id = json.RawMessage("null")
		}
		return json.RawMessage(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":null}`)
	}
	return proxyErrorAnswer(id, f.RPCError)
}

func proxyErrorAnswer(id json.RawMessage, spec *RPCErrorSpec) json.RawMessage {
	e := *spec
	if e.Code == 0 {
		e.Code = rpcProxyDefaultErrorCode
	}
	b, err := json.Marshal(proxyErrorResponse{JSONRPC: "2.0", ID: id, Error: e})
	if err != nil { // Data that cannot be encoded
		e.Data = nil
		e.Message += fmt.Sprintf(" (testenv rpc proxy: cannot encode data: %v)", err)
		b, _ = json.Marshal(proxyErrorResponse{JSONRPC: "2.0", ID: id, Error: e})
	}
	return b
}

// answerRPCError answers a single request with the error, or, in a batch,
// the elements whose method matches, forwarding the others.
func (p *RPCProxy) answerRPCError(ctx context.Context, w http.ResponseWriter, r *http.Request, f *Fault, calls []proxyCall, elems []json.RawMessage, batch bool) {
	if !batch {
		var id json.RawMessage
		if len(calls) == 1 {
			id = calls[0].ID
		}
		proxyWriteAnswer(w, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, proxyFaultAnswer(id, f))
		return
	}

	faulted := make([]bool, len(calls))
	var rest []json.RawMessage
	for i, c := range calls {
		faulted[i] = f.matchesMethod(c.Method)
		if !faulted[i] {
			rest = append(rest, elems[i])
		}
	}
	var upstream []json.RawMessage
	if len(rest) > 0 {
		body, err := json.Marshal(rest)
		if err != nil {
			http.Error(w, "testenv rpc proxy: encode batch: "+err.Error(), http.StatusInternalServerError)
			return
		}
		status, header, answer, err := p.roundTrip(ctx, r, body)
		if err != nil {
			p.upstreamFailed(ctx, w, err)
			return
		}
		if status/100 != 2 || json.Unmarshal(answer, &upstream) != nil {
			// Not a batch answer (an HTTP error, say): pass it on as it is.
			proxyWriteAnswer(w, status, header, answer)
			return
		}
	}

	// Answers in request order; the node's are matched by id.
	used := make([]bool, len(upstream))
	ids := make([]string, len(upstream))
	for i, a := range upstream {
		var c proxyCall
		_ = json.Unmarshal(a, &c)
		ids[i] = proxyCompactJSON(c.ID)
	}
	out := make([]json.RawMessage, 0, len(calls))
	for i, c := range calls {
		if c.ID == nil { // a notification gets no answer
			continue
		}
		if faulted[i] {
			out = append(out, proxyFaultAnswer(c.ID, f))
			continue
		}
		id := proxyCompactJSON(c.ID)
		for j := range upstream {
			if !used[j] && ids[j] == id {
				used[j] = true
				out = append(out, upstream[j])
				break
			}
		}
	}
	for j, a := range upstream {
		if !used[j] {
			out = append(out, a)
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "testenv rpc proxy: encode batch answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	proxyWriteAnswer(w, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, body)
}

func proxyCompactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
