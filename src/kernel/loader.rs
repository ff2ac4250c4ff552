//! Opening and loading the embedded BPF objects, sharing the chain maps
//! (`emptcp_*`) between objects through pins and `reuse_fd`.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{
    AsRawLibbpf, MapCore, MapHandle, Object, ObjectBuilder, OpenObject, PrintLevel, ProgramType,
};

use crate::abi::{types, ABI_VERSION, ROLE_ACTOR, ROLE_SELECTOR};
use crate::cli::text::{self, quoted};
use crate::runtime::chain::StageObject;

/// libbpf messages of the current load, for the one-line error.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
static VERBOSE: Mutex<bool> = Mutex::new(false);

fn print_cb(level: PrintLevel, msg: String) {
    if *VERBOSE.lock().unwrap_or_else(|e| e.into_inner()) {
        eprint!("{msg}");
    }
    if level != PrintLevel::Debug
        || msg.contains("BEGIN PROG LOAD LOG")
        || !msg.starts_with("libbpf:")
    {
        let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() < 100_000 {
            log.extend(msg.lines().map(str::to_owned));
        }
    }
}

static INIT: std::sync::Once = std::sync::Once::new();

/// Routes libbpf's log: printed with `-v`, else kept for error messages.
pub fn init_logging(verbose: bool) {
    *VERBOSE.lock().unwrap_or_else(|e| e.into_inner()) = verbose;
    INIT.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Debug, print_cb)));
    });
}

/// Whether `-v` asked for libbpf's and the verifier's words.
pub fn verbose() -> bool {
    *VERBOSE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Instructions the verifier processed to load a program (Linux 5.16+).
pub fn verified_insns(fd: std::os::fd::BorrowedFd<'_>) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a bpf_prog_info of len bytes, fd a program's
    let r = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    (r == 0 && info.verified_insns > 0).then_some(info.verified_insns)
}

fn take_log() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The verifier's last meaningful line from a failed load's log.
fn verifier_reason(log: &[String]) -> Option<String> {
    let end = log.iter().rposition(|l| l.contains("END PROG LOAD LOG"))?;
    log[..end]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("libbpf:")
        })
        .map(str::to_owned)
}

/// The embedded object of a stage for a hook family ("xdp" or "tc").
pub fn object_bytes(object: &str, family: &str) -> Result<&'static [u8]> {
    crate::skel::OBJECTS
        .iter()
        .find(|(o, f, _)| *o == object && *f == family)
        .map(|(_, _, bytes)| bytes())
        .ok_or_else(|| anyhow!("no built-in BPF object {object:?} for {family}"))
}

/// Opens an object from memory under a stable name.
pub fn open(bytes: &[u8], name: &str) -> Result<OpenObject> {
    let mut b = ObjectBuilder::default();
    b.name(name).context("object name")?;
    b.open_memory(bytes)
        .with_context(|| format!("failed to open BPF object {name}"))
}

/// ELF's e_machine of BPF objects.
const EM_BPF: u16 = 247;

/// True when `bytes` start with an ELF header for BPF (magic, e_machine
/// in the byte order the header declares). libbpf says only "Unknown
/// error 4001" (LIBBPF_ERRNO__FORMAT) for anything else.
pub fn is_bpf_elf(bytes: &[u8]) -> bool {
    // e_ident[EI_DATA] at 5, e_machine at 18 in both ELF classes
    let (Some(b"\x7fELF"), Some(&data), Some(m)) =
        (bytes.get(..4), bytes.get(5), bytes.get(18..20))
    else {
        return false;
    };
    let m = [m[0], m[1]];
    let machine = match data {
        1 => u16::from_le_bytes(m),
        2 => u16::from_be_bytes(m),
        _ => return false,
    };
    machine == EM_BPF
}

/// libbpf's name for an object opened from a file: the base name up to
/// its first dot (it names the object's internal maps, e.g. `.rodata`).
fn object_name(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = base
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect();
    if stem.is_empty() {
        "custom".to_owned()
    } else {
        stem
    }
}

