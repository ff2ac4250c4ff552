//! `emptcp stats`: the `record` metrics per connection and per subflow
//! (grouped by MPTCP token), and each chain's per-stage counters.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::Result;
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use serde::Serialize;

use crate::abi::types;
use crate::observe::events::key_token;
use crate::runtime::{ChainView, Runtime};

/// One direction of a subflow.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DirStats {
    pub packets: u64,
    pub bytes: u64,
    pub retrans: u64,
    pub window: u32,
}

/// One subflow as `record` saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SubflowStats {
    /// The lower (address, port) end.
    pub a: String,
    /// The other end.
    pub b: String,
    pub a_to_b: DirStats,
    pub b_to_a: DirStats,
    pub rtt_samples: u64,
    pub rtt_avg_us: Option<f64>,
    pub rtt_last_us: Option<f64>,
    /// Tokens of the two ends' MP_CAPABLE keys (initial subflow).
    pub tokens: Vec<String>,
    /// MP_JOIN: the token the join named.
    pub join_token: Option<String>,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Subflows of one MPTCP connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnStats {
    /// Tokens of the connection (both ends', when the MP_CAPABLE was seen).
    pub tokens: Vec<String>,
    pub subflows: Vec<SubflowStats>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub connections: Vec<ConnStats>,
    pub chains: Vec<ChainView>,
    /// Entry-program counters (slot 0) per hook family.
    pub entry: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

fn end(v6: bool, a: &[u8; 16], port: u16) -> String {
    let p = u16::from_be(port);
    if v6 {
        format!("[{}]:{p}", IpAddr::V6(Ipv6Addr::from(*a)))
    } else {
        format!("{}:{p}", IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
    }
}

/// `emptcp_flow_key.pad` of a slot in use (src/bpf/flowtab.h).
const FLOWTAB_LIVE: u16 = 1;

/// The slots in use of a per-subflow table (src/bpf/flowtab.h: an array of
/// {emptcp_flow_key, state}): each key with its state's bytes.
pub fn flowtab_live(map: &MapHandle) -> Result<Vec<(types::emptcp_flow_key, Vec<u8>)>> {
    let klen = std::mem::size_of::<types::emptcp_flow_key>();
    if map.map_type() != libbpf_rs::MapType::Array || (map.value_size() as usize) < klen {
        anyhow::bail!(
            "{} holds the per-subflow records of an older emptcp ({:?}): `emptcp detach --all`",
            map.name().to_string_lossy(),
            map.map_type()
        );
    }
    let mut out = Vec::new();
    for (_, slot) in map.lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)? {
        let mut key = types::emptcp_flow_key::default();
        if slot.len() < klen || plain::copy_from_bytes(&mut key, &slot[..klen]).is_err() {
            continue;
        }
        if key.pad == FLOWTAB_LIVE {
            out.push((key, slot[klen..].to_vec()));
        }
    }
    Ok(out)
}

/// Reads the flow records pinned in `dir`.
pub fn read_flows(dir: &Path) -> Result<Vec<SubflowStats>> {
    let path = dir.join("emptcp_g_flows");
    let Ok(map) = MapHandle::from_pinned_path(&path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, v) in flowtab_live(&map)? {
        let mut rec = types::emptcp_flow_rec::default();
        if plain::copy_from_bytes(&mut rec, &v).is_err() {
            continue;
        }
        let v6 = rec.v6 != 0;
        let dir = |d: usize| DirStats {
            packets: rec.pkts[d],
            bytes: rec.bytes[d],
            retrans: rec.retrans[d],
            window: rec.win[d],
        };
        let tokens = rec
            .key
            .iter()
            .filter(|k| **k != 0)
            .map(|k| format!("{:08x}", key_token(*k)))
            .collect();
        out.push(SubflowStats {
            a: end(v6, &key.saddr, key.sport),
            b: end(v6, &key.daddr, key.dport),
            a_to_b: dir(0),
            b_to_a: dir(1),
            rtt_samples: rec.rtt_n,
            rtt_avg_us: (rec.rtt_n > 0).then(|| rec.rtt_sum_ns as f64 / rec.rtt_n as f64 / 1000.0),
            rtt_last_us: (rec.rtt_n > 0).then(|| rec.rtt_last_ns as f64 / 1000.0),
            tokens,
            join_token: (rec.token != 0).then(|| format!("{:08x}", rec.token)),
            first_ns: rec.first_ns,
            last_ns: rec.last_ns,
        });
    }
    out.sort_by_key(|x| x.first_ns);
    Ok(out)
}

/// Groups subflows into connections: a join belongs to the connection
/// whose MP_CAPABLE tokens include the token it named.
pub fn group(flows: Vec<SubflowStats>) -> Vec<ConnStats> {
    let mut conns: Vec<ConnStats> = Vec::new();
    let mut loose = Vec::new();
    for f in flows {
        if f.join_token.is_none() {
            conns.push(ConnStats {
                tokens: f.tokens.clone(),
                subflows: vec![f],
            });
        } else {
            loose.push(f);
        }
    }
    for f in loose {
        let t = f.join_token.clone().unwrap_or_default();
        match conns.iter_mut().find(|c| c.tokens.contains(&t)) {
            Some(c) => c.subflows.push(f),
            None => conns.push(ConnStats {
                tokens: vec![t],
                subflows: vec![f],
            }),
        }
    }
    conns
}

pub fn collect(rt: &Runtime) -> Result<Stats> {
    Ok(Stats {
        connections: group(read_flows(&rt.dir)?),
        chains: rt.show(None)?,
        entry: rt.entry_counters()?,
    })
}

/// A label value in the text format: `\`, `"` and newlines escaped.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family in the text format: HELP, TYPE, then its samples
/// (label sets written as `k="v",…`), all together as the format wants.
pub fn family(o: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(o, "{name} {v}");
        } else {
            let _ = writeln!(o, "{name}{{{labels}}} {v}");
        }
    }
}

