package worker

import (
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// A job without to is a contract creation, and every transaction signed
// for it (the first, a bump, a re-sign) has no recipient; one without
// initcode is refused as an invalid record.
func TestJobCallOfADeployment(t *testing.T) {
	t.Parallel()
	from := common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
	c, err := jobCall(&jobs.Job{Data: "0x6000", Value: "7"}, from)
	require.NoError(t, err)
	require.True(t, c.Create)
	require.Nil(t, c.Target())
	require.Equal(t, []byte{0x60, 0x00}, c.Data)
	require.Equal(t, int64(7), c.Value.Int64())

	_, err = jobCall(&jobs.Job{Data: "0x", Value: "0"}, from)
	require.ErrorContains(t, err, "without initcode")

	c, err = jobCall(&jobs.Job{To: "0x00000000000000000000000000000000000000aa", Data: "0x", Value: "0"}, from)
	require.NoError(t, err)
	require.False(t, c.Create)
	require.Equal(t, common.HexToAddress("0xaa"), *c.Target())
}
