package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/tandemledger/tandem/ledger"
)

// SealLedgerArgs asks for the ledger's final entries to be sealed (ledger.Ledger.Seal).
type SealLedgerArgs struct{}

// Kind names the job in river_job.
func (SealLedgerArgs) Kind() string { return "seal_ledger" }

// InsertOpts keeps at most one seal queued or running; like the self-check, a finished seal
// does not stop the next one from being queued. Seal is safe to run twice at once anyway.
func (SealLedgerArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

// SealLedgerWorker extends the seal's hash chain over the entries posted since the last run
// (DESIGN.md §3). It runs periodically (Config.SealInterval); a first run over a large
// ledger seals in batches, each committed with its checkpoint, so a timeout or crash loses
// nothing already sealed and the next run continues from the head.
type SealLedgerWorker struct {
	river.WorkerDefaults[SealLedgerArgs]
	Ledger *ledger.Ledger
	Logger *slog.Logger
}

// Work seals what is final.
func (w *SealLedgerWorker) Work(ctx context.Context, job *river.Job[SealLedgerArgs]) error {
	res, err := w.Ledger.Seal(ctx, ledger.SealOptions{})
	if err != nil {
		return err
	}
	if w.Logger != nil && res.Sealed > 0 {
		w.Logger.InfoContext(ctx, "ledger sealed", "entries", res.Sealed, "head_seq", res.HeadSeq, "head_hash", res.HeadHash)
	}
	return nil
}

// Timeout bounds a first seal of a very large ledger; what it sealed stays sealed.
func (w *SealLedgerWorker) Timeout(*river.Job[SealLedgerArgs]) time.Duration {
	return 30 * time.Minute
}
