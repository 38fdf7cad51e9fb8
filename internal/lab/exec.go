package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
)

// Command returns a command that Exec or Start runs inside a node's network
// namespace. Callers may set Stdin, Stdout, Env and so on before running it.
func (l *Lab) Command(ctx context.Context, node string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("running in %s: no command", node)
	}
	if _, err := l.nodeNetns(node); err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...), nil
}

// Start starts cmd inside the node's network namespace (the fork happens on
// a thread that has joined it). The caller waits for it.
func (l *Lab) Start(node string, cmd *exec.Cmd) error {
	ns, err := l.nodeNetns(node)
	if err != nil {
		return err
	}
	return startInNetns(ns, cmd)
}

// nodeNetns returns a node's network namespace; a KVM lab's nodes are
// machines of their own, reached over SSH only.
func (l *Lab) nodeNetns(node string) (string, error) {
	n, err := l.Node(node)
	if err != nil {
		return "", err
	}
	if n.Netns == "" {
		return "", fmt.Errorf("node %s of lab %s is a %s machine, not a namespace of this one: use Dial (SSH)", node, l.Name, l.Hypervisor)
	}
	return n.Netns, nil
}

// Exec runs argv inside a node's network namespace (like
// `ip netns exec NETNS argv...`) and returns its combined output.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	cmd, err := l.Command(ctx, node, argv...)
	if err != nil {
		return nil, err
	}
	// One writer for both: exec then never writes to it concurrently.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := l.Start(node, cmd); err != nil {
		return nil, fmt.Errorf("running %v in %s: %w", argv, node, err)
	}
	if err := cmd.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("running %v in %s: %w", argv, node, err)
	}
	return out.Bytes(), nil
}

// Do runs fn on an OS thread inside the node's network namespace: sockets
// fn opens belong to the node.
func (l *Lab) Do(node string, fn func() error) error {
	ns, err := l.nodeNetns(node)
	if err != nil {
		return err
	}
	return InNetns(ns, fn)
}
