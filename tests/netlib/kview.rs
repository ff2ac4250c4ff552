//! The kernel's view of what emptcp attached and loaded: XDP and tcx
//! attachments per interface (`ip link`, tcx queries), BPF programs and
//! maps by id (bpftool), and the pins of a state dir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// XDP attach mode on a device (1 = native/driver, 2 = generic/skb,
/// 3 = offload), None when no XDP program is attached.
pub fn xdp_mode(ns: &str, dev: &str) -> Option<u64> {
    let out = sh("ip", &["-n", ns, "-j", "-d", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).expect("ip -j link");
    v[0].get("xdp").and_then(|x| x["mode"].as_u64())
}

/// Id of the XDP program attached to a device.
pub fn xdp_prog_id(ns: &str, dev: &str) -> Option<u64> {
    let out = sh("ip", &["-n", ns, "-j", "-d", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).expect("ip -j link");
    v[0].get("xdp").and_then(|x| x["prog"]["id"].as_u64())
}

/// Programs attached through tcx at a device's ingress or egress (asked
/// from the kernel: bpftool 7.1 does not list tcx).
///
/// On kernels without tcx (Linux < 6.6), where emptcp attaches clsact
/// filters instead, it counts the device's clsact bpf filters.
pub fn tcx_count(ns: &str, dev: &str, egress: bool) -> u32 {
    if !emptcp::features::get().tcx {
        let dir = if egress { "egress" } else { "ingress" };
        let f = run("tc", &["-n", ns, "filter", "show", "dev", dev, dir]);
        return f.stdout.matches("direct-action").count() as u32;
    }
    wire::tcx_prog_ids(ns, dev, egress).len() as u32
}

/// Panics unless nothing at all is attached to a device: no XDP program,
/// no tcx program, no tc (clsact) filter.
pub fn assert_nothing_attached(ns: &str, dev: &str) {
    assert_eq!(xdp_mode(ns, dev), None, "XDP program left on {dev}");
    assert_eq!(
        tcx_count(ns, dev, true),
        0,
        "tcx egress program left on {dev}"
    );
    assert_eq!(
        tcx_count(ns, dev, false),
        0,
        "tcx ingress program left on {dev}"
    );
    for dir in ["ingress", "egress"] {
        let f = run("tc", &["-n", ns, "filter", "show", "dev", dev, dir]);
        assert!(
            f.stdout.trim().is_empty(),
            "tc {dir} filter left on {dev}: {}",
            f.stdout
        );
    }
}

pub(super) fn bpftool_json(args: &[&str]) -> Option<Value> {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let o = run("bpftool", &a);
    if !o.ok() {
        return None;
    }
    serde_json::from_str(&o.stdout).ok()
}

/// Ids of the kernel objects reachable from a state dir's pins.
#[derive(Debug, Default, Clone)]
pub struct BpfIds {
    pub progs: BTreeSet<u64>,
    pub maps: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
    /// Names of the pinned maps, for messages.
    pub map_names: BTreeMap<u64, String>,
}

pub(super) fn pinned_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                pinned_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Every program, map and link pinned under `dir`, plus the programs in
/// pinned program arrays and the maps those programs use. Maps are only
/// opened through their pins (see `object_exists`).
pub fn owned_ids(dir: &Path) -> BpfIds {
    let mut ids = BpfIds::default();
    let mut files = Vec::new();
    pinned_files(dir, &mut files);
    for f in files {
        let p = f.to_string_lossy().into_owned();
        if let Some(v) = bpftool_json(&["link", "show", "pinned", &p]) {
            ids.links.extend(v["id"].as_u64());
            ids.progs.extend(v["prog_id"].as_u64());
        } else if let Some(v) = bpftool_json(&["prog", "show", "pinned", &p]) {
            ids.progs.extend(v["id"].as_u64());
        } else if let Some(v) = bpftool_json(&["map", "show", "pinned", &p]) {
            if let Some(id) = v["id"].as_u64() {
                ids.maps.insert(id);
                ids.map_names
                    .insert(id, v["name"].as_str().unwrap_or("").to_owned());
            }
            if v["type"] == "prog_array" {
                if let Some(Value::Array(es)) = bpftool_json(&["map", "dump", "pinned", &p]) {
                    for e in es {
                        ids.progs.extend(e["formatted"]["value"].as_u64());
                    }
                }
            }
        }
    }
    for id in ids.progs.clone() {
        if let Some(v) = bpftool_json(&["prog", "show", "id", &id.to_string()]) {
            if let Some(Value::Array(m)) = v.get("map_ids") {
                ids.maps.extend(m.iter().filter_map(Value::as_u64));
            }
        }
    }
    ids
}

/// Whether the kernel still has a `prog`, `map` or `link` with this id.
///
/// Asked with BPF_*_GET_NEXT_ID, which takes no reference. Opening maps
/// by id (what `bpftool map show` does for every map) is avoided on
/// purpose: on this kernel a prog_array whose last user reference goes
/// while another GET_FD_BY_ID user reference comes and goes before the
/// deferred clear has run leaks for good (prog_array_map_clear takes a
/// map reference and schedules work that is already pending).
pub fn object_exists(kind: &str, id: u64) -> bool {
    let f = match kind {
        "prog" => libbpf_sys::bpf_prog_get_next_id,
        "map" => libbpf_sys::bpf_map_get_next_id,
        "link" => libbpf_sys::bpf_link_get_next_id,
        _ => panic!("unknown object kind {kind}"),
    };
    let Ok(start) = u32::try_from(id.saturating_sub(1)) else {
        return false;
    };
    let mut next: u32 = 0;
    // SAFETY: next is a valid out pointer for the call.
    let r = unsafe { f(start, &mut next) };
    r == 0 && u64::from(next) == id
}

/// Programs that use one of `maps`: "id name (maps ...)", for diagnostics.
pub fn progs_using(maps: &BTreeSet<u64>) -> Vec<String> {
    let o = run("bpftool", &["-j", "prog", "show"]);
    let Ok(Value::Array(v)) = serde_json::from_str::<Value>(&o.stdout) else {
        return vec!["(bpftool prog show failed)".into()];
    };
    v.iter()
        .filter(|p| {
            p["map_ids"].as_array().is_some_and(|m| {
                m.iter()
                    .filter_map(Value::as_u64)
                    .any(|id| maps.contains(&id))
            })
        })
        .map(|p| format!("{} {} (maps {})", p["id"], p["name"], p["map_ids"]))
        .collect()
}

/// Programs the kernel has loaded: id -> name (`bpftool prog show` opens
/// programs only, never maps).
pub fn loaded_progs() -> BTreeMap<u64, String> {
    for _ in 0..5 {
        let o = run("bpftool", &["-j", "prog", "show"]);
        // a program freed while bpftool lists makes it complain; what it
        // printed is still a valid list, else retry
        if let Ok(Value::Array(v)) = serde_json::from_str::<Value>(&o.stdout) {
            return v
                .iter()
                .filter_map(|x| {
                    let id = x["id"].as_u64()?;
                    Some((id, x["name"].as_str().unwrap_or("").to_owned()))
                })
                .collect();
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("bpftool -j prog show: no usable output");
}

/// Which of `ids` the kernel still has.
pub fn still_loaded(ids: &BpfIds) -> BpfIds {
    let keep = |kind: &str, s: &BTreeSet<u64>| -> BTreeSet<u64> {
        s.iter()
            .copied()
            .filter(|id| object_exists(kind, *id))
            .collect()
    };
    BpfIds {
        progs: keep("prog", &ids.progs),
        maps: keep("map", &ids.maps),
        links: keep("link", &ids.links),
        map_names: BTreeMap::new(),
    }
}

/// Names emptcp's XDP/TC programs carry (the C function names).
pub const PROG_NAMES: &[&str] = &[
    "emptcp_entry",
    "emptcp_walk_prog",
    "emptcp_walk_short",
    "ip_pair",
    "packet_type",
    "set_backup",
];
