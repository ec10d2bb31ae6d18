package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// A MemoryStore made with NewFileStore keeps its records in a directory too (one JSON file
// per workload, written whole and renamed into place), so they survive a restart of nexd
// on this machine: the records of a node without JetStream live in its data dir.

// fileRecord is a record as a file holds it, with the revision the store gave it.
type fileRecord struct {
	Revision uint64 `json:"revision"`
	Record
}

// fileState is the part of a MemoryStore that writes to its directory.
type fileState struct {
	dir     string
	mu      sync.Mutex        // orders the writes (the store's own lock is never held for I/O)
	written map[string]uint64 // newest revision written per workload
	claims  uint64            // version of the claims last written
}

// NewFileStore returns a store that keeps its records (and request-ID claims) in dir,
// loading what an earlier nexd left there.
func NewFileStore(dir string) (*MemoryStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", dir, err)
	}
	m := NewMemoryStore()
	m.file = &fileState{dir: dir, written: map[string]uint64{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read state dir %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || name == claimsFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read state %s: %w", name, err)
		}
		var fr fileRecord
		if err := json.Unmarshal(b, &fr); err != nil {
			return nil, fmt.Errorf("decode state %s: %w", name, err)
		}
		if fr.Version > RecordVersion {
			return nil, fmt.Errorf("state %s has layout version %d, newer than this nexd understands (%d)", name, fr.Version, RecordVersion)
		}
		fr.Record.Revision = fr.Revision
		m.recs[fr.WorkloadID] = fr.Record
		m.rev = max(m.rev, fr.Revision)
		m.file.written[fr.WorkloadID] = fr.Revision
	}
	if b, err := os.ReadFile(filepath.Join(dir, claimsFile)); err == nil {
		if err := json.Unmarshal(b, &m.claims); err != nil {
			return nil, fmt.Errorf("decode %s: %w", claimsFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return m, nil
}

// claimsFile holds the request-ID claims of a file store.
const claimsFile = "claims.json"

// write puts rec's file in place, unless a newer revision of it was written meanwhile.
func (f *fileState) write(rec Record) error {
	b, err := json.Marshal(fileRecord{Revision: rec.Revision, Record: rec})
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.written[rec.WorkloadID] > rec.Revision {
		return nil
	}
	if err := writeWhole(filepath.Join(f.dir, rec.WorkloadID+".json"), b); err != nil {
		return err
	}
	f.written[rec.WorkloadID] = rec.Revision
	return nil
}

// remove deletes a workload's file.
func (f *fileState) remove(wid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.written, wid)
	if err := os.Remove(filepath.Join(f.dir, wid+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeClaims writes the claims whole, unless a newer version was written meanwhile.
func (f *fileState) writeClaims(version uint64, claims map[string]string) error {
	b, err := json.Marshal(claims)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if version < f.claims {
		return nil
	}
	f.claims = version
	return writeWhole(filepath.Join(f.dir, claimsFile), b)
}

// writeWhole replaces path with b: written beside it, synced, then renamed into place.
func writeWhole(path string, b []byte) error {
	tmp := path + ".new"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := fh.Write(b); err != nil {
		_ = fh.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := fh.Sync(); err != nil {
		_ = fh.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return os.Rename(tmp, path)
}
