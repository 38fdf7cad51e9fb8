package kvm

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/tools/vmexec/vm"
)

func TestNodeConfigMarshal(t *testing.T) {
	host := NodeConfig{
		Role: RoleHost, Hostname: "lab-sender-host", MgmtAddr: netip.MustParsePrefix("198.19.1.2/24"),
		MgmtMAC: MAC(1, 2, 2), DataMAC: MAC(1, 2, 1), VMMemoryMB: 256, VMAttempts: 3,
	}
	b, err := host.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "role=host\nhostname=lab-sender-host\nmgmt_addr=198.19.1.2/24\nmgmt_mac=52:54:00:01:02:02\n" +
		"data_mac=52:54:00:01:02:01\ndatapath=bridge\nvm_memory=256\nvm_attempts=3\n"
	if string(b) != want {
		t.Errorf("host config:\n%s\nwant:\n%s", b, want)
	}
	dp := host
	dp.Datapath, dp.DataMAC2, dp.Bond, dp.Overlay = DatapathOVS, MAC(1, 2, 3), true, "geneve"
	dp.UnderlayAddr, dp.UnderlayPeer = netip.MustParsePrefix("198.18.255.1/24"), netip.MustParseAddr("198.18.255.2")
	if b, err = dp.Marshal(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"datapath=ovs\n", "data_mac2=52:54:00:01:02:03\nbond=1\n", "overlay=geneve\nunderlay_addr=198.18.255.1/24\nunderlay_peer=198.18.255.2\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("ovs/bond/geneve host config lacks %q:\n%s", want, b)
		}
	}
	noMAC2, badOverlay, noUnderlay := dp, dp, dp
	noMAC2.DataMAC2 = nil
	badOverlay.Overlay = "gre; reboot"
	noUnderlay.UnderlayPeer = netip.Addr{}
	bad := []NodeConfig{noMAC2, badOverlay, noUnderlay,
		{Role: "router", Hostname: "x", MgmtAddr: host.MgmtAddr, MgmtMAC: host.MgmtMAC, DataMAC: host.DataMAC},
		{Role: RoleHost, Hostname: "a b", MgmtAddr: host.MgmtAddr, MgmtMAC: host.MgmtMAC, DataMAC: host.DataMAC},
		{Role: RoleHost, Hostname: "x", MgmtAddr: host.MgmtAddr, MgmtMAC: host.MgmtMAC, DataMAC: host.DataMAC, Datapath: "../../bin/sh"},
		{Role: RoleVM, Hostname: "x", MgmtAddr: host.MgmtAddr, MgmtMAC: host.MgmtMAC, DataMAC: host.DataMAC}, // no data address
		{Role: RoleHost, Hostname: "x", MgmtAddr: host.MgmtAddr, MgmtMAC: host.MgmtMAC, DataMAC: host.DataMAC, VMCPUs: -1},
	}
	for _, c := range bad {
		if _, err := c.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) accepted", c)
		}
	}
}

func TestParseConsole(t *testing.T) {
	log := "SeaBIOS junk\r\npingpath: booting host h (6.12)\r\npingpath: node ready\r\n" +
		"pingpath: vm starting (attempt 1, qemu pid 190)\r\n"
	c := parseConsole([]byte(log))
	if !c.NodeReady || c.VMReady || c.Failed != "" || len(c.Progress) != 3 {
		t.Errorf("booting host: %+v", c)
	}
	c = parseConsole([]byte(log + "pingpath: vm ready (attempt 1, 31000 ms)\n"))
	if !c.VMReady {
		t.Errorf("vm ready not seen: %+v", c)
	}
	c = parseConsole([]byte("[    1.2] Kernel panic - not syncing: Fatal exception in interrupt\n"))
	if !strings.HasPrefix(c.Failed, "[    1.2] Kernel panic") {
		t.Errorf("panic not seen: %+v", c)
	}
	c = parseConsole([]byte("pingpath: FAILED: modprobe -a kvm_amd\n"))
	if c.Failed != "pingpath: FAILED: modprobe -a kvm_amd" {
		t.Errorf("init failure not seen: %+v", c)
	}
}

