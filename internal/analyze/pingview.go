package analyze

import "github.com/pingpath/pingpath/internal/parse"

// ping's own view of the run: its output joined by sequence number.

// attachPing joins ping's own output by sequence number. ping does not
// print the ICMP id, so this needs exactly one id in the run.
func (j *joiner) attachPing() {
	f := j.pingFile
	if f == nil || len(f.Replies) == 0 && j.pingSent() == 0 {
		return
	}
	if len(j.ids) > 1 {
		j.warnf("%s: ping output not joined: the run has %d ICMP ids and ping does not print its id", baseName(f.Path), len(j.ids))
		return
	}
	var id uint16
	for k := range j.ids {
		id = k
	}
	if len(j.ids) == 0 {
		if m := j.res.Manifest; m != nil && m.Ping.ICMPID > 0 {
			id = uint16(m.Ping.ICMPID)
		}
		j.ids = map[uint16]bool{id: true}
	}
	u := j.newUnwrapper()
	for _, r := range f.Replies {
		key := u.key(id, r.Seq)
		i, _ := j.ping(id, key)
		p := &j.res.Pings[i]
		p.PingListed = true
		p.Seen |= 1 << parse.PingOwn
		if r.Replied {
			p.Replied = true
			p.set(ValPingRTT, r.RTTNS)
		}
		if p.Time == 0 && r.Time != 0 {
			p.Time = r.Time
		}
	}
	j.listUnanswered(id)
}

// pingSent is how many echo requests ping sent: its summary line, else the
// manifest's count of them (0 when unknown).
func (j *joiner) pingSent() int {
	if j.pingFile.Sent > 0 {
		return j.pingFile.Sent
	}
	if m := j.res.Manifest; m != nil {
		return m.Ping.Sent
	}
	return 0
}

// listUnanswered lists as ping's every sequence number it sent without a
// line for it: ping prints "no answer yet" for a missing reply only when it
// sends the next request, so the last ones of a run have no line, and
// without this they would be "incomplete" instead of lost. ping numbers
// its requests from its first line's sequence (1 for iputils) on, one per
// request, wrapping at 65536.
func (j *joiner) listUnanswered(id uint16) {
	f := j.pingFile
	sent := j.pingSent()
	if sent == 0 {
		return
	}
	first := uint16(1)
	if len(f.Replies) > 0 {
		first = f.Replies[0].Seq
	}
	u := j.newUnwrapper()
	added := 0
	for k := 0; k < sent; k++ {
		i, _ := j.ping(id, u.key(id, first+uint16(k)))
		p := &j.res.Pings[i]
		if !p.PingListed {
			p.PingListed = true
			p.Seen |= 1 << parse.PingOwn
			added++
		}
	}
	if added > 0 {
		j.notef("%s: %d request(s) of the %d ping sent had no line in its output (the last ones get no \"no answer yet\"): counted as lost", baseName(f.Path), added, sent)
	}
}
