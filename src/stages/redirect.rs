//! `redirect`: sends the selected packets out of another device (terminal).

use std::net::IpAddr;

use anyhow::Result;

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::{Actor, MapRef};

pub const ENTRY: Entry = Entry {
    kind: "redirect",
    role: StageRole::Actor,
    object: "redirect",
    hooks: ALL_HOOKS,
    doc: "terminal: sends the selected packets out of another device. TC: Ethernet addresses of the next hop (neighbour table); TTL, mark, priority and delivery time (tstamp) kept; a received packet still owned by a local socket (from a VM's veth) leaves as a clone so that the sender's TCP Small Queues budget is released, as forwarding does. XDP: frame unchanged",
    params: &[
        Param { name: "dev", ty: ParamType::Name, required: true, default: None, doc: "target device (same namespace), or { map = NAME, key = … } (a dev map)" },
        Param { name: "ingress", ty: ParamType::Bool, required: false, default: Some("false"), doc: "TC: into the device's receive path" },
        Param { name: "via", ty: ParamType::IpAddr, required: false, default: None, doc: "TC: next hop whose MAC the packet gets (absent: the route the kernel finds out of `dev`)" },
    ],
    abi_kind: abi::KIND_REDIRECT,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: Some(("dev", "dev")),
    parse: Parse::Actor(parse),
};

fn parse(a: &Args) -> Result<Actor, String> {
    let map = a.map_ref("dev")?;
    let dev = if map.is_some() {
        ""
    } else {
        let dev = a.str("dev")?.ok_or_else(|| a.missing("dev"))?;
        crate::policy::values::check_dev(dev).map_err(|e| a.key_err("dev", &e))?;
        dev
    };
    Ok(Actor::Redirect {
        dev: dev.to_owned(),
        ingress: a.bool("ingress")?,
        via: a.addr("via")?,
        map,
    })
}

pub fn encode(
    dev: &str,
    ingress: bool,
    via: Option<IpAddr>,
    map: Option<&MapRef>,
    env: &super::Env,
) -> Result<abi::Param> {
    let mut p = types::emptcp_redirect {
        ifindex: if map.is_some() {
            0
        } else {
            (env.ifindex)(dev)?
        },
        flags: if ingress { abi::RD_INGRESS } else { 0 },
        ..Default::default()
    };
    match via {
        Some(IpAddr::V4(a)) => {
            p.flags |= abi::RD_VIA4;
            p.via[..4].copy_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            p.flags |= abi::RD_VIA6;
            p.via.copy_from_slice(&a.octets());
        }
        None => {}
    }
    Ok(super::param_of(&p))
}
