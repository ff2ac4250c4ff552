//! Running device lookups and attachments inside a named network namespace
//! (like `ip -n NAME`), while the bpffs state stays in our mount namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

/// Where named namespaces live (iproute2's convention).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Inode of a network namespace, to notice a namespace replaced under a name.
pub fn netns_inode(name: Option<&str>) -> Result<u64> {
    let path = match name {
        Some(n) => format!("{NETNS_RUN_DIR}/{n}"),
        None => "/proc/self/ns/net".to_owned(),
    };
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("network namespace {}", name.unwrap_or("(current)")))?
        .ino())
}

/// Runs `f` inside the named network namespace (the current one for None),
/// and comes back to the original namespace whatever `f` returns.
pub fn run_in<T>(name: Option<&str>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(name) = name else {
        return f();
    };
    let target = File::open(format!("{NETNS_RUN_DIR}/{name}"))
        .with_context(|| format!("network namespace {name:?} not found (ip netns list)"))?;
    let home =
        File::open("/proc/thread-self/ns/net").context("failed to open own network namespace")?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("failed to enter network namespace {name:?}"))?;
    let out = f();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
        .context("failed to return to own network namespace")?;
    out
}

/// Index of a device in the current network namespace.
pub fn ifindex(dev: &str, netns: Option<&str>) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|e| {
        anyhow::anyhow!(
            "device {dev:?} not found{}: {}",
            netns
                .map(|n| format!(" in network namespace {n:?}"))
                .unwrap_or_default(),
            e.desc()
        )
    })
}
