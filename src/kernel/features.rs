//! What the running kernel offers emptcp, probed once per process: the
//! attach path for TC hooks, the TC data-segment path of set_backup, and
//! the helpers and map types stages rely on. `emptcp show -v` prints it.
//!
//! Probes read the kernel's BTF (no privilege needed) and, where BTF says
//! nothing, ask the kernel through libbpf's feature probes (which load a
//! tiny program, so they need CAP_BPF; unprivileged they answer "no").

use std::fmt;
use std::sync::OnceLock;

use libbpf_rs::btf::{types, Btf};
use serde::Serialize;

/// The kernel's features, as far as emptcp is concerned.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    /// `uname -r`
    pub release: String,
    /// Kernel BTF at /sys/kernel/btf/vmlinux (CO-RE relocations, kfuncs)
    pub btf: bool,
    /// tcx attach types (Linux 6.6): TC hooks through BPF links, else clsact
    pub tcx: bool,
    /// `bpf_cast_to_kern_ctx` kfunc (Linux 6.2): set_backup at TC adds
    /// MP_PRIO to data segments too (through a trimmed clone), else only
    /// to segments without payload
    pub kern_ctx: bool,
    /// `bpf_loop` helper (Linux 5.17); no built-in stage needs it
    pub bpf_loop: bool,
    /// BPF ring buffer (Linux 5.8): get_connect/get_subflow events
    pub ringbuf: bool,
    /// XDP metadata (`bpf_xdp_adjust_meta`): the per-packet context on XDP
    pub xdp_meta: bool,
    /// `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` (Linux 5.18): XDP stages
    /// copy option bytes through them, else by direct packet access (ctx.h;
    /// the choice is made in the objects at load time, by CO-RE)
    pub xdp_load_bytes: bool,
}

fn uname_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn helper(prog: libbpf_sys::bpf_prog_type, id: libbpf_sys::bpf_func_id) -> bool {
    // SAFETY: a plain feature probe with no options (NULL is allowed).
    unsafe { libbpf_sys::libbpf_probe_bpf_helper(prog, id, std::ptr::null()) == 1 }
}

fn map_type(t: libbpf_sys::bpf_map_type) -> bool {
    // SAFETY: as above.
    unsafe { libbpf_sys::libbpf_probe_bpf_map_type(t, std::ptr::null()) == 1 }
}

impl Features {
    /// Probes the running kernel (use [`get`] for the cached answer).
    pub fn probe() -> Features {
        let btf = Btf::from_vmlinux().ok();
        let tcx = btf
            .as_ref()
            .and_then(|b| b.type_by_name::<types::Enum<'_>>("bpf_attach_type"))
            .is_some_and(|e| {
                e.iter()
                    .any(|m| m.name.is_some_and(|n| n == "BPF_TCX_INGRESS"))
            });
        let kern_ctx = btf
            .as_ref()
            .and_then(|b| b.type_by_name::<types::Func<'_>>("bpf_cast_to_kern_ctx"))
            .is_some();
        Features {
            release: uname_release(),
            btf: btf.is_some(),
            tcx,
            kern_ctx,
            bpf_loop: helper(libbpf_sys::BPF_PROG_TYPE_XDP, libbpf_sys::BPF_FUNC_loop),
            ringbuf: map_type(libbpf_sys::BPF_MAP_TYPE_RINGBUF),
            xdp_meta: helper(
                libbpf_sys::BPF_PROG_TYPE_XDP,
                libbpf_sys::BPF_FUNC_xdp_adjust_meta,
            ),
            xdp_load_bytes: helper(
                libbpf_sys::BPF_PROG_TYPE_XDP,
                libbpf_sys::BPF_FUNC_xdp_load_bytes,
            ),
        }
    }

    /// The paths emptcp takes on this kernel, one line each.
    pub fn paths(&self) -> Vec<String> {
        let yes = |b: bool| if b { "yes" } else { "no" };
        vec![
            format!(
                "tc hooks: {}",
                if self.tcx {
                    "tcx links"
                } else {
                    "clsact filters (no tcx: Linux < 6.6)"
                }
            ),
            format!(
                "set_backup at tc: {}",
                if self.kern_ctx {
                    "pure ACKs and data segments (trimmed clone)"
                } else {
                    "pure ACKs only (no bpf_cast_to_kern_ctx: Linux < 6.2)"
                }
            ),
            format!(
                "xdp packet copies: {}",
                if self.xdp_load_bytes {
                    "bpf_xdp_load_bytes"
                } else {
                    "direct access (no bpf_xdp_load_bytes: Linux < 5.18)"
                }
            ),
            format!(
                "events ring buffer: {}",
                if self.ringbuf {
                    "yes"
                } else {
                    "no (get_connect/get_subflow cannot load)"
                }
            ),
            format!(
                "btf {}, xdp metadata {}, bpf_loop {}",
                yes(self.btf),
                yes(self.xdp_meta),
                yes(self.bpf_loop)
            ),
        ]
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {}", self.release)?;
        for p in self.paths() {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The running kernel's features, probed on first use.
pub fn get() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(Features::probe)
}

/// The oldest kernel the test suite runs on (scripts/kmatrix).
pub const OLDEST_TESTED: (u32, u32) = (5, 10);

/// (major, minor) of a `uname -r` release such as "6.1.0-57-amd64".
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// One line for `apply` and `check` on a kernel older than any the suite
/// runs on: it may still work (or fail with the verifier's reason).
pub fn kernel_warning(release: &str) -> Option<String> {
    let v = release_version(release)?;
    (v < OLDEST_TESTED).then(|| {
        format!(
            "Linux {release} is older than {}.{}, the oldest kernel emptcp is tested on: \
             a stage its verifier refuses fails with the verifier's reason",
            OLDEST_TESTED.0, OLDEST_TESTED.1
        )
    })
}

/// One line for `apply` when a policy asks for something this kernel does
/// in a narrower way: set_backup at TC without `bpf_cast_to_kern_ctx`
/// marks segments without payload only.
pub fn apply_warning(p: &crate::policy::model::Policy) -> Option<String> {
    use crate::policy::model::{Actor, Hook};
    let names: Vec<&str> = p
        .chains
        .iter()
        .filter(|c| c.hook != Hook::Xdp)
        .filter(|c| c.act.iter().any(|a| matches!(a, Actor::SetBackup { .. })))
        .map(|c| c.name.as_str())
        .collect();
    if names.is_empty() || get().kern_ctx {
        return None;
    }
    Some(format!(
        "chain {}: set_backup at tc adds MP_PRIO to segments without payload only \
         on this kernel ({}: no bpf_cast_to_kern_ctx, Linux < 6.2)",
        names.join(", "),
        get().release
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernels_get_one_warning_line() {
        assert_eq!(release_version("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(release_version("6.18.44"), Some((6, 18)));
        assert_eq!(release_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(release_version("unknown"), None);
        assert!(kernel_warning("5.10.0-46-amd64").is_none());
        assert!(kernel_warning("6.1.0-57-amd64").is_none());
        assert!(kernel_warning("6.12.117+deb12-amd64").is_none());
        assert!(kernel_warning("unknown").is_none());
        let w = kernel_warning("5.4.0-216-generic").unwrap();
        assert!(
            w.starts_with("Linux 5.4.0-216-generic is older than 5.10"),
            "{w}"
        );
        assert!(!w.contains('\n'));
    }
}
