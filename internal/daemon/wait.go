package daemon

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
)

// Bounds of the start-up wait for NATS and JetStream.
const (
	waitFirst      = 250 * time.Millisecond // first pause between tries; doubles
	waitMax        = 5 * time.Second        // longest pause between tries
	waitAttempt    = 2 * time.Second        // first try's bound; doubles
	waitAttemptMax = 10 * time.Second       // longest single try
	waitLogEvery   = 5 * time.Second        // how often the wait is logged
)

// waitFor runs try until it succeeds, fails for good (permanent says so), ctx ends, or
// --startup-wait has passed since the node began to start: a cluster booting at once
// (servers electing leaders, nodes creating the same bucket) and a nexd started before its
// nats-server are waited for, with what is missing logged every few seconds.
func (d *daemon) waitFor(ctx context.Context, what string, permanent func(error) bool, try func(context.Context) error) error {
	pause, bound := retry.Backoff{First: waitFirst, Max: waitMax}, retry.Backoff{First: waitAttempt, Max: waitAttemptMax}
	var lastLog time.Time
	began := time.Now()
	for attempt := 1; ; attempt++ {
		// a try that runs out of time may still have done its work: the next finds it done
		actx, cancel := context.WithTimeout(ctx, min(bound.Next(), max(time.Until(d.startupDeadline), time.Second)))
		err := try(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				d.log.Info("ready: "+what, zap.String("waited", time.Since(began).Round(100*time.Millisecond).String()), zap.Int("tries", attempt))
			}
			return nil
		}
		if permanent != nil && permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped while waiting for %s: %w", what, err)
		}
		left := time.Until(d.startupDeadline)
		if left <= 0 {
			return fmt.Errorf("%w: %s was not ready after %s (--startup-wait %s): %v", ErrStartupWait, what, time.Since(began).Round(time.Second), d.o.StartupWait, err)
		}
		if time.Since(lastLog) >= waitLogEvery {
			lastLog = time.Now()
			d.log.Warn("waiting for "+what, zap.Error(err), zap.String("waited", time.Since(began).Round(time.Second).String()),
				zap.String("gives_up_in", left.Round(time.Second).String()))
		}
		if !pause.Wait(ctx, left) { // the last try comes at the deadline itself
			return fmt.Errorf("stopped while waiting for %s: %w", what, err)
		}
	}
}
