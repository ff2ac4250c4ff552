//! The state directory: a bpffs directory that is emptcp's or nothing.
//!
//! Every command checks it, every time, before touching anything in it:
//! on bpffs, not the root of a bpffs mount, no symlink on the way, a
//! directory owned by root with mode 0700, and either empty or holding
//! emptcp's `state` map. Anything else is refused in one line and left
//! exactly as it was. emptcp removes only what it created, by name; it
//! never deletes a path recursively.
//!
//! Layout (every entry created by emptcp):
//! ```text
//! DIR/state                       the state document (state.rs)
//! DIR/emptcp_g_*                  maps shared by both hook families (events)
//! DIR/reader-N/                   lock of `emptcp events` reader N
//! DIR/run/                        lock of the `emptcp run` serving DIR
//! DIR/{xdp,tc}/emptcp_*           maps of a hook family
//! DIR/{xdp,tc}/entry-N, link-N    entry program and link of attach point N
//! ```
//!
//! The lock is an flock on the directory. A `detach --all` removes the
//! directory while others may wait for its lock, so whoever gets the lock
//! checks that the path still names the directory it locked, and starts
//! over when it does not.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle, MapType};
use nix::fcntl::{Flock, FlockArg};

use crate::cli::text::quoted;

pub const DEFAULT_DIR: &str = "/sys/fs/bpf/emptcp";

/// Name of the state map (state.rs) and its pin.
pub const STATE_PIN: &str = "state";
pub const STATE_MAP_NAME: &str = "emptcp_state";
/// Size of the state map's one value: the document's length and its JSON.
pub const STATE_VALUE_SIZE: u32 = 1 << 20;

/// The two hook families, each a subdirectory.
pub const FAMILIES: [&str; 2] = ["xdp", "tc"];

/// The directory `emptcp run` holds an flock on for as long as it runs:
/// one service per state directory. It is not the directory's own lock,
/// which every command takes only for the moment of its change.
pub const RUN_DIR: &str = "run";

/// The state directory, locked for the lifetime of this value.
pub struct StateDir {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn refuse(dir: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("state directory {}: {why}", quoted(&dir.to_string_lossy()))
}

/// `dir` made absolute, without `.`/`..`, with no symlink on the way.
fn checked_path(dir: &Path) -> Result<PathBuf> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .context("failed to read the current directory")?
            .join(dir)
    };
    let mut clean = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refuse(dir, "must not contain `..`"))
            }
        }
    }
    if clean == Path::new("/") {
        return Err(refuse(dir, "is the root directory"));
    }
    // no following of links at any step
    let mut at = PathBuf::from("/");
    for c in clean.components().skip(1) {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(
                    dir,
                    format!("{} is a symlink (emptcp follows none)", at.display()),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "cannot read the state directory {}: {e} (it is root-only: run as root)",
                clean.display()
            ),
            Err(e) => return Err(refuse(dir, format!("cannot read {}: {e}", at.display()))),
        }
    }
    Ok(clean)
}

/// True when `dir` holds a `state` pin that is emptcp's state map.
fn holds_state_map(dir: &Path) -> bool {
    let p = dir.join(STATE_PIN);
    match libbpf_rs::MapHandle::from_pinned_path(&p) {
        Ok(m) => m.name().to_str() == Some(STATE_MAP_NAME),
        Err(_) => false,
    }
}

/// Refuses a directory inside another state directory (`A/tc`).
fn refuse_nested(shown_dir: &Path, parent: &Path) -> Result<()> {
    if holds_state_map(parent) {
        return Err(refuse(
            shown_dir,
            format!(
                "is inside the emptcp state directory {}",
                quoted(&parent.to_string_lossy())
            ),
        ));
    }
    Ok(())
}