/// Opens a third-party stage object and checks it before anything is
/// loaded: a regular file of at most 16 MiB (userfile.rs) holding an ELF
/// BPF object, the program exists, has the hook family's type, and the
/// object declares the chain maps a stage needs. The file is read once,
/// here; libbpf parses the bytes read (it keeps no reference to them once
/// the object is open).
pub fn open_custom(object: &StageObject, family: &str, what: &str) -> Result<OpenObject> {
    let StageObject::File {
        path,
        program,
        actor,
        param_bytes,
    } = object
    else {
        bail!("{what}: not a third-party stage");
    };
    let (path, program) = (path.as_path(), program.as_str());
    let shown = text::path(path);
    let bytes = crate::policy::userfile::read(path).map_err(|e| anyhow!("{what}: {shown}: {e}"))?;
    if !is_bpf_elf(&bytes) {
        bail!("{what}: {shown}: not an ELF BPF object");
    }
    let mut b = ObjectBuilder::default();
    b.name(object_name(path)).context("object name")?;
    let open = b
        .open_memory(&bytes)
        .with_context(|| format!("{what}: failed to open BPF object {shown}"))?;
    drop(bytes);
    let want = if family == "xdp" {
        ProgramType::Xdp
    } else {
        ProgramType::SchedCls
    };
    let prog = open.progs().find(|p| p.name() == program).ok_or_else(|| {
        // the object's names are the user's text too: escaped, and a few
        const LISTED: usize = 8;
        let names: Vec<String> = open
            .progs()
            .map(|p| text::bare(&p.name().to_string_lossy()).to_string())
            .collect();
        let more = names.len().saturating_sub(LISTED);
        anyhow!(
            "{what}: {shown} has no program {} (it has: {}{})",
            quoted(program),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names[..names.len().min(LISTED)].join(", ")
            },
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    })?;
    if prog.prog_type() != want {
        bail!(
            "{what}: program {} in {shown} is {:?}, the chain's hook needs {:?} (build it with -DEMPTCP_{})",
            text::bare(program),
            prog.prog_type(),
            want,
            family.to_uppercase()
        );
    }
    for m in ["emptcp_progs", "emptcp_stages", "emptcp_stats"] {
        if !open.maps().any(|x| x.name() == m) {
            bail!("{what}: {shown} declares no map {m}: build it with <emptcp/chain.h>");
        }
    }
    check_stage_info(&open, program, *actor, *param_bytes)
        .map_err(|e| anyhow!("{what}: object {shown}: program {}{e}", text::bare(program)))?;
    Ok(open)
}

/// The record a stage macro writes (abi.h struct emptcp_stage_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageInfo {
    pub abi: u32,
    pub role: u32,
    pub param_size: u32,
}

/// Reads `emptcp_info_<program>` from an opened object.
pub fn stage_info(open: &OpenObject, program: &str) -> Option<StageInfo> {
    let b = rodata(open, &format!("emptcp_info_{program}")).ok()?;
    let w = |i: usize| {
        b.get(i * 4..i * 4 + 4)
            .map(|x| u32::from_ne_bytes(x.try_into().unwrap()))
    };
    (b.len() == std::mem::size_of::<types::emptcp_stage_info>()).then_some(())?;
    Some(StageInfo {
        abi: w(0)?,
        role: w(1)?,
        param_size: w(2)?,
    })
}

/// A third-party program's declaration against how the chain lists it;
/// the error continues "…: program P".
fn check_stage_info(open: &OpenObject, program: &str, actor: bool, params: usize) -> Result<()> {
    let abi = ABI_VERSION;
    let Some(info) = stage_info(open, program) else {
        bail!(
            " declares no stage (build it with EMPTCP_SELECTOR or EMPTCP_ACTOR from <emptcp/chain.h>, stage ABI {abi})"
        );
    };
    if info.abi != abi {
        bail!(
            " was built for stage ABI {}; this emptcp runs ABI {abi}",
            info.abi
        );
    }
    let (want, listed) = if actor {
        (ROLE_ACTOR, "[[chain.act]]")
    } else {
        (ROLE_SELECTOR, "[[chain.select]]")
    };
    if info.role != want {
        let is = match info.role {
            ROLE_SELECTOR => "a selector",
            ROLE_ACTOR => "an actor",
            _ => "of no known role",
        };
        bail!(" is {is}; listed under {listed}");
    }
    if params > info.param_size as usize {
        bail!(
            " reads {} bytes of parameters; the chain gives {params} ({} values)",
            info.param_size,
            params / 4
        );
    }
    Ok(())
}

