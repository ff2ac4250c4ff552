//! `rate_limit`: holds the selected subflow's data to a rate.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::Actor;
use crate::policy::values::BURST_MAX;

pub const ENTRY: Entry = Entry {
    kind: "rate_limit",
    role: StageRole::Actor,
    object: "rate_limit",
    hooks: ALL_HOOKS,
    doc: "holds the selected subflow's data to `rate` in each direction it sees: drops new \
          data past the budget (a burst ahead at most) and clamps the receive window in the \
          ACKs (never raises it; window scale from the handshake). Against a Linux MPTCP \
          sender the data must pass the stage (it sends past a subflow's window): attach on \
          the data's path (receiver's xdp, sender's tc-egress) and, to spare losses, on the ACKs",
    params: &[
        Param {
            name: "rate",
            ty: ParamType::Rate,
            required: true,
            default: None,
            doc: "tc units: 20mbit, 5MBps, 100kbit, 1gbit (bare number: bit/s), or { map = NAME, key = … } (a rate map; burst: 1 s of the rate)",
        },
        Param {
            name: "burst",
            ty: ParamType::Size,
            required: false,
            default: Some("rate x 1s (at least 64kb)"),
            doc: "credit kept at most: bytes the sender may send at once after a pause",
        },
    ],
    abi_kind: abi::KIND_RATE_LIMIT,
    runs: Runs::ShortWalk,
    walk_kinsns: [40, 40],
    hooks_why: "",
    map_param: Some(("rate", "rate")),
    parse: Parse::Actor(parse),
};

fn parse(a: &Args) -> Result<Actor, String> {
    if let Some(map) = a.map_ref("rate")? {
        if a.has("burst") {
            return Err(a.key_err(
                "burst",
                "not with a rate from a map (the burst is 1 s of the packet's rate)",
            ));
        }
        return Ok(Actor::RateLimit {
            rate_bps: 0,
            burst: 0,
            map: Some(map),
        });
    }
    let rate_bps = a.rate("rate")?.ok_or_else(|| a.missing("rate"))?;
    let burst = match a.size("burst")? {
        Some(b) => b,
        None => default_burst(rate_bps),
    };
    Ok(Actor::RateLimit {
        rate_bps,
        burst,
        map: None,
    })
}

/// The default burst: one second of the rate (a sender that lost data
/// past the budget waits for its retransmission timer, 200 ms and more;
/// the credit it earns meanwhile is kept), at least 64 KiB.
pub fn default_burst(rate_bps: u64) -> u32 {
    (rate_bps / 8).clamp(64 * 1024, BURST_MAX as u64) as u32
}

/// emptcp_rate_limit, with the per-packet divisions done once here: the
/// burst as time at the rate.
pub fn encode(rate_bps: u64, burst: u32) -> abi::Param {
    let rate_bps8 = (rate_bps / 8).max(1);
    let ns = |bytes: u64| bytes * 1_000_000_000 / rate_bps8;
    super::param_of(&types::emptcp_rate_limit {
        rate_Bps: rate_bps8,
        burst_ns: ns(u64::from(burst)),
        debt_ns: ns(u64::from(burst) + u64::from(burst) / 2),
        burst,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_burst_is_a_second_of_the_rate() {
        assert_eq!(default_burst(20_000_000), 2_500_000);
        assert_eq!(default_burst(100_000), 65536);
    }
}