/// Prometheus text exposition: `record`'s per-subflow metrics (labelled by
/// the connection's tokens and the subflow's ends), per-stage counters
/// (chain, device, hook, slot, stage, reason) and the entry programs'.
pub fn prometheus(s: &Stats) -> String {
    type Get = fn(&DirStats) -> u64;
    let per_dir: [(&str, &str, &str, Get); 4] = [
        (
            "emptcp_subflow_bytes_total",
            "counter",
            "TCP payload bytes seen by record, per direction",
            |d| d.bytes,
        ),
        (
            "emptcp_subflow_packets_total",
            "counter",
            "packets seen by record, per direction",
            |d| d.packets,
        ),
        (
            "emptcp_subflow_retrans_total",
            "counter",
            "retransmissions seen by record, per direction",
            |d| d.retrans,
        ),
        (
            "emptcp_subflow_window",
            "gauge",
            "last receive window seen by record, per direction",
            |d| u64::from(d.window),
        ),
    ];
    let mut o = String::new();
    for (name, kind, help, get) in per_dir {
        let mut v = Vec::new();
        for c in &s.connections {
            let tok = label(&c.tokens.join("/"));
            for f in &c.subflows {
                for (src, dst, d) in [(&f.a, &f.b, &f.a_to_b), (&f.b, &f.a, &f.b_to_a)] {
                    v.push((
                        format!(
                            "token=\"{tok}\",src=\"{}\",dst=\"{}\"",
                            label(src),
                            label(dst)
                        ),
                        get(d).to_string(),
                    ));
                }
            }
        }
        family(&mut o, name, kind, help, &v);
    }
    let rtt: Vec<(String, String)> = s
        .connections
        .iter()
        .flat_map(|c| c.subflows.iter().map(move |f| (c, f)))
        .filter_map(|(c, f)| {
            f.rtt_avg_us.map(|r| {
                (
                    format!(
                        "token=\"{}\",a=\"{}\",b=\"{}\"",
                        label(&c.tokens.join("/")),
                        label(&f.a),
                        label(&f.b)
                    ),
                    format!("{:.7}", r / 1e6),
                )
            })
        })
        .collect();
    family(
        &mut o,
        "emptcp_subflow_rtt_avg_seconds",
        "gauge",
        "mean RTT record measured on a subflow",
        &rtt,
    );
    let mut v = Vec::new();
    for c in &s.chains {
        for st in &c.stages {
            for (reason, n) in &st.counters {
                v.push((
                    format!(
                        "chain=\"{}\",dev=\"{}\",hook=\"{}\",slot=\"{}\",stage=\"{}\",reason=\"{reason}\"",
                        label(&c.name),
                        label(&c.dev),
                        c.hook,
                        st.slot,
                        label(&st.kind)
                    ),
                    n.to_string(),
                ));
            }
        }
    }
    family(
        &mut o,
        "emptcp_stage_packets_total",
        "counter",
        "packets per chain stage and reason",
        &v,
    );
    let v: Vec<(String, String)> = s
        .entry
        .iter()
        .flat_map(|(fam, m)| {
            m.iter().map(move |(reason, n)| {
                (
                    format!("family=\"{fam}\",reason=\"{reason}\""),
                    n.to_string(),
                )
            })
        })
        .collect();
    family(
        &mut o,
        "emptcp_entry_packets_total",
        "counter",
        "packets per hook family seen by the entry programs, and reason",
        &v,
    );
    o
}