/// A pinned map that today's objects do not match: the state directory of
/// an older emptcp. Not a verifier's refusal: nothing else loads either.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StaleMap(pub String);

/// Where a shared map is pinned: `<family dir>/<name>`, except maps named
/// `emptcp_g_*` (shared by the XDP and TC families, like the event ring
/// buffer), which sit in the state directory itself.
pub fn pin_path(family_dir: &Path, name: &str) -> std::path::PathBuf {
    match (name.starts_with("emptcp_g_"), family_dir.parent()) {
        (true, Some(top)) => top.join(name),
        _ => family_dir.join(name),
    }
}

/// Makes every `emptcp_*` map of `open` reuse the map pinned under `dir`
/// when there is one, after checking that both agree. Returns the names of
/// the maps that have no pin yet (to pin after load).
pub fn share_maps(open: &mut OpenObject, dir: &Path, what: &str) -> Result<Vec<String>> {
    let mut to_pin = Vec::new();
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if !name.starts_with("emptcp_") {
            continue;
        }
        let path = pin_path(dir, &name);
        if !path.exists() {
            // a table's outer map is made by tables.rs, named so that
            // later commands need not probe it (check_outer)
            if let Some(part) = crate::tables::Part::by_outer_pin(&name) {
                let made = crate::tables::outer_at(&path, part, None)?;
                map.reuse_fd(made.as_fd())
                    .with_context(|| format!("failed to reuse {} for {what}", path.display()))?;
            } else {
                to_pin.push(name);
            }
            continue;
        }
        let pinned = MapHandle::from_pinned_path(&path)
            .with_context(|| format!("failed to open pinned map {}", path.display()))?;
        let ours = (
            map.map_type(),
            map.key_size(),
            map.value_size(),
            map.max_entries(),
        );
        let theirs = (
            pinned.map_type(),
            pinned.key_size(),
            pinned.value_size(),
            pinned.max_entries(),
        );
        // PROG_ARRAY value size is the fd (4) on both sides; compare all four.
        if ours != theirs {
            return Err(StaleMap(format!(
                "map {name} of {what} (type {:?}, key {}, value {}, entries {}) does not match \
                 the pinned {} (type {:?}, key {}, value {}, entries {}): remove the old state \
                 with `emptcp detach --all`",
                ours.0,
                ours.1,
                ours.2,
                ours.3,
                path.display(),
                theirs.0,
                theirs.1,
                theirs.2,
                theirs.3
            ))
            .into());
        }
        crate::tables::check_pinned_outer(&name, &pinned, &path)?;
        map.reuse_fd(pinned.as_fd())
            .with_context(|| format!("failed to reuse {} for {what}", path.display()))?;
    }
    Ok(to_pin)
}

/// Loads an opened object; on a verifier rejection the error is one line
/// naming `what` and the verifier's last message (the whole log with -v).
pub fn load(open: OpenObject, what: &str) -> Result<Object> {
    // library users that never called init_logging get the quiet default
    if !INIT.is_completed() {
        init_logging(false);
    }
    take_log();
    match open.load() {
        Ok(o) => {
            take_log();
            Ok(o)
        }
        Err(e) => {
            let log = take_log();
            match verifier_reason(&log) {
                Some(r) => bail!("failed to load {what}: verifier: {r}"),
                None => Err(anyhow!(e).context(format!("failed to load {what}"))),
            }
        }
    }
}

