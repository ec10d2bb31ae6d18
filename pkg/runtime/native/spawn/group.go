package spawn

import (
	"errors"
	"syscall"
	"time"
)

// KillGroup sends sig to process group pgid (when it is one).
func KillGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// WaitGroupGone polls until no process of group pgid exists or giveUp fires; after
// giveUp it still waits (briefly) for SIGKILLed processes to be reaped.
func WaitGroupGone(pgid int, giveUp <-chan struct{}) {
	hard := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		select {
		case <-giveUp:
			if time.Now().After(hard) {
				return
			}
			KillGroup(pgid, syscall.SIGKILL)
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
}
