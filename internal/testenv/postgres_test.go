package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestPostgresKillStart: a committed row survives a kill -9 of the
// postmaster, and the server answers again on the same port after Start.
func TestPostgresKillStart(t *testing.T) {
	pg := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL())
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
	require.NoError(t, err)
	conn.Close(ctx)

	pg.Kill()
	require.False(t, pg.Running())
	_, err = pgx.Connect(ctx, pg.URL())
	require.Error(t, err, "a killed server answers nothing")

	pg.Start()
	conn, err = pgx.Connect(ctx, pg.URL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var v int
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM t").Scan(&v))
	require.Equal(t, 42, v)

	pg.Stop()
	require.False(t, pg.Running())
	pg.Start()
	require.True(t, pg.Running())
}
