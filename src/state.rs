//! What emptcp has applied, kept under its bpffs directory so that it lives
//! exactly as long as the pins: a JSON document in a pinned one-entry array
//! map (`state`), and an flock on the directory against concurrent changes.
//!
//! Layout of the directory (mode 0700):
//! ```text
//! /sys/fs/bpf/emptcp/state          the document below
//! /sys/fs/bpf/emptcp/xdp/emptcp_*   chain maps of XDP programs
//! /sys/fs/bpf/emptcp/tc/emptcp_*    chain maps of TC programs
//! /sys/fs/bpf/emptcp/{xdp,tc}/entry-N, link-N   entry program and link of attach point N
//! ```

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::attach::{Attachment, XdpMode};
use crate::policy::{Chain, Hook};

pub const DEFAULT_DIR: &str = "/sys/fs/bpf/emptcp";
/// Size of the state map's one value: a u32 length, then the JSON document.
pub const STATE_VALUE_SIZE: u32 = 1 << 20;
const STATE_VERSION: u32 = 1;

/// One chain as applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainState {
    pub id: u16,
    pub spec: Chain,
    /// Slot of each stage (selectors, then actors).
    pub slots: Vec<u16>,
    pub kinds: Vec<String>,
}

/// A device x hook with an entry program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachPoint {
    pub id: u32,
    pub netns: Option<String>,
    pub netns_ino: u64,
    pub dev: String,
    pub ifindex: u32,
    pub hook: Hook,
    pub xdp_mode: XdpMode,
    pub attachment: Attachment,
    pub gen: u32,
    /// In run order.
    pub chains: Vec<ChainState>,
}

/// Slots left by a swap, freed once no packet can still be walking them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retired {
    pub family: String,
    pub slots: Vec<u16>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub version: u32,
    pub next_chain_id: u16,
    pub points: Vec<AttachPoint>,
    pub retired: Vec<Retired>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// Slots of a family in use by chains or waiting to be freed.
    pub fn used_slots(&self, family: &str) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .points
            .iter()
            .filter(|p| p.hook.family() == family)
            .flat_map(|p| p.chains.iter().flat_map(|c| c.slots.iter().copied()))
            .chain(
                self.retired
                    .iter()
                    .filter(|r| r.family == family)
                    .flat_map(|r| r.slots.iter().copied()),
            )
            .collect();
        v.sort_unstable();
        v
    }

    /// Finds the chain called `name`: (attach point index, chain index).
    pub fn find_chain(&self, name: &str) -> Option<(usize, usize)> {
        self.points.iter().enumerate().find_map(|(pi, p)| {
            p.chains
                .iter()
                .position(|c| c.spec.name == name)
                .map(|ci| (pi, ci))
        })
    }

    pub fn alloc_chain_id(&mut self) -> u16 {
        self.next_chain_id = self.next_chain_id.wrapping_add(1).max(1);
        self.next_chain_id
    }

    /// A free attach-table index of a family.
    pub fn free_attach_id(&self, family: &str) -> Option<u32> {
        (1..crate::chain::MAX_ATTACH).find(|id| {
            !self
                .points
                .iter()
                .any(|p| p.hook.family() == family && p.id == *id)
        })
    }
}

/// The state directory, locked for the lifetime of this value.
pub struct StateDir {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

fn ensure_bpffs(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let is_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if is_bpffs(parent) {
        return Ok(());
    }
    if parent == Path::new("/sys/fs/bpf") {
        eprintln!("emptcp: mounting bpffs at /sys/fs/bpf");
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .context("failed to mount bpffs at /sys/fs/bpf")?;
        return Ok(());
    }
    bail!(
        "state directory {}: {} is not on a bpffs mount (use a directory under /sys/fs/bpf)",
        dir.display(),
        parent.display()
    )
}

impl StateDir {
    /// Opens (creating if `create`) and locks the state directory.
    /// Returns None when it does not exist and `create` is false.
    pub fn open(dir: &Path, create: bool) -> Result<Option<StateDir>> {
        if !dir.exists() {
            if !create {
                return Ok(None);
            }
            ensure_bpffs(dir)?;
            fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to set mode 0700 on {}", dir.display()))?;
        for sub in ["xdp", "tc"] {
            let d = dir.join(sub);
            // two emptcp may get here at once on a fresh directory (the lock
            // comes after): the one that loses the race finds it made
            match fs::create_dir(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(e).with_context(|| format!("failed to create {}", d.display()));
                }
                _ => {}
            }
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))?;
        }
        let f = File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
        let lock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((f, _)) => {
                eprintln!("emptcp: waiting for another emptcp on {}", dir.display());
                Flock::lock(f, FlockArg::LockExclusive)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("failed to lock {}", dir.display()))?
            }
        };
        Ok(Some(StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        }))
    }

    /// Opens an existing state directory to read it (show, stats, events):
    /// a shared lock, so readers never wait for each other and never see a
    /// change half made. With `wait` false a directory being changed right
    /// now gives None, like a missing one (the caller keeps what it has).
    pub fn open_shared(dir: &Path, wait: bool) -> Result<Option<StateDir>> {
        // not there is "nothing applied"; not readable (not root) is an error
        match fs::metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!(
                "cannot read the state directory {}: {e} (it is root-only: run as root)",
                dir.display()
            ),
        }
        let f = File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
        let lock = match Flock::lock(f, FlockArg::LockSharedNonblock) {
            Ok(l) => l,
            Err(_) if !wait => return Ok(None),
            Err((f, _)) => {
                eprintln!("emptcp: waiting for another emptcp on {}", dir.display());
                Flock::lock(f, FlockArg::LockShared)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("failed to lock {}", dir.display()))?
            }
        };
        Ok(Some(StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        }))
    }

    pub fn family_dir(&self, family: &str) -> PathBuf {
        self.dir.join(family)
    }

    fn state_map(&self, create: bool) -> Result<Option<MapHandle>> {
        let path = self.dir.join("state");
        if path.exists() {
            return Ok(Some(
                MapHandle::from_pinned_path(&path).context("failed to open the state map")?,
            ));
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
            Some("emptcp_state"),
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

    pub fn load(&self) -> Result<State> {
        let Some(m) = self.state_map(false)? else {
            return Ok(State {
                version: STATE_VERSION,
                ..Default::default()
            });
        };
        let v = m
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("state map is empty")?;
        let len = u32::from_ne_bytes(v[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Ok(State {
                version: STATE_VERSION,
                ..Default::default()
            });
        }
        if len > v.len() - 4 {
            bail!("state map is corrupt (length {len}); remove it with `emptcp detach --all`");
        }
        let s: State =
            serde_json::from_slice(&v[4..4 + len]).context("state map does not parse")?;
        if s.version != STATE_VERSION {
            bail!(
                "state written by another emptcp version ({}); `emptcp detach --all` first",
                s.version
            );
        }
        Ok(s)
    }

    pub fn save(&self, s: &State) -> Result<()> {
        let m = self.state_map(true)?.expect("created");
        let json = serde_json::to_vec(s)?;
        if json.len() + 4 > STATE_VALUE_SIZE as usize {
            bail!(
                "too many chains: state does not fit {} bytes",
                STATE_VALUE_SIZE
            );
        }
        let mut v = vec![0u8; STATE_VALUE_SIZE as usize];
        v[..4].copy_from_slice(&(json.len() as u32).to_ne_bytes());
        v[4..4 + json.len()].copy_from_slice(&json);
        m.update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
            .context("failed to write the state map")?;
        Ok(())
    }
}
