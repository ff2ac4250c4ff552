//! Attaching an entry program to a device: XDP and tcx through BPF links
//! (pinned, so they outlive the command), clsact filters where the kernel
//! has no tcx. Nothing here ever replaces a program emptcp did not create.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::{TcHookBuilder, TC_EGRESS, TC_INGRESS};
use serde::{Deserialize, Serialize};

use crate::policy::model::Hook;

/// How an XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// native where the driver has it, else generic
    #[default]
    Auto,
    Native,
    Generic,
}

/// How a BPF link holds its program (`show`'s "attach"; the state keeps
/// the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkHow {
    Tcx,
    XdpAuto,
    XdpNative,
    XdpGeneric,
    /// Planned: the journal names the link before it exists.
    Pending,
}

impl LinkHow {
    /// The XDP link of `mode`.
    pub fn xdp(mode: XdpMode) -> LinkHow {
        match mode {
            XdpMode::Auto => LinkHow::XdpAuto,
            XdpMode::Native => LinkHow::XdpNative,
            XdpMode::Generic => LinkHow::XdpGeneric,
        }
    }
}

impl std::fmt::Display for LinkHow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkHow::Tcx => "tcx",
            LinkHow::XdpAuto => "xdp-auto",
            LinkHow::XdpNative => "xdp-native",
            LinkHow::XdpGeneric => "xdp-generic",
            LinkHow::Pending => "pending",
        })
    }
}

/// What holds an entry program on its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Attachment {
    /// A BPF link (XDP or tcx), pinned at `pin`.
    Link { pin: String, how: LinkHow },
    /// A clsact filter (kernels without tcx).
    Clsact { handle: u32, priority: u32 },
}

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

fn errno_text(ret: i32) -> String {
    let e = std::io::Error::from_raw_os_error(-ret);
    match -ret {
        libc::EBUSY | libc::EEXIST => {
            format!("{e} (another XDP program is attached; emptcp does not replace it)")
        }
        libc::EOPNOTSUPP => format!("{e} (mode not supported by the driver)"),
        _ => e.to_string(),
    }
}

fn link_create(
    prog: &impl AsFd,
    ifindex: u32,
    attach_type: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> Result<OwnedFd, i32> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: prog's fd is valid for the call; opts is a properly sized,
    // zero-initialised options struct that outlives the call.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_fd().as_raw_fd(), ifindex as i32, attach_type, &opts)
    };
    if fd < 0 {
        return Err(fd);
    }
    // SAFETY: bpf_link_create returned a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pin_fd(fd: &OwnedFd, path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("pin path")?;
    // SAFETY: fd is a valid link fd and c a NUL-terminated path.
    let ret = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
    if ret < 0 {
        bail!(
            "failed to pin link at {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(-ret)
        );
    }
    Ok(())
}

/// Attaches `prog` (an entry program) to `ifindex` at `hook`; the link is
/// pinned at `pin`. Must run inside the device's network namespace.
pub fn attach(
    prog: &impl AsFd,
    hook: Hook,
    ifindex: u32,
    xdp_mode: XdpMode,
    pin: &Path,
    clsact_handle: u32,
) -> Result<Attachment> {
    match hook {
        Hook::Xdp => {
            let flags = match xdp_mode {
                XdpMode::Auto => 0,
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            };
            let fd = link_create(prog, ifindex, libbpf_sys::BPF_XDP, flags)
                .map_err(|r| anyhow::anyhow!("{}", errno_text(r)))?;
            pin_fd(&fd, pin)?;
            Ok(Attachment::Link {
                pin: pin.display().to_string(),
                how: LinkHow::xdp(xdp_mode),
            })
        }
        Hook::TcIngress | Hook::TcEgress => {
            let at = if hook == Hook::TcIngress {
                libbpf_sys::BPF_TCX_INGRESS
            } else {
                libbpf_sys::BPF_TCX_EGRESS
            };
            // tcx where the kernel has it (probed once, see features.rs)
            let tcx = if crate::kernel::features::get().tcx {
                link_create(prog, ifindex, at, 0)
            } else {
                Err(-libc::EOPNOTSUPP)
            };
            match tcx {
                Ok(fd) => {
                    pin_fd(&fd, pin)?;
                    Ok(Attachment::Link {
                        pin: pin.display().to_string(),
                        how: LinkHow::Tcx,
                    })
                }
                // no tcx (Linux < 6.6): a clsact filter instead
                Err(r) if -r == libc::EOPNOTSUPP => {
                    let mut b = TcHookBuilder::new(prog.as_fd());
                    b.ifindex(ifindex as i32)
                        .replace(false)
                        .handle(clsact_handle)
                        .priority(clsact_handle);
                    let mut h = b.hook(if hook == Hook::TcIngress {
                        TC_INGRESS
                    } else {
                        TC_EGRESS
                    });
                    let _ = h.create(); // clsact may exist already
                    h.attach().context("failed to attach clsact filter")?;
                    Ok(Attachment::Clsact {
                        handle: clsact_handle,
                        priority: clsact_handle,
                    })
                }
                Err(r) => bail!("{}", errno_text(r)),
            }
        }
    }
}

