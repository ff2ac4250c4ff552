//! Running device lookups and attachments inside a named network namespace
//! (like `ip -n NAME`), while the bpffs state stays in our mount namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::cli::text::quoted;

/// Where named namespaces live (iproute2's convention).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Inode of a network namespace, to notice a namespace replaced under a name.
pub fn netns_inode(name: Option<&str>) -> Result<u64> {
    let path = match name {
        Some(n) => format!("{NETNS_RUN_DIR}/{n}"),
        None => "/proc/self/ns/net".to_owned(),
    };
    Ok(std::fs::metadata(&path)
        .with_context(|| match name {
            Some(n) => format!("network namespace {}", quoted(n)),
            None => "network namespace (current)".to_owned(),
        })?
        .ino())
}

/// Runs `f` inside the named network namespace (the current one for None),
/// and comes back to the original namespace whatever `f` returns.
pub fn run_in<T>(name: Option<&str>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(name) = name else {
        return f();
    };
    let target = File::open(format!("{NETNS_RUN_DIR}/{name}")).with_context(|| {
        format!(
            "network namespace {} not found (ip netns list)",
            quoted(name)
        )
    })?;
    let home =
        File::open("/proc/thread-self/ns/net").context("failed to open own network namespace")?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("failed to enter network namespace {}", quoted(name)))?;
    let out = f();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
        .context("failed to return to own network namespace")?;
    out
}

/// Index of a device in the current network namespace.
pub fn ifindex(dev: &str, netns: Option<&str>) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|e| {
        anyhow::anyhow!(
            "device {} not found{}: {}",
            quoted(dev),
            netns
                .map(|n| format!(" in network namespace {}", quoted(n)))
                .unwrap_or_default(),
            e.desc()
        )
    })
}

/// The longest name a file under NETNS_RUN_DIR can have (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Checks a network namespace name as `ip netns` takes it: a file name
/// under NETNS_RUN_DIR, never a path (`.`, `..`, a `/` or a NUL would
/// point elsewhere), at most NAME_MAX bytes. The one check of the CLI's
/// `-n` and the policy's `netns`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= NAME_MAX
        && !name.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network namespace name {}: not a name (ip netns list)",
            quoted(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_names_not_paths() {
        for good in [
            "client",
            "emptcp-e2e-1-0-A",
            "a.b",
            "...",
            "x y",
            &"n".repeat(NAME_MAX),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/run/netns/x",
            "a\0b",
            &"n".repeat(NAME_MAX + 1),
        ] {
            let e = check_name(bad).expect_err(bad);
            assert!(e.starts_with("network namespace name \""), "{e}");
            assert!(e.ends_with("\": not a name (ip netns list)"), "{e}");
            assert!(e.len() < 160, "{e}");
        }
        assert_eq!(
            check_name("a\0b").unwrap_err(),
            "network namespace name \"a\\0b\": not a name (ip netns list)"
        );
    }
}
