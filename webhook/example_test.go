package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/relayq/relayq/webhook"
)

// A receiver checks every delivery against the raw body before trusting
// it, and answers 2xx once it has the event (also for a duplicate id).
func ExampleVerify() {
	secret := "the value of RELAYQ_WEBHOOK_SECRET, 32+ characters"
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Println("verified", r.Header.Get(webhook.EventIDHeader), r.Header.Get(webhook.EventTypeHeader))
		w.WriteHeader(http.StatusNoContent)
	}

	// What relayq sends, and a forgery.
	body := `{"id":"0192f3c1-job.2","type":"job.mined","created_at":"…","job":{}}`
	for _, sig := range []string{webhook.Sign(secret, time.Now(), []byte(body)), webhook.Sign("not the secret, though long enough", time.Now(), []byte(body))} {
		req := httptest.NewRequest(http.MethodPost, "/relayq", strings.NewReader(body))
		req.Header.Set(webhook.SignatureHeader, sig)
		req.Header.Set(webhook.EventIDHeader, "0192f3c1-job.2")
		req.Header.Set(webhook.EventTypeHeader, webhook.EventMined)
		rec := httptest.NewRecorder()
		handler(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// verified 0192f3c1-job.2 job.mined
	// 204
	// 401
}