/// Makes an attachment made by `attach` run `prog` instead: one atomic
/// replacement (a link update; a clsact filter replaced in place), so
/// that every packet meets the old program or the new one. Must run
/// inside the device's network namespace for clsact filters.
pub fn replace(a: &Attachment, prog: &impl AsFd, hook: Hook, ifindex: u32) -> Result<()> {
    match a {
        Attachment::Link { pin, .. } => {
            let link =
                libbpf_rs::Link::open(pin).with_context(|| format!("failed to open link {pin}"))?;
            // SAFETY: both fds are valid for the call; no options.
            let ret = unsafe {
                libbpf_sys::bpf_link_update(
                    link.as_fd().as_raw_fd(),
                    prog.as_fd().as_raw_fd(),
                    std::ptr::null(),
                )
            };
            if ret < 0 {
                bail!(
                    "failed to update link {pin}: {}",
                    std::io::Error::from_raw_os_error(-ret)
                );
            }
            Ok(())
        }
        Attachment::Clsact { handle, priority } => {
            let mut b = TcHookBuilder::new(prog.as_fd());
            b.ifindex(ifindex as i32)
                .replace(true)
                .handle(*handle)
                .priority(*priority);
            let mut h = b.hook(if hook == Hook::TcIngress {
                TC_INGRESS
            } else {
                TC_EGRESS
            });
            h.attach().context("failed to replace clsact filter")?;
            Ok(())
        }
    }
}

/// Removes an attachment made by `attach`. Must run inside the device's
/// network namespace for clsact filters.
pub fn detach(
    a: &Attachment,
    hook: Hook,
    ifindex: u32,
    prog_fd: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<()> {
    match a {
        Attachment::Link { pin, .. } => {
            // the pin is the only reference left: removing it detaches
            match std::fs::remove_file(pin) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("failed to remove link pin {pin}")),
            }
        }
        Attachment::Clsact { handle, priority } => {
            let Some(fd) = prog_fd else { return Ok(()) };
            let mut b = TcHookBuilder::new(fd);
            b.ifindex(ifindex as i32)
                .handle(*handle)
                .priority(*priority);
            let mut h = b.hook(if hook == Hook::TcIngress {
                TC_INGRESS
            } else {
                TC_EGRESS
            });
            h.detach().context("failed to detach clsact filter")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state keeps a link's `how` as the words emptcp wrote before it
    /// was an enum: a state directory of then still reads, and `show`
    /// prints the same.
    #[test]
    fn link_how_keeps_its_words() {
        for (how, word) in [
            (LinkHow::Tcx, "tcx"),
            (LinkHow::XdpAuto, "xdp-auto"),
            (LinkHow::XdpNative, "xdp-native"),
            (LinkHow::XdpGeneric, "xdp-generic"),
            (LinkHow::Pending, "pending"),
        ] {
            let a = Attachment::Link {
                pin: "/sys/fs/bpf/x/tc/link-1".into(),
                how,
            };
            let json = serde_json::to_string(&a).unwrap();
            assert!(json.contains(&format!("\"how\":\"{word}\"")), "{json}");
            let old = format!(r#"{{"kind":"link","pin":"p","how":"{word}"}}"#);
            let back: Attachment = serde_json::from_str(&old).unwrap();
            assert_eq!(
                back,
                Attachment::Link {
                    pin: "p".into(),
                    how
                }
            );
            assert_eq!(how.to_string(), word);
        }
        let unknown = r#"{"kind":"link","pin":"p","how":"tc-magic"}"#;
        assert!(serde_json::from_str::<Attachment>(unknown).is_err());
    }
}
