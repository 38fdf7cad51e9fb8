package kernel

// What to tell the user when a kernel has no BTF: check (for each node)
// and the tracers (when they start) say the same.

// NoBTF names the missing kernel BTF of kernel release.
func NoBTF(release string) string {
	return "no /sys/kernel/btf/vmlinux: kernel " + release + " was built without CONFIG_DEBUG_INFO_BTF"
}

// BTFFileCommand is the command that makes kernel release's BTF file from
// its debuginfo (the file --btf and the env file's btf: take).
func BTFFileCommand(release string) string {
	return "pahole --btf_encode_detached=vmlinux.btf /usr/lib/debug/lib/modules/" + release + "/vmlinux"
}

// BTFLastResort is the fallback when no BTF file can be had for a kernel.
const BTFLastResort = "last resort: the origin BCC scripts (tools:, docs/run.md)"
