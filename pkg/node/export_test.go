package node

// RenewCreds runs one round of workload credential renewal now.
func (n *Node) RenewCreds() { n.renewCreds() }
