package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// rpcCounter is a pass-through JSON-RPC proxy that counts the calls relayq
// makes, by method, and the HTTP requests that carried them (a batch is one
// request holding many calls).
type rpcCounter struct {
	upstream string
	client   *http.Client
	srv      *http.Server
	addr     string

	mu       sync.Mutex
	methods  map[string]int
	requests int
}

func newRPCCounter(upstream string) (*rpcCounter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	p := &rpcCounter{
		upstream: upstream,
		client:   &http.Client{Transport: tr, Timeout: time.Minute},
		addr:     l.Addr().String(),
		methods:  map[string]int{},
	}
	p.srv = &http.Server{Handler: p}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *rpcCounter) URL() string { return "http://" + p.addr }

func (p *rpcCounter) Close() {
	_ = p.srv.Close()
	p.client.CloseIdleConnections()
}

func (p *rpcCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.count(body)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *rpcCounter) count(body []byte) {
	type call struct {
		Method string `json:"method"`
	}
	var calls []call
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &calls)
	} else {
		var c call
		if json.Unmarshal(body, &c) == nil {
			calls = []call{c}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	for _, c := range calls {
		p.methods[c.Method]++
	}
}

// snapshot returns the calls by method, their total, and the HTTP requests.
func (p *rpcCounter) snapshot() (byMethod map[string]int, calls, requests int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byMethod = make(map[string]int, len(p.methods))
	for m, n := range p.methods {
		byMethod[m] = n
		calls += n
	}
	return byMethod, calls, p.requests
}

// topMethods formats the busiest methods per job, e.g.
// "eth_sendRawTransaction 1.00, eth_estimateGas 1.00".
func topMethods(byMethod map[string]int, jobs int, n int) []methodRate {
	out := make([]methodRate, 0, len(byMethod))
	for m, c := range byMethod {
		out = append(out, methodRate{m, float64(c) / float64(max(jobs, 1))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PerJob > out[j].PerJob })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

type methodRate struct {
	Method string
	PerJob float64
}
