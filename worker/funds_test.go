package worker

import (
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
)

// A signer pays for a job when value + gas × fee cap fits its balance
// less what it already promised to jobs sent since the balance was read;
// when it does not but a no-op (21000 gas) would, only that job waits;
// below a no-op the signer is broke and pauses.
func TestAfford(t *testing.T) {
	t.Parallel()
	gwei := big.NewInt(1e9)
	eth := func(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }
	for _, tc := range []struct {
		name     string
		balance  *big.Int
		promised *big.Int
		value    *big.Int
		gas      uint64
		want     Affordability
	}{
		{"plenty", eth(3), nil, eth(1), 100000, Affordable},
		{"exactly enough", big.NewInt(21000e9 + 5), nil, big.NewInt(5), 21000, Affordable},
		{"value above the balance", eth(3), nil, eth(12), 100000, JobUnaffordable},
		{"gas tips it over", big.NewInt(100000e9), nil, big.NewInt(1), 100000, JobUnaffordable},
		{"just a no-op left", big.NewInt(21000e9), nil, nil, 50000, JobUnaffordable},
		{"fits alone, not after the jobs already promised", eth(3), eth(2), eth(2), 21000, JobUnaffordable},
		{"fits beside the jobs already promised", eth(3), eth(1), eth(1), 21000, Affordable},
		{"all promised: waits, no pause", big.NewInt(21000e9), big.NewInt(21000e9), nil, 21000, JobUnaffordable},
		{"not even a no-op", big.NewInt(21000e9 - 1), nil, nil, 50000, SignerBroke},
		{"empty", new(big.Int), nil, nil, 21000, SignerBroke},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := Afford(tc.balance, tc.promised, tc.value, tc.gas, gwei)
			require.Equal(t, tc.want, got)
		})
	}
	_, cost := Afford(eth(1), nil, eth(2), 21000, gwei)
	require.Equal(t, new(big.Int).Add(eth(2), big.NewInt(21000e9)), cost)
}

func TestFundsWarningReadsInEther(t *testing.T) {
	t.Parallel()
	eth := func(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }
	fee := big.NewInt(1500000000)
	_, cost := Afford(eth(3), nil, eth(12), 21000, fee)
	require.Equal(t, "value+gas*fee 12.0000315 ETH (value 12 ETH + 21000 gas × 1.5 gwei) exceeds balance 3 ETH",
		fundsWarning(eth(12), 21000, fee, cost, eth(3)))
	require.Equal(t, "0.000000000000000001", ether(big.NewInt(1)))
	require.Equal(t, "0", ether(nil))
}
