package worker

import (
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
)

// A signer pays for a job when value + gas × fee cap fits its balance;
// when it does not but a no-op (21000 gas) would, only that job waits;
// below a no-op the signer is broke and pauses.
func TestAfford(t *testing.T) {
	t.Parallel()
	gwei := big.NewInt(1e9)
	eth := func(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }
	for _, tc := range []struct {
		name    string
		balance *big.Int
		value   *big.Int
		gas     uint64
		want    Affordability
	}{
		{"plenty", eth(3), eth(1), 100000, Affordable},
		{"exactly enough", big.NewInt(21000e9 + 5), big.NewInt(5), 21000, Affordable},
		{"value above the balance", eth(3), eth(12), 100000, JobUnaffordable},
		{"gas tips it over", big.NewInt(100000e9), big.NewInt(1), 100000, JobUnaffordable},
		{"just a no-op left", big.NewInt(21000e9), nil, 50000, JobUnaffordable},
		{"not even a no-op", big.NewInt(21000e9 - 1), nil, 50000, SignerBroke},
		{"empty", new(big.Int), nil, 21000, SignerBroke},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := Afford(tc.balance, tc.value, tc.gas, gwei)
			require.Equal(t, tc.want, got)
		})
	}
	_, cost := Afford(eth(1), eth(2), 21000, gwei)
	require.Equal(t, new(big.Int).Add(eth(2), big.NewInt(21000e9)), cost)
}

func TestFundsWarningReadsInEther(t *testing.T) {
	t.Parallel()
	eth := func(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }
	fee := big.NewInt(1500000000)
	_, cost := Afford(eth(3), eth(12), 21000, fee)
	require.Equal(t, "value+gas*fee 12.0000315 ETH (value 12 ETH + 21000 gas × 1.5 gwei) exceeds balance 3 ETH",
		fundsWarning(eth(12), 21000, fee, cost, eth(3)))
	require.Equal(t, "0.000000000000000001", ether(big.NewInt(1)))
	require.Equal(t, "0", ether(nil))
}
