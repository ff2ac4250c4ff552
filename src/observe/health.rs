//! Whether an attach point recorded in the state is really running: the
//! kernel is the source of truth. A point is healthy when its namespace
//! and device are the ones emptcp attached to (by namespace cookie and
//! ifindex, not by name), its link or clsact filter still holds our program
//! on that device (its walk program, or its entry program where the chains
//! run by tail calls), and every slot of its layout holds a program.
//! Anything else is drift, named plainly for `show` and repaired by
//! `apply`.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::{TcHookBuilder, TC_EGRESS, TC_INGRESS};
use serde::Serialize;

use crate::kernel::attach::Attachment;
use crate::kernel::netns;
use crate::policy::model::Hook;
use crate::runtime::state::{AttachPoint, StateDir};
use crate::runtime::store;

/// What is wrong with an attach point, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Ok,
    NetnsGone,
    NetnsReplaced,
    DeviceGone,
    DeviceReplaced,
    /// The link or filter is gone or detached while the device is there.
    DetachedBySomeoneElse,
    EntryGone,
    /// A slot of the layout holds no program (a stage would miss).
    SlotEmpty(u16),
}

impl Health {
    pub fn is_ok(&self) -> bool {
        *self == Health::Ok
    }

    /// Drift that `apply` can repair by attaching again (the device is
    /// there, under its name).
    pub fn reattachable(&self) -> bool {
        matches!(
            self,
            Health::DeviceReplaced
                | Health::NetnsReplaced
                | Health::DetachedBySomeoneElse
                | Health::EntryGone
        )
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ok => write!(f, "ok"),
            Health::NetnsGone => write!(f, "netns gone"),
            Health::NetnsReplaced => write!(f, "netns replaced"),
            Health::DeviceGone => write!(f, "device gone"),
            Health::DeviceReplaced => write!(f, "device replaced"),
            Health::DetachedBySomeoneElse => write!(f, "detached by someone else"),
            Health::EntryGone => write!(f, "entry program gone"),
            Health::SlotEmpty(s) => write!(f, "stage slot {s} empty"),
        }
    }
}

/// The cookie of the current thread's network namespace (Linux >= 5.14).
pub fn netns_cookie() -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket syscall; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len outlive the call and len is v's size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            &mut v as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    (r == 0).then_some(v)
}

/// The namespace and device `p` names, as they are now.
fn place(p: &AttachPoint) -> Result<(), Health> {
    if let Some(n) = &p.netns {
        match netns::netns_inode(Some(n)) {
            Err(_) => return Err(Health::NetnsGone),
            Ok(ino) if p.netns_cookie.is_none() && ino != p.netns_ino => {
                return Err(Health::NetnsReplaced)
            }
            Ok(_) => {}
        }
    }
    let now = netns::run_in(p.netns.as_deref(), || {
        Ok((netns_cookie(), netns::ifindex(&p.dev, None).ok()))
    });
    let Ok((cookie, idx)) = now else {
        return Err(Health::NetnsGone);
    };
    if p.netns_cookie.is_some() && cookie.is_some() && cookie != p.netns_cookie {
        return Err(Health::NetnsReplaced);
    }
    match idx {
        None => Err(Health::DeviceGone),
        Some(i) if i != p.ifindex => Err(Health::DeviceReplaced),
        Some(_) => Ok(()),
    }
}

/// The program the point's link or filter runs on its device, if any.
/// `entry` is the point's entry program (a clsact filter is found by it).
fn attached_prog(p: &AttachPoint, entry: BorrowedFd<'_>) -> Option<u32> {
    match &p.attachment {
        Attachment::Link { pin, .. } => {
            let link = libbpf_rs::Link::open(pin).ok()?;
            let info = LinkInfo::from_fd(link.as_fd()).ok()?;
            let ifindex = match info.info {
                LinkTypeInfo::Xdp(x) => x.ifindex,
                LinkTypeInfo::Tcx(t) => t.ifindex,
                _ => return None,
            };
            (ifindex == p.ifindex).then_some(info.prog_id)
        }
        Attachment::Clsact { handle, priority } => netns::run_in(p.netns.as_deref(), || {
            let mut b = TcHookBuilder::new(entry);
            b.ifindex(p.ifindex as i32)
                .handle(*handle)
                .priority(*priority);
            let mut h = b.hook(if p.hook == Hook::TcIngress {
                TC_INGRESS
            } else {
                TC_EGRESS
            });
            Ok(h.query().ok())
        })
        .ok()
        .flatten(),
    }
}

/// Checks one attach point against the kernel.
pub fn check(sd: &StateDir, p: &AttachPoint) -> Health {
    if let Err(h) = place(p) {
        return h;
    }
    let family = p.hook.family();
    let Ok(fd) = libbpf_rs::Program::fd_from_pinned_path(store::entry_pin(sd, family, p.id)) else {
        return Health::EntryGone;
    };
    if libbpf_rs::Program::id_from_fd(fd.as_fd()).is_err() {
        return Health::EntryGone;
    }
    // the point's walk program where its chains walk, else the entry
    let want = match store::hook_prog(sd, p) {
        Ok(h) => libbpf_rs::Program::id_from_fd(h.as_fd()).ok(),
        // an empty walk slot: told below
        Err(_) => None,
    };
    if want.is_some() && attached_prog(p, fd.as_fd()) != want {
        return Health::DetachedBySomeoneElse;
    }
    if let Ok(progs) = store::pinned_map(sd, family, "emptcp_progs") {
        // a walk program in its slot; else a program per stage slot
        let n = if p.walk { 1 } else { usize::MAX };
        for s in p.slots().take(n) {
            if store::slot_prog_id(&progs, s as u32).is_none() {
                return Health::SlotEmpty(s);
            }
        }
        let first = p.first_slot();
        if first != 0 {
            let head = crate::abi::head_slot(p.id);
            if store::slot_prog_id(&progs, head) != store::slot_prog_id(&progs, first as u32) {
                return Health::SlotEmpty(head as u16);
            }
        }
    }
    Health::Ok
}