/// Where the `.rodata` variable `var` (a `const volatile` global) sits:
/// (offset, size), through the object's BTF.
fn rodata_var(open: &OpenObject, var: &str) -> Result<(usize, usize)> {
    // SAFETY: the pointer comes from a live OpenObject and is only used
    // while `open` is borrowed here.
    let obj = unsafe { open.as_libbpf_object().as_ref() };
    let btf = libbpf_rs::btf::Btf::from_bpf_object(obj)
        .context("object BTF")?
        .context("object has no BTF")?;
    let sec: libbpf_rs::btf::types::DataSec<'_> = btf
        .type_by_name(".rodata")
        .ok_or_else(|| anyhow!("object has no .rodata section"))?;
    for vs in sec.iter() {
        let v: Option<libbpf_rs::btf::types::Var<'_>> = btf.type_by_id(vs.ty);
        if v.and_then(|v| v.name()).is_some_and(|n| n == var) {
            return Ok((vs.offset as usize, vs.size));
        }
    }
    Err(anyhow!("object has no .rodata variable {var}"))
}

/// The initial value of the `.rodata` variable `var`.
pub fn rodata(open: &OpenObject, var: &str) -> Result<Vec<u8>> {
    let (offset, size) = rodata_var(open, var)?;
    let map = open
        .maps()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .context("object has no .rodata map")?;
    let init = map
        .initial_value()
        .context(".rodata has no initial value")?;
    Ok(init
        .get(offset..offset + size)
        .context(".rodata shorter than its BTF says")?
        .to_vec())
}

/// Sets the initial value of the `.rodata` variable `var` (a `const
/// volatile` global) before load, finding it through the object's BTF.
pub fn set_rodata(open: &mut OpenObject, var: &str, bytes: &[u8]) -> Result<()> {
    let (offset, size) = rodata_var(open, var)?;
    if size != bytes.len() {
        bail!("rodata variable {var} is {size} bytes, not {}", bytes.len());
    }
    let mut map = open
        .maps_mut()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .context("object has no .rodata map")?;
    let init = map
        .initial_value_mut()
        .context(".rodata has no initial value")?;
    init.get_mut(offset..offset + size)
        .context(".rodata shorter than its BTF says")?
        .copy_from_slice(bytes);
    Ok(())
}

/// Pins the maps named in `names` (created by this load) under `dir`.
pub fn pin_new_maps(obj: &mut Object, dir: &Path, names: &[String]) -> Result<()> {
    for mut map in obj.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if names.contains(&name) {
            let path = pin_path(dir, &name);
            map.pin(&path)
                .with_context(|| format!("failed to pin map {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_verifier_reason() {
        let log: Vec<String> = [
            "libbpf: prog 'x': BPF program load failed: Permission denied",
            "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --",
            "0: R1=ctx() R10=fp0",
            "30: (67) r2 <<= 32",
            "R2 pointer arithmetic with <<= operator prohibited",
            "processed 28 insns (limit 1000000) max_states_per_insn 0",
            "-- END PROG LOAD LOG --",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            verifier_reason(&log).as_deref(),
            Some("R2 pointer arithmetic with <<= operator prohibited")
        );
        assert_eq!(verifier_reason(&[]), None);
    }

    #[test]
    fn knows_elf_bpf_objects() {
        let (_, _, bytes) = crate::skel::OBJECTS[0];
        assert!(is_bpf_elf(bytes()));
        let mut x86 = bytes().to_vec();
        x86[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert!(!is_bpf_elf(&x86), "an x86-64 object");
        let mut be = bytes().to_vec();
        be[5] = 2;
        be[18..20].copy_from_slice(&EM_BPF.to_be_bytes());
        assert!(is_bpf_elf(&be), "big-endian BPF");
        assert!(!is_bpf_elf(b""));
        assert!(!is_bpf_elf(b"\x7fELF"));
        assert!(!is_bpf_elf(b"[[chain]]\nname = \"x\"\n"));
        assert_eq!(object_name(Path::new("/x/my_stage.bpf.o")), "my_stage");
        assert_eq!(object_name(Path::new("/x/.o")), "custom");
    }

    #[test]
    fn every_object_is_embedded_for_both_hooks() {
        for (o, _, _) in crate::skel::OBJECTS {
            for f in ["xdp", "tc"] {
                let b = object_bytes(o, f).expect("embedded");
                assert_eq!(&b[..4], b"\x7fELF", "{o}/{f} is an ELF object");
            }
        }
    }
}
