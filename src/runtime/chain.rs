//! Chain planning: turning the chains of one attach point into stage
//! descriptions laid out on free slots. Pure code, no BPF calls.
//!
//! The chains of an attach point run one after another: the last stage of
//! chain k goes on to the first stage of chain k+1. A whole list is always
//! laid out on fresh slots and switched in with one attach-table update, so
//! a packet walking the old layout finishes on it.

use anyhow::{bail, Result};

/// The ABI's types and the constants tests and tools name by this path.
pub use crate::abi::{
    head_slot, types, CNT_MAX, COUNTER_NAMES, MAX_ATTACH, MAX_SLOTS, SF_ACTOR, SF_FIRST, SF_NOT,
    SF_OR, STAGE_SLOTS,
};
use crate::policy::model::{Actor, Chain, CustomStage, Op, SelectorKind};
use crate::stages::{encode_actor, encode_selector};
pub use crate::stages::{no_env, Env, StageObject};

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
                encode_selector(&s.kind, env)?
            } else {
                flags |= SF_ACTOR;
                encode_actor(&c.act[i - c.select.len()], env)?
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
    use crate::abi::*;
    use crate::policy::model::Policy;

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
