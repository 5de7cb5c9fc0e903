package worker

import (
	"context"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// registryLookupTimeout bounds the registry read of a failing job: a slow
// Redis costs the job its decoded reason, not its failure.
const registryLookupTimeout = 2 * time.Second

// revertErrorAt is revertError for a call to address to: a custom error
// that the configured ErrorABI does not name is decoded with the ABI of
// the contract registered at to (POST /v1/contracts), when there is one.
func (w *Worker) revertErrorAt(ctx context.Context, code string, err error, to string) jobs.Error {
	e := w.revertError(code, err)
	data, ok := txmgr.RevertData(err)
	if !ok || txmgr.DecodeRevert(data, nil).Kind != txmgr.RevertKindCustom || calldata.DeclaresError(w.cfg.ErrorABI, data) {
		return e
	}
	if !common.IsHexAddress(to) {
		return e
	}
	ctx, cancel := context.WithTimeout(ctx, registryLookupTimeout)
	defer cancel()
	ct, lerr := jobs.NewContracts(w.cfg.Redis, w.cfg.Prefix).At(ctx, common.HexToAddress(to).Hex())
	if lerr != nil {
		return e
	}
	parsed, perr := calldata.ParseStoredABI(ct.ABI) // it may predate ParseABI's limits; DecodeRevert is bounded
	if perr != nil {
		return e
	}
	if calldata.DeclaresError(&parsed, data) {
		r := txmgr.DecodeRevert(data, &parsed)
		e.RevertReason, e.RevertData = r.Reason, hexutil.Encode(data)
	}
	return e
}
