package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Filter narrows a listing of jobs; the zero Filter lists every job.
//
// Status and the time range are read from the indexes (ids are UUIDv7, so
// a creation time is a bound on the id). From and the metadata field are
// checked on the records (as is To): a page may then come back with fewer jobs than
// asked for, and a next cursor, after MaxScan ids were read.
type Filter struct {
	Status Status
	Since  time.Time // created at or after (zero: no bound)
	Until  time.Time // created before (zero: no bound)
	From   string    // the signer's address, any case ("": any)
	To     string    // the called address, any case ("": any)
	// MetaKey and MetaValue select jobs whose metadata has the top-level
	// field MetaKey equal to MetaValue: a string's value, or the JSON text
	// of a number, boolean or null. MetaKey "": no metadata filter.
	MetaKey, MetaValue string
	// Owner, if set, lists only the jobs of that API key (by name), from
	// the key's own indexes.
	Owner string
}

// MaxScan bounds the ids one filtered page reads when From or a metadata
// field is set, so a rare match cannot make one request read every job.
const MaxScan = 2000

// scanChunk is how many ids a filtered page reads per round trip.
const scanChunk = 200

// needsRecords reports whether f checks fields of the records themselves.
func (f Filter) needsRecords() bool { return f.From != "" || f.To != "" || f.MetaKey != "" }

// match reports whether j passes the record checks of f.
func (f Filter) match(j *Job) bool {
	if f.From != "" && !strings.EqualFold(j.From, f.From) {
		return false
	}
	if f.To != "" && !strings.EqualFold(j.To, f.To) {
		return false
	}
	if f.MetaKey == "" {
		return true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(j.Metadata, &m) != nil {
		return false
	}
	raw, ok := m[f.MetaKey]
	if !ok {
		return false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == f.MetaValue
	}
	return string(raw) == f.MetaValue
}

// idBound is the smallest id string a job created at t can have: the hex
// of its millisecond timestamp, as a UUIDv7 starts ("0190c0de-12ab").
func idBound(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
}

// ListFilter returns up to limit jobs passing f, newest first, starting
// after the id cursor (the last id of the previous page). next is "" on
// the last page.
func (s *Store) ListFilter(ctx context.Context, f Filter, limit int, cursor string) (list []*Job, next string, err error) {
	key := s.allKey()
	switch {
	case f.Owner != "" && f.Status != "":
		key = s.ownerStatusKey(f.Owner, f.Status)
	case f.Owner != "":
		key = s.ownerAllKey(f.Owner)
	case f.Status != "":
		key = s.statusKey(f.Status)
	}
	// Exclusive upper bound: the cursor or the range's end, whichever is
	// lower; inclusive lower bound: the range's start.
	upper := cursor
	if !f.Until.IsZero() {
		if b := idBound(f.Until); upper == "" || b < upper {
			upper = b
		}
	}
	rng := &redis.ZRangeBy{Max: "+", Min: "-"}
	if upper != "" {
		rng.Max = "(" + upper
	}
	if !f.Since.IsZero() {
		rng.Min = "[" + idBound(f.Since)
	}
	if !f.needsRecords() {
		rng.Count = int64(limit) + 1
		ids, err := s.rdb.ZRevRangeByLex(ctx, key, rng).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		if len(ids) > limit {
			ids = ids[:limit]
			next = ids[limit-1]
		}
		js, err := s.GetMany(ctx, ids)
		if err != nil {
			return nil, "", err
		}
		out := make([]*Job, 0, len(js))
		for _, j := range js {
			if j != nil {
				out = append(out, j)
			}
		}
		return out, next, nil
	}
	out := make([]*Job, 0, limit)
	scanned := 0
	for {
		rng.Count = int64(min(scanChunk, MaxScan-scanned))
		ids, err := s.rdb.ZRevRangeByLex(ctx, key, rng).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		js, err := s.GetMany(ctx, ids)
		if err != nil {
			return nil, "", err
		}
		for i, j := range js {
			if j != nil && f.match(j) {
				out = append(out, j)
				if len(out) == limit {
					// More may follow: the next page starts after this one.
					if i < len(ids)-1 || len(ids) == int(rng.Count) {
						next = ids[i]
					}
					return out, next, nil
				}
			}
		}
		scanned += len(ids)
		if len(ids) < int(rng.Count) {
			return out, "", nil // the index is exhausted
		}
		last := ids[len(ids)-1]
		if scanned >= MaxScan {
			return out, last, nil
		}
		rng.Max = "(" + last
	}
}
