package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Event types. A job's event carries the status it arrived at; a reorg's
// step back (mined → submitted) is "job.reorged".
const (
	EventMined     = "job.mined"
	EventConfirmed = "job.confirmed"
	EventFailed    = "job.failed"
	EventCancelled = "job.cancelled"
	EventReorged   = "job.reorged"
)

// Event is the body of a delivery.
type Event struct {
	// ID is "<job id>.<n>", n being the change's index in the job's
	// history: the same on every retry, so receivers can drop duplicates.
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"` // when the job changed status
	Job       json.RawMessage `json:"job"`        // the job as it was right after the change
}

// Defaults of a Client.
const (
	DefaultTimeout = 10 * time.Second
	// maxResponse is how much of a receiver's answer is read; the rest is
	// left unread, so a receiver cannot make a worker read forever.
	maxResponse = 64 << 10
	maxSnippet  = 200
)

// Delivery is one attempt to deliver an event.
type Delivery struct {
	URL       string
	EventID   string
	EventType string
	Body      []byte // sent as is: identical bytes on every retry
	// Secret, when set, signs this delivery instead of the client's
	// secret: the secret of the API key whose job fired the event.
	Secret string
}

// StatusError is a receiver's answer other than 2xx. A redirect is one:
// it is never followed.
type StatusError struct {
	Code     int
	Location string // of a redirect
	Snippet  string // the start of the answer's body
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("receiver answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Location != "" {
		msg += " to " + e.Location + " (redirects are not followed)"
	}
	if e.Snippet != "" {
		msg += ": " + e.Snippet
	}
	return msg
}

// Client delivers signed events. Every connection it opens is checked
// against the policy at connect time, on the address actually dialed, so a
// host name that resolves (or re-resolves, DNS rebinding) to a refused
// address is refused. It uses no proxy and follows no redirects.
type Client struct {
	secret string
	hc     *http.Client
	now    func() time.Time
}

// NewClient returns a client that signs with secret and connects only
// where policy allows, giving each attempt timeout (DefaultTimeout if 0).
func NewClient(secret string, policy *Policy, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook dial %s: %w", address, err)
			}
			return policy.Check(ap.Addr())
		},
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would be the address dialed, not the receiver
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &Client{
		secret: secret,
		hc: &http.Client{
			Transport:     tr,
			Timeout:       timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: time.Now,
	}
}

// Deliver POSTs d.Body to d.URL, signed at the current time. It returns
// nil on a 2xx answer; a *StatusError for any other answer; an error that
// IsRefused for an address the policy refuses; otherwise the network error.
func (c *Client) Deliver(ctx context.Context, d Delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "relayq")
	req.Header.Set(EventIDHeader, d.EventID)
	req.Header.Set(EventTypeHeader, d.EventType)
	secret := c.secret
	if d.Secret != "" {
		secret = d.Secret
	}
	if secret == "" {
		return errors.New("webhook delivery: no secret to sign with")
	}
	req.Header.Set(SignatureHeader, Sign(secret, c.now(), d.Body))
	res, err := c.hc.Do(req)
	if err != nil {
		// The url.Error repeats the URL (which may hold a token): keep
		// only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook delivery: %w", err)
	}
	defer res.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	return &StatusError{Code: res.StatusCode, Location: clip(res.Header.Get("Location")), Snippet: clip(string(head))}
}

// CloseIdle closes the client's idle connections.
func (c *Client) CloseIdle() { c.hc.CloseIdleConnections() }

// clip keeps the start of s, valid UTF-8 on one line, for an error message.
func clip(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) <= maxSnippet {
		return s
	}
	s = s[:maxSnippet]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
