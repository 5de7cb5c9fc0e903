package api

import (
	"encoding/json"
	"strings"
	"time"
)

// maxDeadline bounds how far ahead a job's deadline may be: a typo of a
// few zeros should be refused, not kept for centuries.
const maxDeadline = 365 * 24 * time.Hour

// parseDeadline reads a job's deadline at now: an RFC 3339 timestamp
// ("2026-12-02T08:00:00Z") or a whole number of seconds from now (120 or
// "120"). It must lie in the future, at most maxDeadline ahead.
func parseDeadline(raw json.RawMessage, now time.Time) (time.Time, *Error) {
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, invalid("invalid_deadline", "deadline", "deadline must be an RFC 3339 timestamp or a number of seconds from now")
		}
	} else {
		s = string(raw)
	}
	s = strings.TrimSpace(s)
	var d time.Time
	if secs, ok := parseSeconds(s); ok {
		if secs == 0 || secs > int64(maxDeadline/time.Second) {
			return time.Time{}, invalid("out_of_range", "deadline", "deadline %s seconds from now is out of range 1..%d", clip(s), int64(maxDeadline/time.Second))
		}
		d = now.Add(time.Duration(secs) * time.Second)
	} else {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, invalid("invalid_deadline", "deadline", "deadline %s is neither an RFC 3339 timestamp (e.g. %q) nor a number of seconds from now", clip(string(raw)), now.UTC().Add(time.Hour).Format(time.RFC3339))
		}
		d = t
	}
	switch {
	case !d.After(now):
		return time.Time{}, invalid("out_of_range", "deadline", "deadline %s is not in the future (now %s)", d.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339))
	case d.Sub(now) > maxDeadline:
		return time.Time{}, invalid("out_of_range", "deadline", "deadline %s is more than %d days ahead", d.UTC().Format(time.RFC3339), int(maxDeadline/(24*time.Hour)))
	}
	return d.UTC(), nil
}

// parseSeconds reads a whole non-negative number of seconds; ok is false
// when s is not one (then it may be a timestamp).
func parseSeconds(s string) (int64, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
