package jobs_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

func benchStore(b *testing.B) *jobs.Store {
	rs := testenv.Redis(b, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	b.Cleanup(func() { rdb.Close() })
	return jobs.NewStore(rdb, "bench:")
}

// BenchmarkCreate is the API's write of one job (the Lua script with its
// idempotency key and indexes), on a real redis-server over loopback.
func BenchmarkCreate(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Create(ctx, newJob(), jobs.NewID()); err != nil {
			b.Fatal(err)
		}
	}
}
