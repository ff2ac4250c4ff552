//! Chain planning: turning the chains of one attach point into stage
//! descriptions laid out on free slots. Pure code, no BPF calls.
//!
//! The chains of an attach point run one after another: the last stage of
//! chain k goes on to the first stage of chain k+1. A whole list is always
//! laid out on fresh slots and switched in with one attach-table update, so
//! a packet walking the old layout finishes on it.

use std::net::IpAddr;

use anyhow::{bail, Result};

use crate::abi::*;
use crate::policy::{
    Actor, BlkMode, Chain, CustomStage, KeyOf, Op, SelectorKind, SeqField, PACKET_TYPES,
};
use crate::tables::TableState;
/// The ABI's types and the constants tests and tools name by this path.
pub use crate::abi::{
    head_slot, types, CNT_MAX, COUNTER_NAMES, MAX_ATTACH, MAX_SLOTS, SF_ACTOR, SF_FIRST, SF_NOT,
    SF_OR, STAGE_SLOTS,
};

/// Where a stage's program comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageObject {
    /// Built in: src/bpf/<name>.bpf.c, program <name>.
    Builtin(&'static str),
    /// A third-party object file and the program in it, listed as an
    /// actor or a selector, given `param_bytes` of parameters.
    File {
        path: std::path::PathBuf,
        program: String,
        actor: bool,
        param_bytes: usize,
    },
}

impl StageObject {
    /// The program's name in its object.
    pub fn program(&self) -> &str {
        match self {
            StageObject::Builtin(n) => n,
            StageObject::File { program, .. } => program,
        }
    }
    /// A short label for show/state: the kind, or custom:<program>.
    pub fn label(&self) -> String {
        match self {
            StageObject::Builtin(n) => (*n).to_owned(),
            StageObject::File { program, .. } => format!("custom:{program}"),
        }
    }
}

/// One stage placed on a slot.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub slot: u16,
    pub object: StageObject,
    pub kind: String,
    pub desc: types::emptcp_stage,
}

/// A chain's stages, in order.
#[derive(Debug, Clone)]
pub struct PlannedChain {
    pub name: String,
    pub stages: Vec<PlannedStage>,
}

fn put<T: plain::Plain>(param: &mut Param, v: &T) {
    // SAFETY: T is Plain (checked by the bound); we only read its bytes.
    let b = unsafe { plain::as_bytes(v) };
    param[..b.len()].copy_from_slice(b);
}

fn addr_bytes(a: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
    out
}

/// The 32-bit mask of packet types, bit = index in PACKET_TYPES.
pub fn packet_type_mask(types: &[String]) -> Result<u32> {
    let mut mask = 0u32;
    for t in types {
        let Some(bit) = PACKET_TYPES.iter().position(|p| p == t) else {
            bail!("unknown packet type {t:?}");
        };
        mask |= 1 << bit;
    }
    Ok(mask)
}

