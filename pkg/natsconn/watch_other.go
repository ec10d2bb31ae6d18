//go:build !linux

package natsconn

// watchDir has no kernel watch to offer here: WatchFile checks every interval.
func watchDir(string) (<-chan struct{}, func()) { return nil, func() {} }
