package testutil

import (
	"strings"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// FeedLines is what a live log message holds: one line, or a burst of whole lines (with
// v1.HeaderLines, each followed by '\n'), and whether each is a piece of a cut line. A
// message with no v1.HeaderStream (a run's Nex-End, or not a nexlet's) holds no line, as
// docs/api-v1.md tells readers.
func FeedLines(m *nats.Msg) (lines []string, continued []bool) {
	if m.Header.Get(v1.HeaderStream) == "" {
		return nil, nil
	}
	if m.Header.Get(v1.HeaderLines) == "" {
		return []string{string(m.Data)}, []bool{m.Header.Get(v1.HeaderContinued) == "true"}
	}
	lines = strings.Split(strings.TrimSuffix(string(m.Data), "\n"), "\n")
	return lines, make([]bool, len(lines))
}