/// Checks an existing directory: bpffs, not a mount root, root's 0700,
/// emptcp's or empty, not inside another state directory.
fn check_existing(shown_dir: &Path, dir: &Path, m: &fs::Metadata) -> Result<()> {
    if !m.is_dir() {
        return Err(refuse(shown_dir, "not a directory"));
    }
    if !is_bpffs(dir) {
        return Err(refuse(
            shown_dir,
            "not on a bpffs mount (use a directory under /sys/fs/bpf)",
        ));
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let pm = fs::symlink_metadata(parent)
        .map_err(|e| refuse(shown_dir, format!("cannot read its parent: {e}")))?;
    if pm.dev() != m.dev() {
        return Err(refuse(
            shown_dir,
            "is the root of a bpffs mount, shared with other tools (use a directory under it)",
        ));
    }
    if m.uid() != 0 || m.mode() & 0o7777 != 0o700 {
        return Err(refuse(
            shown_dir,
            format!(
                "owned by uid {} with mode {:04o}, not root's 0700: not emptcp's",
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    refuse_nested(shown_dir, parent)?;
    if !holds_state_map(dir) {
        let mut rd = fs::read_dir(dir).map_err(|e| refuse(shown_dir, e))?;
        if let Some(Ok(e)) = rd.next() {
            return Err(refuse(
                shown_dir,
                format!(
                    "not an emptcp state directory (it holds {} and no emptcp state)",
                    quoted(&e.file_name().to_string_lossy())
                ),
            ));
        }
    }
    Ok(())
}

/// Makes `dir` (its parent must be a bpffs directory; /sys/fs/bpf is
/// mounted when it is not).
fn create(shown_dir: &Path, dir: &Path) -> Result<()> {
    // one check-and-mount at a time in this process: a second mount would
    // cover what the first thread already made under it
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) {
        if parent != Path::new("/sys/fs/bpf") {
            return Err(refuse(
                shown_dir,
                format!(
                    "{} is not on a bpffs mount (use a directory under /sys/fs/bpf)",
                    parent.display()
                ),
            ));
        }
        eprintln!("emptcp: mounting bpffs at /sys/fs/bpf");
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .context("failed to mount bpffs at /sys/fs/bpf")?;
    }
    refuse_nested(shown_dir, parent)?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // the umask can only have taken bits away; say exactly 0700
            nix::sys::stat::fchmodat(
                None,
                dir,
                nix::sys::stat::Mode::from_bits_truncate(0o700),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            )
            .with_context(|| format!("failed to set mode 0700 on {}", dir.display()))?;
            Ok(())
        }
        // another emptcp made it first: it is checked like any existing one
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(refuse(shown_dir, format!("failed to create it: {e}"))),
    }
}

/// Opens the directory itself (never a link) and locks it.
fn lock(dir: &Path, exclusive: bool, wait: bool) -> Result<Option<Flock<File>>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .with_context(|| format!("failed to open {}", dir.display()))?;
    let (now, later) = if exclusive {
        (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive)
    } else {
        (FlockArg::LockSharedNonblock, FlockArg::LockShared)
    };
    match Flock::lock(f, now) {
        Ok(l) => Ok(Some(l)),
        Err(_) if !wait => Ok(None),
        Err((f, _)) => {
            eprintln!("emptcp: waiting for another emptcp on {}", dir.display());
            Flock::lock(f, later)
                .map(Some)
                .map_err(|(_, e)| e)
                .with_context(|| format!("failed to lock {}", dir.display()))
        }
    }
}

/// True when the path still names the directory `l` holds.
fn still_there(dir: &Path, l: &Flock<File>) -> bool {
    let Ok(held) = l.metadata() else { return false };
    match fs::symlink_metadata(dir) {
        Ok(m) => m.dev() == held.dev() && m.ino() == held.ino() && m.is_dir(),
        Err(_) => false,
    }
}

impl StateDir {
    /// Opens (creating if `create`) and locks the state directory for a
    /// change. Returns None when it does not exist and `create` is false.
    pub fn open(dir: &Path, create_it: bool) -> Result<Option<StateDir>> {
        Self::open_with(dir, create_it, true, true)
    }

    /// Opens an existing state directory to read it (show, stats, events):
    /// a shared lock, so readers never wait for each other and never see a
    /// change half made. With `wait` false a directory being changed right
    /// now gives None, like a missing one (the caller keeps what it has).
    pub fn open_shared(dir: &Path, wait: bool) -> Result<Option<StateDir>> {
        Self::open_with(dir, false, false, wait)
    }

    fn open_with(
        shown_dir: &Path,
        create_it: bool,
        exclusive: bool,
        wait: bool,
    ) -> Result<Option<StateDir>> {
        let dir = checked_path(shown_dir)?;
        // a directory removed while we waited for its lock: start over
        for _ in 0..100 {
            match fs::symlink_metadata(&dir) {
                Ok(m) => check_existing(shown_dir, &dir, &m)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !create_it {
                        return Ok(None);
                    }
                    create(shown_dir, &dir)?;
                    let m = fs::symlink_metadata(&dir).map_err(|e| refuse(shown_dir, e))?;
                    check_existing(shown_dir, &dir, &m)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    bail!(
                        "cannot read the state directory {}: {e} (it is root-only: run as root)",
                        dir.display()
                    )
                }
                Err(e) => return Err(refuse(shown_dir, e)),
            }
            let Some(l) = lock(&dir, exclusive, wait)? else {
                return Ok(None);
            };
            if !still_there(&dir, &l) {
                continue;
            }
            let sd = StateDir { dir, _lock: l };
            if exclusive {
                // the marker first: from here on the directory is emptcp's
                sd.state_map(true)?;
                sd.make_family_dirs()?;
            }
            return Ok(Some(sd));
        }
        Err(refuse(shown_dir, "keeps being removed and re-created"))
    }

    fn make_family_dirs(&self) -> Result<()> {
        for sub in FAMILIES {
            let d = self.dir.join(sub);
            match fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to create {}", d.display()))
                }
            }
            let m = fs::symlink_metadata(&d)?;
            if !m.is_dir() || m.uid() != 0 {
                return Err(refuse(
                    &self.dir,
                    format!("{sub} is not emptcp's directory"),
                ));
            }
        }
        Ok(())
    }

    /// The pinned one-entry array map that holds the state document
    /// (created empty when `create`).
    pub fn state_map(&self, create: bool) -> Result<Option<MapHandle>> {
        let path = self.dir.join(STATE_PIN);
        if fs::symlink_metadata(&path).is_ok() {
            let m = MapHandle::from_pinned_path(&path).context("failed to open the state map")?;
            if m.name().to_str() != Some(STATE_MAP_NAME) || m.value_size() != STATE_VALUE_SIZE {
                return Err(refuse(
                    &self.dir,
                    "its `state` pin is not emptcp's state map",
                ));
            }
            return Ok(Some(m));
        }
        if !create {
            return Ok(None);
        }
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let mut m = MapHandle::create(
            MapType::Array,
            Some(STATE_MAP_NAME),
            4,
            STATE_VALUE_SIZE,
            1,
            &opts,
        )
        .context("failed to create the state map")?;
        m.pin(&path).context("failed to pin the state map")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(Some(m))
    }

    pub fn family_dir(&self, family: &str) -> PathBuf {
        self.dir.join(family)
    }

    /// Removes every entry emptcp creates (by name, see the layout above),
    /// then the directory. Entries emptcp did not create are left where
    /// they are, and so is the directory that holds them: their names are
    /// returned. The `state` pin goes last, so that an interrupted removal
    /// is still recognised as emptcp's.
    pub fn remove_ours(self) -> Result<Vec<PathBuf>> {
        let mut foreign = Vec::new();
        for fam in FAMILIES {
            let d = self.dir.join(fam);
            for e in read_names(&d) {
                let p = d.join(&e);
                if is_family_pin(&e) {
                    remove_pin(&p)?;
                } else {
                    foreign.push(p);
                }
            }
            remove_empty_dir(&d)?;
        }
        for e in read_names(&self.dir) {
            let p = self.dir.join(&e);
            if e.starts_with("emptcp_g_") {
                remove_pin(&p)?;
            } else if is_reader_dir(&e) || e == RUN_DIR {
                remove_empty_dir(&p)?;
            } else if e != STATE_PIN && !FAMILIES.contains(&e.as_str()) {
                foreign.push(p);
            }
        }
        if foreign.is_empty() {
            remove_pin(&self.dir.join(STATE_PIN))?;
            remove_empty_dir(&self.dir)?;
        }
        Ok(foreign)
    }
}