/// Human-readable text.
pub fn text(s: &Stats) -> String {
    let mut o = String::new();
    if s.connections.is_empty() {
        let _ = writeln!(o, "no subflows recorded (add a `record` actor to a chain)");
    }
    for c in &s.connections {
        let _ = writeln!(
            o,
            "connection {}",
            if c.tokens.is_empty() {
                "(token unknown)".into()
            } else {
                c.tokens.join("/")
            }
        );
        for f in &c.subflows {
            let rtt = f
                .rtt_avg_us
                .map(|r| format!(" rtt {r:.0}us ({} samples)", f.rtt_samples))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {} <-> {}{}{rtt}\n    -> {} pkts {} bytes {} retrans win {}\n    <- {} pkts {} bytes {} retrans win {}",
                f.a,
                f.b,
                f.join_token.as_ref().map(|t| format!(" (join {t})")).unwrap_or_default(),
                f.a_to_b.packets,
                f.a_to_b.bytes,
                f.a_to_b.retrans,
                f.a_to_b.window,
                f.b_to_a.packets,
                f.b_to_a.bytes,
                f.b_to_a.retrans,
                f.b_to_a.window,
            );
        }
    }
    for c in &s.chains {
        let _ = writeln!(o, "chain {} ({} {})", c.name, c.dev, c.hook);
        for st in &c.stages {
            let cnt: Vec<String> = st
                .counters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(o, "  [{:>4}] {:<12} {}", st.slot, st.kind, cnt.join("  "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(tokens: &[&str], join: Option<&str>) -> SubflowStats {
        SubflowStats {
            a: "a".into(),
            b: "b".into(),
            a_to_b: DirStats::default(),
            b_to_a: DirStats::default(),
            rtt_samples: 0,
            rtt_avg_us: None,
            rtt_last_us: None,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            join_token: join.map(str::to_owned),
            first_ns: 0,
            last_ns: 0,
        }
    }

    #[test]
    fn joins_group_under_their_connection() {
        let g = group(vec![
            sf(&["11111111", "22222222"], None),
            sf(&[], Some("22222222")),
            sf(&["33333333", "44444444"], None),
            sf(&[], Some("99999999")),
        ]);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].subflows.len(), 2, "join linked by the server's token");
        assert_eq!(
            g[2].tokens,
            vec!["99999999".to_string()],
            "unknown connection kept apart"
        );
    }
}
