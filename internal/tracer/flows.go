package tracer

import "slices"

// FlowTable is a state machine's open flows (the packets being assembled)
// by key. It also remembers for a while when each closed flow was decided,
// so that a straggler of a decided flow (a duplicate hit, a reply after the
// timeout) is told apart from a new flow reusing the key (a sequence wrap,
// a restarted ping).
type FlowTable[K comparable, F any] struct {
	open    map[K]*F
	decided map[K]uint64
}

// NewFlowTable returns an empty table.
func NewFlowTable[K comparable, F any]() *FlowTable[K, F] {
	return &FlowTable[K, F]{open: map[K]*F{}, decided: map[K]uint64{}}
}

// Get returns the open flow of k, or nil.
func (t *FlowTable[K, F]) Get(k K) *F { return t.open[k] }

// Open adds f as the open flow of k.
func (t *FlowTable[K, F]) Open(k K, f *F) { t.open[k] = f }

// Close removes the open flow of k and remembers that it was decided at at.
func (t *FlowTable[K, F]) Close(k K, at uint64) {
	delete(t.open, k)
	t.decided[k] = at
}

// Remove removes the open flow of k without remembering a decision.
func (t *FlowTable[K, F]) Remove(k K) { delete(t.open, k) }

// Decided returns when the last flow of k was decided, if it is remembered.
func (t *FlowTable[K, F]) Decided(k K) (at uint64, ok bool) {
	at, ok = t.decided[k]
	return at, ok
}

// Forget drops the decision of k: its next event opens a new flow.
func (t *FlowTable[K, F]) Forget(k K) { delete(t.decided, k) }

// ForgetBefore drops every decision taken before `before`.
func (t *FlowTable[K, F]) ForgetBefore(before uint64) {
	for key, at := range t.decided {
		if at < before {
			delete(t.decided, key)
		}
	}
}

// Len is the number of open flows.
func (t *FlowTable[K, F]) Len() int { return len(t.open) }

// Select returns the open flows for which keep is true (every one when keep
// is nil), sorted by cmp so that output does not depend on map order.
func (t *FlowTable[K, F]) Select(keep func(*F) bool, cmp func(a, b *F) int) []*F {
	var out []*F
	for _, f := range t.open {
		if keep == nil || keep(f) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, cmp)
	return out
}
