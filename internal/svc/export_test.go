package svc

// Watching counts the connections with a permission watch.
func Watching() int {
	n := 0
	watches.Range(func(any, any) bool { n++; return true })
	return n
}
