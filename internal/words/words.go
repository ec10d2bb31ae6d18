// Package words holds the small helpers of the messages nex writes for people.
package words

import "fmt"

// Count is n with its noun: "1 copy", "2 copies", "0 places".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
