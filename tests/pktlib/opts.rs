//! Raw TCP option bytes, MPTCP (kind 30) options laid out as in RFC 8684
//! section 3 (etherparse does not know kind 30).

use std::net::IpAddr;

pub const EOL: u8 = 0;
pub const NOP: u8 = 1;
pub const KIND_MPTCP: u8 = 30;

pub const MP_CAPABLE: u8 = 0;
pub const MP_JOIN: u8 = 1;
pub const DSS: u8 = 2;
pub const ADD_ADDR: u8 = 3;
pub const RM_ADDR: u8 = 4;
pub const MP_PRIO: u8 = 5;
pub const MP_FAIL: u8 = 6;
pub const MP_FASTCLOSE: u8 = 7;
pub const MP_TCPRST: u8 = 8;

/// Concatenates option parts; the result must fill whole 32-bit words.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let v: Vec<u8> = parts.concat();
    assert!(
        v.len() % 4 == 0 && v.len() <= 40,
        "options {v:02x?} not word aligned"
    );
    v
}

/// Concatenates and pads with NOPs at the end to a word boundary.
pub fn padded(parts: &[&[u8]]) -> Vec<u8> {
    let mut v: Vec<u8> = parts.concat();
    while v.len() % 4 != 0 {
        v.push(NOP);
    }
    assert!(v.len() <= 40, "options {v:02x?} longer than 40 bytes");
    v
}

pub fn mss(v: u16) -> Vec<u8> {
    let b = v.to_be_bytes();
    vec![2, 4, b[0], b[1]]
}
pub fn wscale(s: u8) -> Vec<u8> {
    vec![3, 3, s]
}
pub fn sack_ok() -> Vec<u8> {
    vec![4, 2]
}
pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut v = vec![5, (2 + 8 * blocks.len()) as u8];
    for (l, r) in blocks {
        v.extend_from_slice(&l.to_be_bytes());
        v.extend_from_slice(&r.to_be_bytes());
    }
    v
}
/// NOP NOP TS: the 12 bytes Linux puts on every segment.
pub fn nop_nop_ts(val: u32, ecr: u32) -> Vec<u8> {
    let mut v = vec![NOP, NOP, 8, 10];
    v.extend_from_slice(&val.to_be_bytes());
    v.extend_from_slice(&ecr.to_be_bytes());
    v
}

fn mp(sub: u8, low: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![
        KIND_MPTCP,
        (3 + rest.len()) as u8,
        (sub << 4) | (low & 0x0f),
    ];
    v.extend_from_slice(rest);
    v
}

const MPC_FLAGS: u8 = 0x01; // H: HMAC-SHA256, no checksum

/// MP_CAPABLE SYN, v1 (len 4).
pub fn mpc_syn() -> Vec<u8> {
    mp(MP_CAPABLE, 1, &[MPC_FLAGS])
}
/// MP_CAPABLE SYN-ACK (len 12).
pub fn mpc_synack(key: u64) -> Vec<u8> {
    let mut r = vec![MPC_FLAGS];
    r.extend_from_slice(&key.to_be_bytes());
    mp(MP_CAPABLE, 1, &r)
}
/// MP_CAPABLE third ACK (len 20).
pub fn mpc_ack(skey: u64, rkey: u64) -> Vec<u8> {
    let mut r = vec![MPC_FLAGS];
    r.extend_from_slice(&skey.to_be_bytes());
    r.extend_from_slice(&rkey.to_be_bytes());
    mp(MP_CAPABLE, 1, &r)
}
/// MP_CAPABLE ACK with data-level length (len 22), optionally checksum (24).
pub fn mpc_ack_data(skey: u64, rkey: u64, dll: u16, csum: Option<u16>) -> Vec<u8> {
    let mut r = vec![if csum.is_some() { 0x81 } else { MPC_FLAGS }];
    r.extend_from_slice(&skey.to_be_bytes());
    r.extend_from_slice(&rkey.to_be_bytes());
    r.extend_from_slice(&dll.to_be_bytes());
    if let Some(c) = csum {
        r.extend_from_slice(&c.to_be_bytes());
    }
    mp(MP_CAPABLE, 1, &r)
}

