"""A program that does nothing (returns TCX_NEXT), attached through tcx like
emptcp's entry programs: the fixed cost of running any program at that hook
(bpf_stats included), the reference for the on-the-wire cost breakdown.

Straight bpf(2) calls through ctypes (Debian 12's bpftool 7.1 cannot attach
tcx). The link lives as long as its file descriptor: close() detaches, and
so does the end of this process.
"""

import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = 321  # x86_64
_BPF_PROG_LOAD = 5
_BPF_LINK_CREATE = 28
_PROG_TYPE_SCHED_CLS = 3
_TCX_EGRESS = 47
_TCX_INGRESS = 46
_CLONE_NEWNET = 0x40000000


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = _libc.syscall(_NR_BPF, cmd, buf, 128)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return fd


def load_noop(name="emb_noop"):
    """Load `r0 = -1 (TCX_NEXT); exit` as a SCHED_CLS program; returns its fd."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, -1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    ibuf = ctypes.create_string_buffer(insns)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16s", _PROG_TYPE_SCHED_CLS, 2, ctypes.addressof(ibuf),
                       ctypes.addressof(lic), 0, 0, 0, 0, 0, name.encode()[:15])
    return _bpf(_BPF_PROG_LOAD, attr)


class Noop:
    """The no-op program, attached (tcx) to each (netns, dev, egress?) given."""

    def __init__(self, points, name="emb_noop"):
        self.prog = load_noop(name)
        self.links = []
        try:
            for ns, dev, egress in points:
                self.links.append(self._attach(ns, dev, egress))
        except Exception:
            self.close()
            raise

    def _attach(self, ns, dev, egress):
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        other = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(other, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
            try:
                # sysfs shows the mounting namespace's devices: ask a socket
                ifindex = _libc.if_nametoindex(dev.encode())
                if ifindex == 0:
                    raise OSError(ctypes.get_errno(), f"no device {dev} in {ns}")
                attr = struct.pack("<IIII", self.prog, ifindex,
                                   _TCX_EGRESS if egress else _TCX_INGRESS, 0)
                return _bpf(_BPF_LINK_CREATE, attr)
            finally:
                _libc.setns(own, _CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(other)

    def close(self):
        for fd in self.links:
            os.close(fd)
        self.links = []
        if self.prog is not None:
            os.close(self.prog)
            self.prog = None
