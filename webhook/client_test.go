package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// receiver is a webhook endpoint on 127.0.0.1 that counts its requests.
func receiver(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func delivery(url string) Delivery {
	return Delivery{URL: url, EventID: "0198-job.2", EventType: EventMined, Body: []byte(`{"id":"0198-job.2","type":"job.mined"}`)}
}

func TestDeliverSignsAndSends(t *testing.T) {
	t.Parallel()
	var got http.Header
	var gotBody []byte
	var verr error
	srv, hits := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotBody, _ = io.ReadAll(r.Body)
		verr = Verify(testSecret, r.Header.Get(SignatureHeader), gotBody, 5*time.Minute)
		w.WriteHeader(http.StatusNoContent)
	})
	c := NewClient(testSecret, NewPolicy(loopback), time.Second)
	d := delivery(srv.URL + "/hook?token=x")
	require.NoError(t, c.Deliver(context.Background(), d))
	require.Equal(t, int64(1), hits.Load())
	require.NoError(t, verr)
	require.Equal(t, d.Body, gotBody)
	require.Equal(t, "application/json", got.Get("Content-Type"))
	require.Equal(t, "relayq", got.Get("User-Agent"))
	require.Equal(t, d.EventID, got.Get(EventIDHeader))
	require.Equal(t, EventMined, got.Get(EventTypeHeader))
}

// Without an allow-list, a receiver on loopback is never reached: not as a
// literal address, and not through a host name that resolves to it (the
// check is on the address dialed, which also defeats DNS rebinding).
func TestDeliverRefusesLoopbackAtConnect(t *testing.T) {
	t.Parallel()
	srv, hits := receiver(t, func(w http.ResponseWriter, r *http.Request) {})
	c := NewClient(testSecret, NewPolicy(nil), time.Second)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/hook"} {
		err := c.Deliver(context.Background(), delivery(u))
		require.True(t, IsRefused(err), "%s: %v", u, err)
		require.NotContains(t, err.Error(), "token", "the URL is not repeated in the error")
	}
	require.Zero(t, hits.Load())
}

// A redirect is an answer, not an instruction: the target is never asked.
func TestDeliverDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	target, targetHits := receiver(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/elsewhere", code)
		})
		err := NewClient(testSecret, NewPolicy(loopback), time.Second).Deliver(context.Background(), delivery(srv.URL))
		var se *StatusError
		require.ErrorAs(t, err, &se)
		require.Equal(t, code, se.Code)
		require.Equal(t, target.URL+"/elsewhere", se.Location)
		require.Contains(t, err.Error(), "redirects are not followed")
	}
	require.Zero(t, targetHits.Load())
}

func TestDeliverFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{"500 with a body", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "database\nis down "+strings.Repeat("x", 1000), http.StatusInternalServerError)
		}, func(t *testing.T, err error) {
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, 500, se.Code)
			require.True(t, strings.HasPrefix(se.Snippet, "database is down xxx"), se.Snippet)
			require.LessOrEqual(t, len(se.Snippet), maxSnippet+len("…"))
		}},
		{"connection closed without an answer", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, func(t *testing.T, err error) {
			require.Error(t, err)
			require.False(t, IsRefused(err))
			var se *StatusError
			require.False(t, errors.As(err, &se))
		}},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			// With the body read, the server notices the client hang up.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, func(t *testing.T, err error) {
			require.Error(t, err)
			require.False(t, IsRefused(err))
		}},
		{"400", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }, func(t *testing.T, err error) {
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, 400, se.Code)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv, hits := receiver(t, c.handler)
			err := NewClient(testSecret, NewPolicy(loopback), 300*time.Millisecond).Deliver(context.Background(), delivery(srv.URL))
			c.check(t, err)
			require.Equal(t, int64(1), hits.Load(), "a client never retries by itself")
		})
	}
}

// A receiver that answers 200 with an endless body does not hold the
// worker: only the start of the answer is read.
func TestDeliverReadsACappedAnswer(t *testing.T) {
	t.Parallel()
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("y", 32<<10))
		for range 1 << 12 { // 128 MiB if anyone read it all
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	require.NoError(t, NewClient(testSecret, NewPolicy(loopback), 5*time.Second).Deliver(context.Background(), delivery(srv.URL)))
}

func TestDeliverBadURL(t *testing.T) {
	t.Parallel()
	err := NewClient(testSecret, NewPolicy(loopback), time.Second).Deliver(context.Background(), delivery("http://[::1"))
	require.Error(t, err)
}
