package testenv

import (
	"io"
	"net/http"
	"strings"
)

// Response is an HTTP answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Request sends method path to base as an API client does: with
// Authorization: Bearer key and, when body is not empty, body as JSON.
// headers are name, value pairs set after those ("" removes the header).
// A nil hc is http.DefaultClient.
func Request(hc *http.Client, base, key, method, path, body string, headers ...string) (Response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return Response{}, err
	}
	return Send(hc, req, key, body != "", headers...)
}

// Send sends req with Authorization: Bearer key, Content-Type JSON when
// jsonBody, then headers (name, value pairs; "" removes the header), and
// reads the answer whole. A nil hc is http.DefaultClient.
func Send(hc *http.Client, req *http.Request, key string, jsonBody bool, headers ...string) (Response, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if jsonBody {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}, err
}