fn custom_stage(c: &CustomStage, actor: bool) -> (StageObject, u8, Param) {
    let mut param = [0u8; PARAM_SIZE];
    for (i, v) in c.params.iter().take(14).enumerate() {
        param[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    (
        StageObject::File {
            path: c.object.clone(),
            program: c.program.clone(),
            actor,
            param_bytes: 4 * c.params.len().min(14),
        },
        KIND_CUSTOM,
        param,
    )
}

fn selector_stage(kind: &SelectorKind, env: &Env) -> Result<(StageObject, u8, Param)> {
    let mut param = [0u8; PARAM_SIZE];
    match kind {
        SelectorKind::InSet { keyof, set, bidir } => {
            param[..4].copy_from_slice(&tab_ref(env, set, *keyof, *bidir)?);
            Ok((StageObject::Builtin("lookup"), KIND_LOOKUP, param))
        }
        SelectorKind::IpPair { src, dst, bidir } => {
            let mut p = types::emptcp_ip_pair::default();
            let v6 = src.or(*dst).is_some_and(|a| a.is_ipv6());
            if v6 {
                p.flags |= IPP_V6;
            }
            if *bidir {
                p.flags |= IPP_BIDIR;
            }
            if let Some(s) = src {
                p.src = addr_bytes(s);
                p.flags |= IPP_SRC;
            }
            if let Some(d) = dst {
                p.dst = addr_bytes(d);
                p.flags |= IPP_DST;
            }
            put(&mut param, &p);
            Ok((StageObject::Builtin("ip_pair"), KIND_IP_PAIR, param))
        }
        SelectorKind::PacketType { types: t } => {
            let p = types::emptcp_packet_type {
                mask: packet_type_mask(t)?,
                ..Default::default()
            };
            put(&mut param, &p);
            Ok((StageObject::Builtin("packet_type"), KIND_PACKET_TYPE, param))
        }
        SelectorKind::Subflow {
            saddr,
            daddr,
            sport,
            dport,
            bidir,
        } => {
            let mut p = types::emptcp_subflow::default();
            if saddr.or(*daddr).is_some_and(|a| a.is_ipv6()) {
                p.flags |= SUB_V6;
            }
            if *bidir {
                p.flags |= SUB_BIDIR;
            }
            if let Some(a) = saddr {
                p.saddr = addr_bytes(a);
                p.flags |= SUB_HAS_SADDR;
            }
            if let Some(a) = daddr {
                p.daddr = addr_bytes(a);
                p.flags |= SUB_HAS_DADDR;
            }
            if let Some(x) = sport {
                p.sport = x.to_be();
                p.flags |= SUB_HAS_SPORT;
            }
            if let Some(x) = dport {
                p.dport = x.to_be();
                p.flags |= SUB_HAS_DPORT;
            }
            put(&mut param, &p);
            Ok((StageObject::Builtin("subflow"), KIND_SUBFLOW, param))
        }
        SelectorKind::Src { addr, prefix } | SelectorKind::Dst { addr, prefix } => {
            let mut p = types::emptcp_prefix::default();
            let full = addr_bytes(addr);
            let bits = *prefix as usize;
            for (i, (m, a)) in p.mask.iter_mut().zip(p.addr.iter_mut()).enumerate() {
                let keep = bits.saturating_sub(i * 8).min(8);
                *m = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
                *a = full[i] & *m;
            }
            if addr.is_ipv6() {
                p.flags |= PFX_V6;
            }
            if matches!(kind, SelectorKind::Dst { .. }) {
                p.flags |= PFX_DST;
            }
            put(&mut param, &p);
            Ok((StageObject::Builtin("prefix"), KIND_PREFIX, param))
        }
        SelectorKind::Port { sport, dport } => {
            let mut p = types::emptcp_port::default();
            if let Some(x) = sport {
                p.sport = x.to_be();
                p.flags |= PORT_HAS_SPORT;
            }
            if let Some(x) = dport {
                p.dport = x.to_be();
                p.flags |= PORT_HAS_DPORT;
            }
            put(&mut param, &p);
            Ok((StageObject::Builtin("port"), KIND_PORT, param))
        }
        SelectorKind::Sequence {
            field,
            from,
            to,
            relative,
        } => {
            let mut p = types::emptcp_sequence {
                from: *from,
                to: to.unwrap_or(0),
                field: match field {
                    SeqField::Dsn => SEQ_DSN,
                    SeqField::DataAck => SEQ_DATA_ACK,
                    SeqField::Ssn => SEQ_SSN,
                },
                ..Default::default()
            };
            if *relative {
                p.flags |= SEQF_RELATIVE;
            }
            if to.is_some() {
                p.flags |= SEQF_HAS_TO;
            }
            put(&mut param, &p);
            Ok((StageObject::Builtin("sequence"), KIND_SEQUENCE, param))
        }
        SelectorKind::Custom(c) => Ok(custom_stage(c, false)),
    }
}

fn actor_stage(a: &Actor, env: &Env) -> Result<(StageObject, u8, Param)> {
    let (object, kind, mut param) = actor_literal(a, env)?;
    // a parameter from a map: the reference in the last 4 bytes (tables.h)
    if let Some(m) = a.map() {
        param[PARAM_TAB_OFF..].copy_from_slice(&tab_ref(env, &m.map, m.key, false)?);
    }
    Ok((object, kind, param))
}

fn actor_literal(a: &Actor, env: &Env) -> Result<(StageObject, u8, Param)> {
    let mut param = [0u8; PARAM_SIZE];
    Ok(match a {
        Actor::SetMark { mark, mask, .. } => {
            let p = types::emptcp_set_mark {
                value: *mark,
                mask: *mask,
            };
            put(&mut param, &p);
            (StageObject::Builtin("set_mark"), KIND_SET_MARK, param)
        }
        Actor::Redirect {
            dev,
            ingress,
            via,
            map,
        } => {
            let mut p = types::emptcp_redirect {
                ifindex: if map.is_some() {
                    0
                } else {
                    (env.ifindex)(dev)?
                },
                flags: if *ingress { RD_INGRESS } else { 0 },
                ..Default::default()
            };
            match via {
                Some(std::net::IpAddr::V4(a)) => {
                    p.flags |= RD_VIA4;
                    p.via[..4].copy_from_slice(&a.octets());
                }
                Some(std::net::IpAddr::V6(a)) => {
                    p.flags |= RD_VIA6;
                    p.via.copy_from_slice(&a.octets());
                }
                None => {}
            }
            put(&mut param, &p);
            (StageObject::Builtin("redirect"), KIND_REDIRECT, param)
        }
        Actor::SetBackup { backup, once, .. } => {
            let mut p = types::emptcp_set_backup::default();
            if *backup {
                p.flags |= BK_BACKUP;
            }
            if *once {
                p.flags |= BK_ONCE;
            }
            put(&mut param, &p);
            (StageObject::Builtin("set_backup"), KIND_SET_BACKUP, param)
        }
        Actor::GetConnect | Actor::GetSubflow => {
            param[0] = if matches!(a, Actor::GetConnect) {
                EV_CONNECT
            } else {
                EV_SUBFLOW
            };
            (StageObject::Builtin("observe"), KIND_OBSERVE, param)
        }
        Actor::Record { metrics } => {
            let m = crate::policy::record_mask(metrics);
            param[..4].copy_from_slice(&m.to_ne_bytes());
            (StageObject::Builtin("record"), KIND_RECORD, param)
        }
        Actor::BlkSubflow { mode } => {
            let p = types::emptcp_blk_subflow {
                mode: match mode {
                    BlkMode::AddAddr => BLK_ADD_ADDR,
                    BlkMode::Join => BLK_JOIN,
                },
                ..Default::default()
            };
            put(&mut param, &p);
            (StageObject::Builtin("blk_subflow"), KIND_BLK_SUBFLOW, param)
        }
        Actor::AddSubflow => (StageObject::Builtin("add_subflow"), KIND_ADD_SUBFLOW, param),
        Actor::RateLimit {
            rate_bps, burst, ..
        } => {
            // per-packet divisions done once here: the burst as time at the rate
            let rate_bps8 = (*rate_bps / 8).max(1);
            let ns = |bytes: u64| bytes * 1_000_000_000 / rate_bps8;
            let p = types::emptcp_rate_limit {
                rate_Bps: rate_bps8,
                burst_ns: ns(u64::from(*burst)),
                debt_ns: ns(u64::from(*burst) + u64::from(*burst) / 2),
                burst: *burst,
                ..Default::default()
            };
            put(&mut param, &p);
            (StageObject::Builtin("rate_limit"), KIND_RATE_LIMIT, param)
        }
        Actor::Pass | Actor::Drop => {
            param[0] = u8::from(matches!(a, Actor::Drop));
            (StageObject::Builtin("verdict"), KIND_VERDICT, param)
        }
        Actor::Custom(c) => custom_stage(c, true),
    })
}

/// Number of slots a chain needs.
pub fn stage_count(c: &Chain) -> usize {
    c.select.len() + c.act.len()
}

/// What `show` and the state call each stage of a chain: its kind, or
/// `custom:<program>` for a third-party stage.
pub fn stage_labels(c: &Chain) -> Vec<String> {
    let custom = |cs: &CustomStage| format!("custom:{}", cs.program);
    c.select
        .iter()
        .map(|s| match &s.kind {
            SelectorKind::Custom(cs) => custom(cs),
            k => k.name().to_owned(),
        })
        .chain(c.act.iter().map(|a| match a {
            Actor::Custom(cs) => custom(cs),
            a => a.name().to_owned(),
        }))
        .collect()
}

/// Lays out `chains` (in run order, with their numeric ids) on `slots`
/// (exactly as many as their stages together), linking each chain to the
/// next.
pub fn plan(chains: &[(&Chain, u16)], slots: &[u16]) -> Result<Vec<PlannedChain>> {
    plan_with(chains, slots, &no_env())
}

/// What planning needs from outside: device indexes (redirect targets) and
/// the tables (sets, maps) chains name.
pub struct Env<'a> {
    pub ifindex: &'a dyn Fn(&str) -> Result<u32>,
    pub table: &'a dyn Fn(&str) -> Result<TableState>,
}

/// A planning environment with no devices and no tables.
pub fn no_env() -> Env<'static> {
    Env {
        ifindex: &|dev| bail!("device {dev:?}: no device lookup here"),
        table: &|t| bail!("set or map {t:?}: no tables here"),
    }
}