/// MP_JOIN SYN (len 12).
pub fn mpj_syn(backup: bool, id: u8, token: u32, nonce: u32) -> Vec<u8> {
    let mut r = vec![id];
    r.extend_from_slice(&token.to_be_bytes());
    r.extend_from_slice(&nonce.to_be_bytes());
    mp(MP_JOIN, u8::from(backup), &r)
}
/// MP_JOIN SYN-ACK (len 16).
pub fn mpj_synack(backup: bool, id: u8, hmac: u64, nonce: u32) -> Vec<u8> {
    let mut r = vec![id];
    r.extend_from_slice(&hmac.to_be_bytes());
    r.extend_from_slice(&nonce.to_be_bytes());
    mp(MP_JOIN, u8::from(backup), &r)
}
/// MP_JOIN third ACK (len 24).
pub fn mpj_ack() -> Vec<u8> {
    let mut r = vec![0u8];
    r.extend((0..20u8).map(|i| 0xa0 ^ i));
    mp(MP_JOIN, 0, &r)
}

/// A DSS option (RFC 8684 3.3).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dss {
    pub ack: Option<u64>,
    pub ack64: bool,
    /// (DSN, subflow sequence number, data-level length)
    pub map: Option<(u64, u32, u16)>,
    pub dsn64: bool,
    pub csum: Option<u16>,
    pub data_fin: bool,
}

impl Dss {
    pub fn bytes(&self) -> Vec<u8> {
        let mut fl = 0u8;
        let mut r = Vec::new();
        if let Some(a) = self.ack {
            fl |= 0x01;
            if self.ack64 {
                fl |= 0x02;
                r.extend_from_slice(&a.to_be_bytes());
            } else {
                r.extend_from_slice(&(a as u32).to_be_bytes());
            }
        }
        if let Some((dsn, ssn, dll)) = self.map {
            fl |= 0x04;
            if self.dsn64 {
                fl |= 0x08;
                r.extend_from_slice(&dsn.to_be_bytes());
            } else {
                r.extend_from_slice(&(dsn as u32).to_be_bytes());
            }
            r.extend_from_slice(&ssn.to_be_bytes());
            r.extend_from_slice(&dll.to_be_bytes());
            if let Some(c) = self.csum {
                r.extend_from_slice(&c.to_be_bytes());
            }
        }
        if self.data_fin {
            fl |= 0x10;
        }
        let mut v = vec![KIND_MPTCP, (4 + r.len()) as u8, DSS << 4, fl];
        v.extend_from_slice(&r);
        v
    }
}

/// DSS with a 4-byte data ACK only (len 8): Linux's pure ACK.
pub fn dss_ack(ack: u32) -> Vec<u8> {
    Dss {
        ack: Some(u64::from(ack)),
        ..Default::default()
    }
    .bytes()
}

/// DSS with a 4-byte data ACK and a 4-byte mapping for `dll` bytes (len 18).
pub fn dss_map(ack: u32, dsn: u32, dll: u16) -> Vec<u8> {
    Dss {
        ack: Some(u64::from(ack)),
        map: Some((u64::from(dsn), 1, dll)),
        ..Default::default()
    }
    .bytes()
}

/// ADD_ADDR: HMAC present unless `echo` (RFC 8684 3.4.1).
pub fn add_addr(echo: bool, id: u8, addr: IpAddr, port: Option<u16>) -> Vec<u8> {
    let mut r = vec![id];
    match addr {
        IpAddr::V4(a) => r.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => r.extend_from_slice(&a.octets()),
    }
    if let Some(p) = port {
        r.extend_from_slice(&p.to_be_bytes());
    }
    if !echo {
        r.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    }
    mp(ADD_ADDR, u8::from(echo), &r)
}

/// REMOVE_ADDR (len 3 + ids).
pub fn rm_addr(ids: &[u8]) -> Vec<u8> {
    mp(RM_ADDR, 0, ids)
}
/// MP_PRIO (len 3).
pub fn mp_prio(backup: bool) -> Vec<u8> {
    mp(MP_PRIO, u8::from(backup), &[])
}
/// MP_FAIL (len 12).
pub fn mp_fail(dsn: u64) -> Vec<u8> {
    let mut r = vec![0u8];
    r.extend_from_slice(&dsn.to_be_bytes());
    mp(MP_FAIL, 0, &r)
}
/// MP_FASTCLOSE (len 12).
pub fn mp_fastclose(key: u64) -> Vec<u8> {
    let mut r = vec![0u8];
    r.extend_from_slice(&key.to_be_bytes());
    mp(MP_FASTCLOSE, 0, &r)
}
/// MP_TCPRST (len 4).
pub fn mp_tcprst(flags: u8, reason: u8) -> Vec<u8> {
    mp(MP_TCPRST, flags, &[reason])
}