/// The lock of the one `emptcp run` of a state directory, held until
/// dropped (or the process ends, however it ends).
pub struct RunLock {
    _lock: Flock<File>,
}

/// The pid of the process holding an flock on `dir`, from /proc/locks.
fn flock_holder(dir: &Path) -> Option<u32> {
    let m = fs::symlink_metadata(dir).ok()?;
    let (maj, min, ino) = (libc::major(m.dev()), libc::minor(m.dev()), m.ino());
    let want = format!("{maj:02x}:{min:02x}:{ino}");
    fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[1] == "FLOCK" && f[5] == want)
        .and_then(|f| f[4].parse().ok())
}

impl StateDir {
    /// Takes the `run` lock of this directory without waiting: refused in
    /// one line while another `emptcp run` holds it.
    pub fn lock_run(&self) -> Result<RunLock> {
        let d = self.dir.join(RUN_DIR);
        match fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("failed to create {}", d.display())),
        }
        match lock(&d, true, false)? {
            Some(l) if still_there(&d, &l) => Ok(RunLock { _lock: l }),
            _ => Err(refuse(
                &self.dir,
                format!(
                    "another `emptcp run`{} serves it (one per state directory)",
                    flock_holder(&d)
                        .map(|p| format!(" (pid {p})"))
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Refuses, in one line, when an `emptcp run` serves this directory.
    pub fn refuse_if_served(&self) -> Result<()> {
        let d = self.dir.join(RUN_DIR);
        if fs::symlink_metadata(&d).is_err() {
            return Ok(());
        }
        match lock(&d, true, false)? {
            Some(_) => Ok(()),
            None => Err(refuse(
                &self.dir,
                format!(
                    "served by `emptcp run`{}: stop it (it detaches its chains) instead",
                    flock_holder(&d)
                        .map(|p| format!(" (pid {p})"))
                        .unwrap_or_default()
                ),
            )),
        }
    }
}

fn read_names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Names emptcp gives pins in a family directory.
pub fn is_family_pin(name: &str) -> bool {
    name.starts_with("emptcp_") || numbered(name, "entry-") || numbered(name, "link-")
}

fn is_reader_dir(name: &str) -> bool {
    numbered(name, "reader-")
}

fn remove_pin(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => bail!("{} is a directory, not a pin", p.display()),
        Ok(_) => fs::remove_file(p).with_context(|| format!("failed to remove {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", p.display())),
    }
}

/// rmdir, never recursive: a directory that is not empty stays.
fn remove_empty_dir(p: &Path) -> Result<()> {
    match fs::remove_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_are_ours_only_by_exact_pattern() {
        assert!(is_family_pin("emptcp_progs"));
        assert!(is_family_pin("entry-12"));
        assert!(is_family_pin("link-3"));
        assert!(!is_family_pin("link-"));
        assert!(!is_family_pin("link-3x"));
        assert!(!is_family_pin("cilium_calls"));
        assert!(is_reader_dir("reader-0"));
        assert!(!is_reader_dir("reader-a"));
    }

    #[test]
    fn paths_with_dotdot_are_refused() {
        let e = checked_path(Path::new("/sys/fs/bpf/a/../b")).unwrap_err();
        assert!(e.to_string().contains("`..`"), "{e}");
        assert!(checked_path(Path::new("/")).is_err());
    }
}
