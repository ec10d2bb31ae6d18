// Package schemas embeds the JSON Schemas that are the one truth for start requests.
package schemas

import (
	"embed"
	"fmt"
)

//go:embed nexlet-native/*.json
var files embed.FS

// StartRequest returns the start-request schema of the named nexlet type ("native").
func StartRequest(registerType string) ([]byte, error) {
	b, err := files.ReadFile("nexlet-" + registerType + "/start_request.json")
	if err != nil {
		return nil, fmt.Errorf("no start-request schema for type %q: %w", registerType, err)
	}
	return b, nil
}