func TestHostArgs(t *testing.T) {
	h := Host{
		Name: "h", Image: Image{Disk: "/c/disk,1.img", Vmlinuz: "/c/vmlinuz", Initrd: "/c/initrd"},
		MemoryMB: 768, CPUs: 2, Console: "/d/console.log", DataFd: 3, MgmtFd: 4,
		DataMAC: MAC(1, 2, 1), MgmtMAC: MAC(1, 2, 2),
		FwCfg: map[string]string{FwVMNode: "/d/vm-node", FwNode: "/d/node"},
	}
	args := strings.Join(h.Args(), " ")
	for _, want := range []string{
		"-accel tcg,thread=multi", "-cpu qemu64,+svm,+npt,-cx16", "file=/c/disk,,1.img,if=virtio,format=raw,readonly=on",
		"tap,id=data,fd=3", "mac=52:54:00:01:02:01", "-fw_cfg name=opt/pingpath/node,file=/d/node -fw_cfg name=opt/pingpath/vm/node,file=/d/vm-node",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "data2") {
		t.Errorf("a second data NIC without DataFd2:\n%s", args)
	}
	h.DataFd2, h.DataMAC2 = 5, MAC(1, 2, 3)
	if args2 := strings.Join(h.Args(), " "); !strings.Contains(args2, "-netdev tap,id=data2,fd=5 -device virtio-net-pci,netdev=data2,mac=52:54:00:01:02:03,romfile=") {
		t.Errorf("no second data NIC:\n%s", args2)
	}
	if strings.Contains(args, "accel kvm") {
		t.Error("outer hosts must never use -accel kvm on this machine")
	}
}

func TestImageKey(t *testing.T) {
	k := vm.Kernel{Series: "6.12", Release: "6.12.9-cloud-amd64"}
	a, err := ImageSpec{Kernel: k}.Key()
	if err != nil {
		t.Fatal(err)
	}
	same, _ := ImageSpec{Kernel: k, Suite: DefaultSuite, Mirror: DefaultMirror}.Key()
	other, _ := ImageSpec{Kernel: vm.Kernel{Series: "6.1", Release: "6.1.0-9-cloud-amd64"}}.Key()
	extra, _ := ImageSpec{Kernel: k, ExtraPackages: []string{"bpfcc-tools"}}.Key()
	if a != same || a == other || a == extra || len(a) != 16 {
		t.Errorf("keys: default %s, explicit defaults %s, other kernel %s, extra package %s", a, same, other, extra)
	}
	// The BCC image: its packages and the headers each give another key,
	// and so does another version of the headers.
	bccPkgs := ImageSpec{Kernel: k, ExtraPackages: BCCPackages()}
	noHeaders, _ := bccPkgs.Key()
	bccPkgs.Headers = &Headers{Root: "/x", Version: "6.12.9-1~bpo12+1"}
	bcc, _ := bccPkgs.Key()
	bccPkgs.Headers = &Headers{Root: "/elsewhere", Version: "6.12.9-1~bpo12+1"}
	moved, _ := bccPkgs.Key()
	bccPkgs.Headers = &Headers{Root: "/x", Version: "6.12.9-2~bpo12+1"}
	newer, _ := bccPkgs.Key()
	if noHeaders == a || bcc == noHeaders || bcc != moved || newer == bcc {
		t.Errorf("keys: default %s, bcc packages %s, with headers %s (moved %s, newer %s)", a, noHeaders, bcc, moved, newer)
	}
	pkgs, err := ImageSpec{ExtraPackages: []string{"openssh-server", "bpfcc-tools"}}.Packages()
	if err != nil || !slices.Contains(pkgs, "qemu-system-x86") || slices.Index(pkgs, "bpfcc-tools") != len(pkgs)-1 ||
		len(slices.Compact(slices.Sorted(slices.Values(pkgs)))) != len(pkgs) {
		t.Errorf("packages %v, %v", pkgs, err)
	}
	if _, err := (ImageSpec{ExtraPackages: []string{"x; rm -rf /"}}).Packages(); err == nil {
		t.Error("a bad package name was accepted")
	}
}

func TestLoadHeaders(t *testing.T) {
	const rel = "6.12.9-cloud-amd64"
	dir := t.TempDir()
	if _, err := loadHeaders(dir, rel); err == nil {
		t.Fatal("an empty directory gave headers")
	}
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte("6.12.9-1~bpo12+1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "root", "lib", "modules", rel)
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := loadHeaders(dir, rel); err == nil {
		t.Fatal("headers without lib/modules/RELEASE/build were accepted")
	}
	// build is a link to an absolute path inside the image, dangling here.
	if err := os.Symlink("/usr/src/linux-headers-"+rel, filepath.Join(mods, "build")); err != nil {
		t.Fatal(err)
	}
	h, err := loadHeaders(dir, rel)
	if err != nil || h.Version != "6.12.9-1~bpo12+1" || h.Root != filepath.Join(dir, "root") {
		t.Fatalf("loadHeaders: %+v, %v", h, err)
	}
	if _, err := loadHeaders(dir, "6.12.10-cloud-amd64"); err == nil {
		t.Error("headers of another release were accepted")
	}
}
