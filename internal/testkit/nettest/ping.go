package nettest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PingOptions describe a run of ICMP echo requests.
type PingOptions struct {
	Dst      netip.Addr
	ID       uint16        // ICMP echo identifier
	FirstSeq uint16        // sequence of the first request (wraps at 65536)
	Count    int           // number of requests
	Interval time.Duration // between requests; 0 = as fast as possible
	Payload  int           // bytes after the ICMP header (default 56, like ping)
	// Wait is how long to wait for replies after the last request
	// (default 1 s).
	Wait time.Duration
	// Sendmsg sends with sendmsg(2) instead of sendto(2).
	Sendmsg bool
}

// Reply is one echo reply matched to its request.
type Reply struct {
	Seq uint16
	RTT time.Duration
}

// PingResult is what a Ping run saw.
type PingResult struct {
	Sent    int
	Replies []Reply  // in arrival order, one per answered seq
	Lost    []uint16 // seqs without a reply
	Dups    int      // replies for a seq already answered
}

// Ping sends opts.Count echo requests with id opts.ID from inside n with a raw
// ICMP socket and collects the replies. It returns when every reply arrived or
// opts.Wait after the last request, or when ctx ends.
func (n *Netns) Ping(ctx context.Context, opts PingOptions) (*PingResult, error) {
	if !opts.Dst.Is4() {
		return nil, fmt.Errorf("ping %s: only IPv4", opts.Dst)
	}
	if opts.Count <= 0 {
		return nil, errors.New("ping: count must be positive")
	}
	if opts.Payload == 0 {
		opts.Payload = 56
	}
	if opts.Wait == 0 {
		opts.Wait = time.Second
	}
	fd, err := n.rawICMPSocket()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)

	var mu sync.Mutex
	sentAt := make(map[uint16]time.Time, opts.Count)
	res := &PingResult{}
	answered := map[uint16]bool{}
	done := make(chan struct{})
	allAnswered := make(chan struct{})
	go func() {
		defer close(done)
		receiveReplies(fd, opts.Dst, opts.ID, func(seq uint16, at time.Time) bool {
			mu.Lock()
			defer mu.Unlock()
			t0, ok := sentAt[seq]
			if !ok {
				return false
			}
			if answered[seq] {
				res.Dups++
				return false
			}
			answered[seq] = true
			res.Replies = append(res.Replies, Reply{Seq: seq, RTT: at.Sub(t0)})
			if len(answered) == opts.Count {
				close(allAnswered)
				return true
			}
			return false
		})
	}()

	sa := &unix.SockaddrInet4{Addr: opts.Dst.As4()}
	pkt := make([]byte, 8+opts.Payload)
	start := time.Now()
	for i := 0; i < opts.Count; i++ {
		if ctx.Err() != nil {
			break
		}
		if opts.Interval > 0 {
			// Pace against the start time so the rate holds at high rates.
			if d := time.Until(start.Add(time.Duration(i) * opts.Interval)); d > 0 {
				time.Sleep(d)
			}
		}
		seq := opts.FirstSeq + uint16(i)
		EchoRequest(pkt, opts.ID, seq)
		mu.Lock()
		sentAt[seq] = time.Now()
		mu.Unlock()
		if err := sendRetry(fd, pkt, sa, opts.Sendmsg); err != nil {
			unix.Close(fd)
			<-done
			return nil, fmt.Errorf("ping %s seq %d: %w", opts.Dst, seq, err)
		}
		res.Sent++
	}
	select {
	case <-allAnswered:
	case <-time.After(opts.Wait):
	case <-ctx.Done():
	}
	_ = unix.Shutdown(fd, unix.SHUT_RDWR)
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < res.Sent; i++ {
		if seq := opts.FirstSeq + uint16(i); !answered[seq] {
			res.Lost = append(res.Lost, seq)
		}
	}
	return res, nil
}

// sendRetry sends pkt, waiting briefly when the socket buffer is full (at
// flood rates the raw socket's send buffer can fill up).
func sendRetry(fd int, pkt []byte, sa unix.Sockaddr, sendmsg bool) error {
	for tries := 0; ; tries++ {
		var err error
		if sendmsg {
			_, err = unix.SendmsgN(fd, pkt, nil, sa, 0)
		} else {
			err = unix.Sendto(fd, pkt, 0, sa)
		}
		if err == nil {
			return nil
		}
		if (errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN)) && tries < 1000 {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		return err
	}
}

func (n *Netns) rawICMPSocket() (int, error) {
	fd := -1
	err := n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("netns %s: opening raw ICMP socket: %w", n.Name, err)
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	// A receive timeout lets the reader notice shutdown promptly.
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return fd, nil
}

// receiveReplies reads IPv4 packets from a raw ICMP socket and calls got for
// each echo reply from src with identifier id, until got returns true or the
// socket is shut down.
func receiveReplies(fd int, src netip.Addr, id uint16, got func(seq uint16, at time.Time) bool) {
	buf := make([]byte, 65536)
	want := src.As4()
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		at := time.Now()
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if n == 0 {
			return // shut down
		}
		p := buf[:n]
		if len(p) < 20 || p[0]>>4 != 4 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 || [4]byte(p[12:16]) != want {
			continue
		}
		icmp := p[ihl:]
		if icmp[0] != 0 || binary.BigEndian.Uint16(icmp[4:]) != id {
			continue
		}
		if got(binary.BigEndian.Uint16(icmp[6:]), at) {
			return
		}
	}
}

// EchoRequest fills pkt (ICMP header + payload) with an echo request and its
// checksum.
func EchoRequest(pkt []byte, id, seq uint16) {
	pkt[0], pkt[1] = 8, 0
	pkt[2], pkt[3] = 0, 0
	binary.BigEndian.PutUint16(pkt[4:], id)
	binary.BigEndian.PutUint16(pkt[6:], seq)
	for i := 8; i < len(pkt); i++ {
		pkt[i] = byte(i)
	}
	binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// UDPFlood sends UDP datagrams from inside n to dst:port until ctx ends or
// count datagrams were sent (count 0 = until ctx ends). It returns how many
// were sent. Nothing needs to listen: the traffic exists to be filtered out.
func (n *Netns) UDPFlood(ctx context.Context, dst netip.AddrPort, count int) (int, error) {
	return UDPFloodFrom(ctx, n.Do, n.Name, dst, count)
}

// UDPFloodFrom is UDPFlood from the namespace do runs functions in (named
// where in errors), e.g. a lab node's.
func UDPFloodFrom(ctx context.Context, do func(func() error) error, where string, dst netip.AddrPort, count int) (int, error) {
	fd := -1
	err := do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netns %s: opening UDP socket: %w", where, err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	payload := make([]byte, 64)
	sent := 0
	for count == 0 || sent < count {
		if sent%256 == 0 && ctx.Err() != nil {
			break
		}
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNREFUSED) {
				if ctx.Err() != nil {
					break
				}
				continue
			}
			return sent, fmt.Errorf("netns %s: sending UDP to %s: %w", where, dst, err)
		}
		sent++
	}
	return sent, nil
}