/// The 4-byte reference a stage carries to table `name` (abi.h
/// emptcp_tab_ref).
fn tab_ref(env: &Env, name: &str, keyof: KeyOf, bidir: bool) -> Result<[u8; 4]> {
    let t = (env.table)(name)?;
    Ok([
        t.id,
        t.def.key.layout(),
        keyof.abi(),
        if bidir { TAB_BIDIR } else { 0 },
    ])
}

/// Like `plan`, resolving device names and tables with `env`.
pub fn plan_with(chains: &[(&Chain, u16)], slots: &[u16], env: &Env) -> Result<Vec<PlannedChain>> {
    let need: usize = chains.iter().map(|(c, _)| stage_count(c)).sum();
    if need != slots.len() {
        bail!("internal: {need} stages but {} slots", slots.len());
    }
    if slots.iter().any(|s| *s == 0 || *s >= STAGE_SLOTS) {
        bail!("internal: slot out of range");
    }
    // first slot of each chain, and of the one after it
    let mut firsts = Vec::with_capacity(chains.len() + 1);
    let mut at = 0usize;
    for (c, _) in chains {
        firsts.push(slots[at]);
        at += stage_count(c);
    }
    firsts.push(0);

    let mut out = Vec::new();
    let mut at = 0usize;
    for (ci, (c, id)) in chains.iter().enumerate() {
        let n = stage_count(c);
        let labels = stage_labels(c);
        let chain_end = firsts[ci + 1];
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let slot = slots[at + i];
            let next = if i + 1 < n {
                slots[at + i + 1]
            } else {
                chain_end
            };
            let mut flags = if i == 0 { SF_FIRST } else { 0 };
            let (object, kind, param) = if i < c.select.len() {
                let s = &c.select[i];
                if s.op == Op::Or {
                    flags |= SF_OR;
                }
                if s.not {
                    flags |= SF_NOT;
                }
                selector_stage(&s.kind, env)?
            } else {
                flags |= SF_ACTOR;
                actor_stage(&c.act[i - c.select.len()], env)?
            };
            let desc = types::emptcp_stage {
                next,
                chain: *id,
                flags,
                kind,
                param,
                ..Default::default()
            };
            stages.push(PlannedStage {
                slot,
                kind: labels[i].clone(),
                object,
                desc,
            });
        }
        at += n;
        out.push(PlannedChain {
            name: c.name.clone(),
            stages,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn two_chains() -> Policy {
        Policy::parse(
            r#"
[[chain]]
name = "a"
dev = "eth0"
hook = "xdp"
  [[chain.select]]
  kind = "ip_pair"
  src = "10.0.0.1"
  [[chain.select]]
  kind = "packet_type"
  op = "or"
  not = true
  types = ["dss_ack", "syn"]
  [[chain.act]]
  kind = "set_backup"
[[chain]]
name = "b"
dev = "eth0"
hook = "xdp"
  [[chain.act]]
  kind = "set_backup"
  backup = false
  once = false
"#,
            "t.toml",
        )
        .expect("valid")
    }

    #[test]
    fn links_stages_and_chains() {
        let p = two_chains();
        let chains: Vec<(&Chain, u16)> = p.chains.iter().zip([7u16, 9]).collect();
        let plan = plan(&chains, &[10, 11, 12, 40]).expect("plan");
        let a = &plan[0].stages;
        assert_eq!(a.iter().map(|s| s.slot).collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(a[0].desc.next, 11);
        assert_eq!(a[1].desc.next, 12);
        assert_eq!(a[2].desc.next, 40, "last stage of a goes on to chain b");
        assert_eq!(a[0].desc.flags, SF_FIRST);
        assert_eq!(a[1].desc.flags, SF_OR | SF_NOT);
        assert_eq!(a[2].desc.flags, SF_ACTOR);
        assert_eq!(a[0].desc.chain, 7);
        let b = &plan[1].stages;
        assert_eq!(b[0].desc.flags, SF_FIRST | SF_ACTOR);
        assert_eq!(b[0].desc.next, 0, "end of all chains");
        assert_eq!(b[0].desc.param[0], 0, "backup=false once=false");
        assert_eq!(a[2].desc.param[0], BK_BACKUP | BK_ONCE);
        // ip_pair: v4 src in the first 4 bytes, flags at byte 32
        assert_eq!(&a[0].desc.param[..4], &[10, 0, 0, 1]);
        assert_eq!(a[0].desc.param[32], IPP_SRC);
        // packet_type mask: dss_ack = bit 7, syn = bit 17
        let mask = u32::from_ne_bytes(a[1].desc.param[..4].try_into().unwrap());
        assert_eq!(mask, (1 << 7) | (1 << 17));
    }

    #[test]
    fn encodes_path_management_stages() {
        let p = Policy::parse(
            "[[chain]]\nname = \"p\"\ndev = \"x\"\nhook = \"xdp\"\n\
             [[chain.select]]\nkind = \"sequence\"\nfield = \"data_ack\"\nfrom = \"1MB\"\nto = 3000000\n\
             [[chain.act]]\nkind = \"blk_subflow\"\nmode = \"join\"\n\
             [[chain.act]]\nkind = \"add_subflow\"\n",
            "p.toml",
        )
        .expect("valid");
        let out = plan(&[(&p.chains[0], 1u16)], &[1, 2, 3]).expect("plan");
        let s = &out[0].stages;
        let q = &s[0].desc.param;
        assert_eq!(u64::from_ne_bytes(q[..8].try_into().unwrap()), 1_000_000);
        assert_eq!(u64::from_ne_bytes(q[8..16].try_into().unwrap()), 3_000_000);
        assert_eq!(q[16], SEQ_DATA_ACK);
        assert_eq!(q[17], SEQF_RELATIVE | SEQF_HAS_TO);
        assert_eq!(s[0].desc.kind, KIND_SEQUENCE);
        assert_eq!(s[1].desc.param[0], BLK_JOIN);
        assert_eq!(s[1].desc.kind, KIND_BLK_SUBFLOW);
        assert_eq!(s[2].desc.kind, KIND_ADD_SUBFLOW);
        assert_eq!(s[2].object, StageObject::Builtin("add_subflow"));
    }

    #[test]
    fn rejects_wrong_slot_counts() {
        let p = two_chains();
        let chains: Vec<(&Chain, u16)> = p.chains.iter().map(|c| (c, 1)).collect();
        assert!(plan(&chains, &[1, 2, 3]).is_err());
        assert!(plan(&chains, &[0, 2, 3, 4]).is_err());
    }

    #[test]
    fn encodes_prefixes_and_ports() {
        let p = Policy::parse(
            "[[chain]]\nname = \"p\"\ndev = \"x\"\nhook = \"xdp\"\n\
             [[chain.select]]\nkind = \"src\"\naddr = \"10.1.2.3/12\"\n\
             [[chain.select]]\nkind = \"port\"\ndport = 443\n\
             [[chain.act]]\nkind = \"redirect\"\ndev = \"eth9\"\n",
            "p.toml",
        )
        .expect("valid");
        let chains = [(&p.chains[0], 1u16)];
        assert!(
            plan(&chains, &[1, 2, 3]).is_err(),
            "redirect needs a device lookup"
        );
        let env = Env {
            ifindex: &|d| {
                assert_eq!(d, "eth9");
                Ok(42)
            },
            table: &|t| bail!("no table {t}"),
        };
        let out = plan_with(&chains, &[1, 2, 3], &env).expect("plan");
        let s = &out[0].stages;
        // 10.1.2.3/12 -> 10.0.0.0 masked with 255.240.0.0
        assert_eq!(&s[0].desc.param[..4], &[10, 0, 0, 0]);
        assert_eq!(&s[0].desc.param[16..20], &[255, 240, 0, 0]);
        assert_eq!(s[0].desc.param[32], 0, "v4, source side");
        // port 443 in network order at offset 2, flag at 4
        assert_eq!(&s[1].desc.param[2..5], &[1, 187, PORT_HAS_DPORT]);
        assert_eq!(
            u32::from_ne_bytes(s[2].desc.param[..4].try_into().unwrap()),
            42
        );
    }
}
