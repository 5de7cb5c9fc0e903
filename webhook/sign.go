// Package webhook is the pure part of relayq's webhooks: the events, their
// Stripe-style signatures (and Verify, for receivers), the policy that
// refuses private, loopback and metadata addresses (SSRF), and an HTTP
// client that signs, enforces the policy on every connection and never
// follows a redirect. It knows nothing of Redis or Asynq.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" keyed with the deployment's secret>".
	SignatureHeader = "Relayq-Signature"
	// EventIDHeader carries the event id, the same on every retry: receivers
	// drop an id they have already processed.
	EventIDHeader = "Relayq-Event-Id"
	// EventTypeHeader carries the event type, e.g. "job.confirmed".
	EventTypeHeader = "Relayq-Event-Type"
)

// MinSecretLength is the shortest secret relayq accepts.
const MinSecretLength = 32

// Errors of Verify.
var (
	ErrNoSignature = errors.New("webhook: no usable signature header")
	ErrTimestamp   = errors.New("webhook: signature timestamp outside the tolerance")
	ErrSignature   = errors.New("webhook: signature does not match")
)

// Sign returns the value of the signature header for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery's signature header against the exact body bytes
// received: one of its v1 signatures must be the HMAC of "<t>.<body>" with
// secret, and t must be within tolerance of now (tolerance ≤ 0 skips the
// time check). Unknown schemes in the header are ignored, so a receiver
// keeps working if relayq adds one.
func Verify(secret, header string, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, header, body, tolerance, time.Now())
}

func verifyAt(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: signed at %s, %s from now", ErrTimestamp, time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second))
		}
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrSignature
}
