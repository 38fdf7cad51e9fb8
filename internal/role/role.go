// Package role names the four machines of a measurement: the sender VM and
// its hypervisor host, the receiver host and its VM. The environment file
// declares them, the orchestrator runs a tracer on each, and the run's
// manifest records which was which; all three use these names.
package role

// The four roles, in the order a ping's request passes them.
const (
	SenderVM     = "sender-vm"
	SenderHost   = "sender-host"
	ReceiverHost = "receiver-host"
	ReceiverVM   = "receiver-vm"
)

// All lists the roles in path order.
var All = []string{SenderVM, SenderHost, ReceiverHost, ReceiverVM}

// IsVM tells a guest from a hypervisor host.
func IsVM(r string) bool { return r == SenderVM || r == ReceiverVM }
