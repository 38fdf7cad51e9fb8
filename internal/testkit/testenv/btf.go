package testenv

import "os"

// BTF returns the kernel BTF file a tracer test should give its tracers as
// --btf (PINGPATH_TEST_BTF), "" for the kernel's own. The kernel matrix's
// btf-file rung hides /sys/kernel/btf in the guest and sets it to the copy
// of the kernel's BTF taken before (tools/vmexec/vm, Config.HideKernelBTF).
func BTF() string { return os.Getenv("PINGPATH_TEST_BTF") }

// ProbeReadCompat tells whether a tracer test should force the old
// bpf_probe_read helper (--probe-read-compat; PINGPATH_TEST_PROBE_READ_COMPAT=1:
// the kernel matrix's btf-file rung, which plays a kernel older than the
// _kernel/_user helpers as well as one without BTF).
func ProbeReadCompat() bool { return os.Getenv("PINGPATH_TEST_PROBE_READ_COMPAT") == "1" }
