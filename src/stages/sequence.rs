//! `sequence`: packets whose DSN, data ACK or TCP sequence number lies in a range.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::cli::text::quoted;
use crate::policy::model::{SelectorKind, SeqField};

pub const ENTRY: Entry = Entry {
    kind: "sequence",
    role: StageRole::Selector,
    object: "sequence",
    hooks: ALL_HOOKS,
    doc: "packets whose DSS data sequence number, DSS data ACK or TCP sequence number lies in \
          [from, to); relative values count from the first one seen on the subflow (per \
          direction); 4-byte values compare modulo 2^32",
    params: &[
        Param {
            name: "field",
            ty: ParamType::Name,
            required: true,
            default: None,
            doc: "dsn, data_ack or ssn",
        },
        Param {
            name: "from",
            ty: ParamType::Bytes,
            required: false,
            default: Some("0"),
            doc: "first value picked (integer, or \"64KB\", \"1MiB\", ...)",
        },
        Param {
            name: "to",
            ty: ParamType::Bytes,
            required: false,
            default: None,
            doc: "first value no longer picked (absent: no upper end)",
        },
        Param {
            name: "relative",
            ty: ParamType::Bool,
            required: false,
            default: Some("true"),
            doc: "count from the first value seen on the subflow",
        },
    ],
    abi_kind: abi::KIND_SEQUENCE,
    runs: Runs::ShortWalk,
    walk_kinsns: [45, 45],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse),
};

fn parse(a: &Args) -> Result<SelectorKind, String> {
    let field = match a.str("field")? {
        Some("dsn") => SeqField::Dsn,
        Some("data_ack") => SeqField::DataAck,
        Some("ssn") => SeqField::Ssn,
        Some(f) => {
            return Err(a.key_err(
                "field",
                &format!("{} is not one of dsn, data_ack, ssn", quoted(f)),
            ))
        }
        None => return Err(a.missing("field")),
    };
    let from = a.bytes_or_default("from")?;
    let to = a.bytes("to")?;
    if let Some(to) = to {
        if to <= from {
            return Err(a.key_err("to", &format!("{to} is not above `from` ({from})")));
        }
    }
    Ok(SelectorKind::Sequence {
        field,
        from,
        to,
        relative: a.bool("relative")?,
    })
}

pub fn encode(field: SeqField, from: u64, to: Option<u64>, relative: bool) -> abi::Param {
    let mut p = types::emptcp_sequence {
        from,
        to: to.unwrap_or(0),
        field: match field {
            SeqField::Dsn => abi::SEQ_DSN,
            SeqField::DataAck => abi::SEQ_DATA_ACK,
            SeqField::Ssn => abi::SEQ_SSN,
        },
        ..Default::default()
    };
    if relative {
        p.flags |= abi::SEQF_RELATIVE;
    }
    if to.is_some() {
        p.flags |= abi::SEQF_HAS_TO;
    }
    super::param_of(&p)
}
