package parse

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"time"
)

// ping -D -n -O prints "[unix.micro] 64 bytes from IP: icmp_seq=N ttl=T
// time=X ms" per reply, "[unix.micro] no answer yet for icmp_seq=N" for an
// overdue one, and a summary. Duplicates ("DUP!") are ignored. A reply that
// arrives after its "no answer yet" line counts as a (late) reply.
var (
	rePingReply   = regexp.MustCompile(`^(?:\[(\d+)\.(\d+)\] )?\d+ bytes from [^:]+: icmp_seq=(\d+) .*time=([0-9.]+) ms`)
	rePingNoAns   = regexp.MustCompile(`^(?:\[(\d+)\.(\d+)\] )?no answer yet for icmp_seq=(\d+)`)
	rePingSummary = regexp.MustCompile(`^(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

func pingTime(sec, frac []byte) int64 {
	if len(sec) == 0 {
		return 0
	}
	s, err := strconv.ParseInt(string(sec), 10, 64)
	if err != nil || s > 1<<33 {
		return 0
	}
	fr := string(frac)
	if len(fr) > 9 {
		fr = fr[:9]
	}
	for len(fr) < 9 {
		fr += "0"
	}
	ns, _ := strconv.ParseInt(fr, 10, 64)
	return s*1e9 + ns
}

// Kinds of ping output lines (PingLine.Kind).
const (
	PingOther    = iota // anything else (header, DUP!, errors)
	PingReplied         // "... bytes from ...: icmp_seq=N ... time=X ms"
	PingNoAnswer        // "no answer yet for icmp_seq=N"
	PingSummary         // "N packets transmitted, M received"
	PingBad             // a reply or no-answer line whose numbers do not parse
)

// PingLine is one line of ping's output read on its own: the orchestrator
// follows ping's progress with it, and the analysis reads ping's file.
type PingLine struct {
	Kind int
	// Reply is the reply (Replied set) or the missing one (PingNoAnswer),
	// without Line.
	Reply PingReply
	// Ident is the ICMP id a reply line names ("ident=N", ping -v); 0
	// when absent.
	Ident int
	// Sent and Received are a summary's counts.
	Sent, Received int
}

var reIdent = regexp.MustCompile(` ident=(\d+) `)

// ReadPingLine classifies one line of ping's output.
func ReadPingLine(line []byte) PingLine {
	if rep, ok := fastPingReply(line); ok {
		return PingLine{Kind: PingReplied, Reply: rep, Ident: pingIdent(line)}
	}
	if m := rePingReply.FindSubmatch(line); m != nil {
		if bytes.Contains(line, []byte("DUP!")) {
			return PingLine{}
		}
		seq, ok := parsePingSeq(m[3])
		v, ok2 := msToNS(string(m[4]))
		if !ok || !ok2 {
			return PingLine{Kind: PingBad}
		}
		return PingLine{Kind: PingReplied, Ident: pingIdent(line),
			Reply: PingReply{Seq: seq, RTTNS: v, Replied: true, Time: pingTime(m[1], m[2])}}
	}
	if m := rePingNoAns.FindSubmatch(line); m != nil {
		seq, ok := parsePingSeq(m[3])
		if !ok {
			return PingLine{Kind: PingBad}
		}
		return PingLine{Kind: PingNoAnswer, Reply: PingReply{Seq: seq, Time: pingTime(m[1], m[2])}}
	}
	if m := rePingSummary.FindSubmatch(line); m != nil {
		pl := PingLine{Kind: PingSummary}
		pl.Sent, _ = strconv.Atoi(string(m[1]))
		pl.Received, _ = strconv.Atoi(string(m[2]))
		return pl
	}
	return PingLine{}
}

// pingIdent reads "ident=N" from a reply line (0 when absent or bad).
func pingIdent(line []byte) int {
	if !bytes.Contains(line, []byte(" ident=")) {
		return 0
	}
	m := reIdent.FindSubmatch(line)
	if m == nil {
		return 0
	}
	v, err := strconv.Atoi(string(m[1]))
	if err != nil || v > 0xffff {
		return 0
	}
	return v
}

func parsePing(f *File, r io.Reader) error {
	f.Tool, f.Identity = "ping", "seq"
	pending := map[uint16]int{} // seq → index of its "no answer yet" entry
	ended := false
	err := lines(f, r, func(n int, line []byte) {
		pl := ReadPingLine(line)
		rep := pl.Reply
		rep.Line = n
		switch pl.Kind {
		case PingReplied:
			if i, ok := pending[rep.Seq]; ok {
				delete(pending, rep.Seq)
				f.Replies[i] = rep
				return
			}
			f.Replies = append(f.Replies, rep)
		case PingNoAnswer:
			if _, dup := pending[rep.Seq]; dup {
				return
			}
			pending[rep.Seq] = len(f.Replies)
			f.Replies = append(f.Replies, rep)
		case PingSummary:
			f.Sent, f.Received = pl.Sent, pl.Received
			ended = true
		case PingBad:
			f.warnf(n, "bad ping line")
		}
	})
	f.Truncated = !ended
	return err
}

// parsePingSeq reads icmp_seq; iputils prints it wrapped to 16 bits, other
// pings may not, so larger values are reduced modulo 65536.
func parsePingSeq(b []byte) (uint16, bool) {
	v, err := strconv.ParseUint(string(b), 10, 64)
	return uint16(v), err == nil
}

// fastPingReply reads the usual reply line "[sec.usec] 64 bytes from IP:
// icmp_seq=N ttl=T time=X ms" without a regexp; anything else (DUP!,
// other layouts) goes to the regexps.
func fastPingReply(line []byte) (PingReply, bool) {
	var rep PingReply
	if len(line) < 2 || line[0] != '[' || bytes.Contains(line, []byte("DUP!")) {
		return rep, false
	}
	end := bytes.IndexByte(line, ']')
	if end < 0 || !bytes.Contains(line[end:], []byte(" bytes from ")) {
		return rep, false
	}
	sec, frac, _ := bytes.Cut(line[1:end], []byte("."))
	i := bytes.Index(line, []byte(" icmp_seq="))
	j := bytes.Index(line, []byte(" time="))
	if i < 0 || j < i {
		return rep, false
	}
	seqEnd := bytes.IndexByte(line[i+10:], ' ')
	if seqEnd < 0 {
		return rep, false
	}
	seq, ok := parsePingSeq(line[i+10 : i+10+seqEnd])
	if !ok {
		return rep, false
	}
	tv, unit, ok := bytes.Cut(line[j+6:], []byte(" "))
	if !ok || !bytes.HasPrefix(unit, []byte("ms")) {
		return rep, false
	}
	v, ok := msToNS(string(tv))
	if !ok {
		return rep, false
	}
	return PingReply{Seq: seq, RTTNS: v, Replied: true, Time: pingTime(sec, frac)}, true
}

// msToNS converts ping's "time=0.030" (ms) to ns.
func msToNS(s string) (int64, bool) {
	d, err := time.ParseDuration(s + "ms")
	return int64(d), err == nil
}
