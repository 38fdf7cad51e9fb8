package lab_test

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

// icmpKey identifies an echo exchange.
type icmpKey struct{ id, seq uint16 }

// hostTap records, on one host's eth0, when each echo request and reply
// passed (kernel timestamps of an AF_PACKET socket: transmit time for
// outgoing frames, receive time for incoming ones) — what the host tracers
// see at phy TX / phy RX.
type hostTap struct {
	fd       int
	req, rep map[icmpKey]int64
}

func openHostTap(b *testing.B, l *lab.Lab, node string) *hostTap {
	b.Helper()
	h := &hostTap{req: map[icmpKey]int64{}, rep: map[icmpKey]int64{}}
	err := l.Do(node, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		h.fd = fd
		idx, err := ifIndex(fd, lab.PhyInterface)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx})
	})
	if err != nil {
		b.Fatalf("capturing on %s eth0: %v", node, err)
	}
	return h
}

func ifIndex(fd int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// run reads until ctx ends.
func (h *hostTap) run(ctx context.Context) {
	defer unix.Close(h.fd)
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for ctx.Err() == nil {
		n, oobn, _, _, err := unix.Recvmsg(h.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		f := buf[:n]
		// Ethernet + IPv4 + ICMP echo.
		if n < 14+20+8 || f[12] != 0x08 || f[13] != 0x00 || f[14+9] != 1 {
			continue
		}
		icmp := f[14+int(f[14]&0x0f)*4:]
		if len(icmp) < 8 {
			continue
		}
		k := icmpKey{binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:])}
		ts, _ := wire.RxTimestamp(oob[:oobn])
		switch icmp[0] {
		case 8:
			h.req[k] = ts
		case 0:
			h.rep[k] = ts
		}
	}
}

// BenchmarkWireAtHosts measures what the host tracers will derive as the
// physical network, C+J = (sender reply RX − request TX) − (receiver reply
// TX − request RX) on the hosts' eth0, per ping (median over 100 pings at
// 10 ms), for a veth wire, the relay with 0 delay, and the relay with
// 0.5 ms each way (so C+J should grow by 1 ms), with both relay clocks.
func BenchmarkWireAtHosts(b *testing.B) {
	const delay = 500 * time.Microsecond
	cases := []struct {
		name string
		opts lab.Options
	}{
		{"veth-wire", lab.Options{}},
		{"relay-user", lab.Options{Wire: lab.WireRelay}},
		{"relay-user-0.5ms", lab.Options{WireDelay: delay}},
		{"relay-kernel", lab.Options{Wire: lab.WireRelay, WireClock: wire.ClockKernel}},
		{"relay-kernel-0.5ms", lab.Options{WireDelay: delay, WireClock: wire.ClockKernel}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c.opts.VMLink = lab.VMLinkTap
			l := labtest.Up(b, c.opts)
			ping(b, ctx, l, 3, "0.01")
			var med, p10, p90 time.Duration
			for range b.N {
				snd, rcv := openHostTap(b, l, lab.SenderHost), openHostTap(b, l, lab.ReceiverHost)
				cctx, stop := context.WithCancel(ctx)
				done := make(chan struct{}, 2)
				go func() { snd.run(cctx); done <- struct{}{} }()
				go func() { rcv.run(cctx); done <- struct{}{} }()
				ping(b, ctx, l, 100, "0.01")
				time.Sleep(100 * time.Millisecond)
				stop()
				<-done
				<-done
				var cj []time.Duration
				for k, t1 := range snd.req {
					t4, t2, t3 := snd.rep[k], rcv.req[k], rcv.rep[k]
					if t1 == 0 || t2 == 0 || t3 == 0 || t4 == 0 {
						continue
					}
					cj = append(cj, time.Duration((t4-t1)-(t3-t2)))
				}
				if len(cj) < 90 {
					b.Fatalf("only %d complete exchanges captured", len(cj))
				}
				slices.Sort(cj)
				med, p10, p90 = cj[len(cj)/2], cj[len(cj)/10], cj[len(cj)*9/10]
			}
			b.ReportMetric(float64(med.Nanoseconds())/1e3, "C+J-p50-µs")
			b.ReportMetric(float64(p10.Nanoseconds())/1e3, "C+J-p10-µs")
			b.ReportMetric(float64(p90.Nanoseconds())/1e3, "C+J-p90-µs")
		})
	}
}
