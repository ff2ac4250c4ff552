//! An independent decoder and checker for packets coming out of the BPF
//! programs: our own Ethernet/VLAN/IP/TCP walk, our own TCP option walker
//! (MPTCP kind 30 included), our own Internet checksum (RFC 1071), and an
//! etherparse cross-check of the header layout. Nothing here shares code
//! or constants with the C side.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

/// One's complement sum of `data` as big-endian 16-bit words (odd byte
/// padded with zero), added to `acc`; not folded.
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks(2);
    for c in &mut it {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u64::from(w);
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data` (complemented fold).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(ones_sum(data, 0))
}

/// One TCP option as found in the option area.
#[derive(Clone, Debug, PartialEq)]
pub struct Opt {
    /// Offset in the option area.
    pub at: usize,
    pub kind: u8,
    /// The whole option (kind and length bytes included; 1 byte for NOP/EOL,
    /// EOL also takes the rest of the area).
    pub bytes: Vec<u8>,
}

impl Opt {
    pub fn mptcp_subtype(&self) -> Option<u8> {
        (self.kind == 30 && self.bytes.len() >= 3).then(|| self.bytes[2] >> 4)
    }
}

/// Walks a TCP option area. Returns the options and the first error.
pub fn walk_options(area: &[u8]) -> (Vec<Opt>, Option<String>) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < area.len() {
        let kind = area[i];
        match kind {
            0 => {
                out.push(Opt {
                    at: i,
                    kind,
                    bytes: area[i..].to_vec(),
                });
                return (out, None);
            }
            1 => {
                out.push(Opt {
                    at: i,
                    kind,
                    bytes: vec![1],
                });
                i += 1;
            }
            _ => {
                if i + 1 >= area.len() {
                    return (
                        out,
                        Some(format!(
                            "option kind {kind} at {i} has no length byte (area is {} bytes)",
                            area.len()
                        )),
                    );
                }
                let len = area[i + 1] as usize;
                if len < 2 {
                    return (
                        out,
                        Some(format!("option kind {kind} at {i} has length {len} (< 2)")),
                    );
                }
                if i + len > area.len() {
                    return (
                        out,
                        Some(format!(
                            "option kind {kind} at {i} of length {len} runs past the {}-byte area",
                            area.len()
                        )),
                    );
                }
                out.push(Opt {
                    at: i,
                    kind,
                    bytes: area[i..i + len].to_vec(),
                });
                i += len;
            }
        }
    }
    (out, None)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// RFC 8684 lengths of each MPTCP subtype: a description and whether the
/// length is valid.
pub fn describe_mptcp(b: &[u8]) -> (String, bool) {
    let len = b[1] as usize;
    let sub = b[2] >> 4;
    let low = b[2] & 0x0f;
    match sub {
        0 => {
            let form = match len {
                4 => "SYN",
                12 => "SYN-ACK",
                20 => "ACK",
                22 => "ACK+data",
                24 => "ACK+data+csum",
                _ => "?",
            };
            (
                format!(
                    "MP_CAPABLE {form} len={len} v={low} flags={:#04x}",
                    b.get(3).copied().unwrap_or(0)
                ),
                form != "?",
            )
        }
        1 => {
            let form = match len {
                12 => "SYN",
                16 => "SYN-ACK",
                24 => "ACK",
                _ => "?",
            };
            (
                format!("MP_JOIN {form} len={len} B={}", low & 1),
                form != "?",
            )
        }
        2 => {
            if len < 4 {
                return (format!("DSS len={len} (short)"), false);
            }
            let fl = b[3];
            let mut want = 4;
            if fl & 0x01 != 0 {
                want += if fl & 0x02 != 0 { 8 } else { 4 };
            }
            let map = fl & 0x04 != 0;
            if map {
                want += if fl & 0x08 != 0 { 8 } else { 4 } + 6;
            }
            let ok = len == want || (map && len == want + 2);
            (
                format!(
                    "DSS len={len} flags={fl:#04x}{}{}{}{}",
                    if fl & 1 != 0 { " ack" } else { "" },
                    if map { " map" } else { "" },
                    if fl & 0x10 != 0 { " DATA_FIN" } else { "" },
                    if map && len == want + 2 { " csum" } else { "" }
                ),
                ok,
            )
        }
        3 => {
            let echo = low & 1 != 0;
            let ok = if echo {
                matches!(len, 8 | 10 | 20 | 22)
            } else {
                matches!(len, 16 | 18 | 28 | 30)
            };
            (
                format!(
                    "ADD_ADDR len={len} E={} id={}",
                    low & 1,
                    b.get(3).copied().unwrap_or(0)
                ),
                ok,
            )
        }
        4 => (format!("REMOVE_ADDR len={len}"), len >= 4),
        5 => (format!("MP_PRIO len={len} B={}", low & 1), len == 3),
        6 => (format!("MP_FAIL len={len}"), len == 12),
        7 => (format!("MP_FASTCLOSE len={len}"), len == 12),
        8 => (format!("MP_TCPRST len={len} flags={low:#x}"), len == 4),
        _ => (format!("MPTCP subtype {sub} len={len}"), true),
    }
}

/// A human description of one option.
pub fn describe_opt(o: &Opt) -> String {
    let b = &o.bytes;
    match o.kind {
        0 => format!("EOL (+{} bytes after it: {})", b.len() - 1, hex(&b[1..])),
        1 => "NOP".into(),
        2 if b.len() == 4 => format!("MSS {}", be16(b, 2)),
        3 if b.len() == 3 => format!("WS {}", b[2]),
        4 if b.len() == 2 => "SACK_OK".into(),
        8 if b.len() == 10 => format!("TS val={} ecr={}", be32(b, 2), be32(b, 6)),
        30 if b.len() >= 3 => format!("{} [{}]", describe_mptcp(b).0, hex(b)),
        _ => format!("kind {} len {} [{}]", o.kind, b.len(), hex(b)),
    }
}

/// Where the layers of a decoded TCP packet are.
#[derive(Clone, Debug, Default)]
pub struct TcpInfo {
    pub v6: bool,
    pub l3_off: usize,
    pub l4_off: usize,
    pub hlen: usize,
    /// End of the IP packet according to its length field.
    pub ip_end: usize,
    pub flags: u8,
    pub opts: Vec<Opt>,
    pub opt_err: Option<String>,
}

/// A decoded packet: named fields (for diffs) and every inconsistency.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    pub fields: Vec<(String, String)>,
    pub problems: Vec<String>,
    pub tcp: Option<TcpInfo>,
}

impl Decoded {
    fn f(&mut self, name: impl Into<String>, v: impl Into<String>) {
        self.fields.push((name.into(), v.into()));
    }
    fn bad(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes a frame; never panics. Problems list every inconsistency found.
pub fn decode(b: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    d.f("frame.len", b.len().to_string());
    if b.len() < 14 {
        d.bad(format!(
            "frame of {} bytes is shorter than Ethernet",
            b.len()
        ));
        return d;
    }
    d.f("eth.dst", hex(&b[0..6]));
    d.f("eth.src", hex(&b[6..12]));
    let mut et = be16(b, 12);
    d.f("eth.type", format!("{et:#06x}"));
    let mut off = 14;
    let mut n = 0;
    while et == 0x8100 || et == 0x88a8 {
        if b.len() < off + 4 {
            d.bad(format!("VLAN tag {n} truncated"));
            return d;
        }
        d.f(format!("vlan[{n}].tci"), format!("{:#06x}", be16(b, off)));
        et = be16(b, off + 2);
        d.f(format!("vlan[{n}].type"), format!("{et:#06x}"));
        off += 4;
        n += 1;
    }
    let l3_off = off;
    let (l4_off, ip_end, v6, src, dst, proto) = match et {
        0x0800 => {
            if b.len() < off + 20 {
                d.bad("IPv4 header truncated");
                return d;
            }
            let ver = b[off] >> 4;
            let ihl = (b[off] & 0x0f) as usize * 4;
            d.f("ip4.version", ver.to_string());
            d.f("ip4.ihl", format!("{ihl} bytes"));
            d.f("ip4.tos", format!("{:#04x}", b[off + 1]));
            let tot = be16(b, off + 2) as usize;
            d.f("ip4.total_len", tot.to_string());
            d.f("ip4.id", format!("{:#06x}", be16(b, off + 4)));
            let frag = be16(b, off + 6);
            d.f(
                "ip4.frag",
                format!(
                    "DF={} MF={} offset={}",
                    (frag >> 14) & 1,
                    (frag >> 13) & 1,
                    frag & 0x1fff
                ),
            );
            d.f("ip4.ttl", b[off + 8].to_string());
            d.f("ip4.proto", b[off + 9].to_string());
            d.f("ip4.checksum", format!("{:#06x}", be16(b, off + 10)));
            let s = Ipv4Addr::new(b[off + 12], b[off + 13], b[off + 14], b[off + 15]);
            let t = Ipv4Addr::new(b[off + 16], b[off + 17], b[off + 18], b[off + 19]);
            d.f("ip4.src", s.to_string());
            d.f("ip4.dst", t.to_string());
            if ver != 4 || ihl < 20 {
                d.bad(format!("IPv4 version {ver} / header length {ihl}"));
                return d;
            }
            if b.len() < off + ihl {
                d.bad(format!("IPv4 header of {ihl} bytes truncated"));
                return d;
            }
            d.f("ip4.options", hex(&b[off + 20..off + ihl]));
            if fold(ones_sum(&b[off..off + ihl], 0)) != 0xffff {
                d.bad(format!(
                    "IPv4 header checksum {:#06x} is wrong (should be {:#06x})",
                    be16(b, off + 10),
                    {
                        let mut h = b[off..off + ihl].to_vec();
                        h[10] = 0;
                        h[11] = 0;
                        checksum(&h)
                    }
                ));
            }
            if tot < ihl {
                d.bad(format!("IPv4 total length {tot} < header length {ihl}"));
                return d;
            }
            if frag & 0x3fff != 0 {
                d.f("l4", "IPv4 fragment");
                return d;
            }
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&t.octets());
            (off + ihl, off + tot, false, pseudo, Vec::new(), b[off + 9])
        }
        0x86dd => {
            if b.len() < off + 40 {
                d.bad("IPv6 header truncated");
                return d;
            }
            let ver = b[off] >> 4;
            d.f("ip6.version", ver.to_string());
            d.f(
                "ip6.tc_flow",
                format!("{:#010x}", be32(b, off) & 0x0fff_ffff),
            );
            let plen = be16(b, off + 4) as usize;
            d.f("ip6.payload_len", plen.to_string());
            d.f("ip6.next", b[off + 6].to_string());
            d.f("ip6.hop_limit", b[off + 7].to_string());
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[off + 8..off + 24]);
            let mut t = [0u8; 16];
            t.copy_from_slice(&b[off + 24..off + 40]);
            d.f("ip6.src", Ipv6Addr::from(s).to_string());
            d.f("ip6.dst", Ipv6Addr::from(t).to_string());
            if ver != 6 {
                d.bad(format!("IPv6 version {ver}"));
                return d;
            }
            let mut next = b[off + 6];
            let mut p = off + 40;
            let mut i = 0;
            while matches!(next, 0 | 43 | 44 | 60) {
                if b.len() < p + 8 {
                    d.bad(format!("IPv6 extension header {i} truncated"));
                    return d;
                }
                let len = (b[p + 1] as usize + 1) * 8;
                d.f(
                    format!("ip6.ext[{i}]"),
                    format!("kind {next} len {len} next {}", b[p]),
                );
                if next == 44 {
                    d.f("l4", "IPv6 fragment");
                    return d;
                }
                next = b[p];
                p += len;
                i += 1;
            }
            (p, off + 40 + plen, true, s.to_vec(), t.to_vec(), next)
        }
        _ => {
            d.f("l3", format!("EtherType {et:#06x} (not IP)"));
            return d;
        }
    };
    if proto != 6 {
        d.f("l4", format!("protocol {proto} (not TCP)"));
        return d;
    }
    if ip_end > b.len() {
        d.bad(format!(
            "IP length field says the packet ends at byte {ip_end}, the frame has {}",
            b.len()
        ));
    }
    if b.len() < l4_off + 20 {
        d.bad("TCP header truncated");
        return d;
    }
    let t = l4_off;
    d.f("tcp.sport", be16(b, t).to_string());
    d.f("tcp.dport", be16(b, t + 2).to_string());
    d.f("tcp.seq", format!("{:#010x}", be32(b, t + 4)));
    d.f("tcp.ack", format!("{:#010x}", be32(b, t + 8)));
    let hlen = (b[t + 12] >> 4) as usize * 4;
    d.f("tcp.doff", format!("{} ({hlen} bytes)", hlen / 4));
    d.f("tcp.reserved", format!("{:#x}", b[t + 12] & 0x0f));
    let flags = b[t + 13];
    d.f("tcp.flags", format!("{flags:#04x}"));
    d.f("tcp.window", be16(b, t + 14).to_string());
    d.f("tcp.checksum", format!("{:#06x}", be16(b, t + 16)));
    d.f("tcp.urg", be16(b, t + 18).to_string());
    if !(20..=60).contains(&hlen) {
        d.bad(format!("TCP header length {hlen} outside 20..=60"));
        return d;
    }
    if b.len() < t + hlen {
        d.bad(format!("TCP header of {hlen} bytes truncated"));
        return d;
    }
    if ip_end < t + hlen {
        d.bad(format!(
            "IP length leaves {} bytes for a {hlen}-byte TCP header",
            ip_end.saturating_sub(t)
        ));
    }
    let (opts, opt_err) = walk_options(&b[t + 20..t + hlen]);
    for (i, o) in opts.iter().enumerate() {
        d.f(format!("tcp.opt[{i}]@{}", o.at), describe_opt(o));
        if o.kind == 30 {
            if o.bytes.len() < 3 {
                d.bad(format!(
                    "MPTCP option at {} of length {}",
                    o.at,
                    o.bytes.len()
                ));
            } else if !describe_mptcp(&o.bytes).1 {
                d.bad(format!(
                    "MPTCP option at {} has a length its subtype does not allow: {}",
                    o.at,
                    describe_opt(o)
                ));
            }
        }
    }
    if let Some(e) = &opt_err {
        d.f("tcp.opt.error", e.clone());
        d.bad(format!("TCP options do not parse: {e}"));
    }
    let end = ip_end.min(b.len());
    let pl = &b[(t + hlen).min(end)..end];
    d.f(
        "tcp.payload",
        format!("{} bytes, sum {:#06x}", pl.len(), fold(ones_sum(pl, 0))),
    );
    if b.len() > ip_end {
        d.f("link.trailer", hex(&b[ip_end..]));
    }
    if ip_end <= b.len() && ip_end >= t + hlen {
        let seg = &b[t..ip_end];
        let mut acc = ones_sum(&src, 0);
        acc = ones_sum(&dst, acc);
        if v6 {
            acc = ones_sum(&(seg.len() as u32).to_be_bytes(), acc);
            acc = ones_sum(&[0, 0, 0, 6], acc);
        } else {
            acc = ones_sum(&[0, 6], acc);
            acc = ones_sum(&(seg.len() as u16).to_be_bytes(), acc);
        }
        acc = ones_sum(seg, acc);
        if fold(acc) != 0xffff {
            let a2 = acc - u64::from(be16(b, t + 16));
            d.bad(format!(
                "TCP checksum {:#06x} is wrong (should be {:#06x}; pseudo-header length {})",
                be16(b, t + 16),
                !fold(a2),
                seg.len()
            ));
        }
    }
    d.tcp = Some(TcpInfo {
        v6,
        l3_off,
        l4_off: t,
        hlen,
        ip_end,
        flags,
        opts,
        opt_err,
    });
    d
}

/// Full consistency check of a TCP frame: our decoder finds no problem and
/// etherparse decodes the same layout. Returns the decode or the list of
/// problems.
pub fn verify_tcp(b: &[u8]) -> Result<Decoded, Vec<String>> {
    let d = decode(b);
    let mut problems = d.problems.clone();
    let Some(ti) = &d.tcp else {
        problems.push("not a TCP packet".into());
        return Err(problems);
    };
    match PacketHeaders::from_ethernet_slice(b) {
        Err(e) => problems.push(format!("etherparse cannot decode it: {e}")),
        Ok(h) => {
            match &h.net {
                Some(NetHeaders::Ipv4(ip, _)) => {
                    if ip.header_len() != ti.l4_off - ti.l3_off {
                        problems.push(format!(
                            "etherparse: IPv4 header length {} vs {}",
                            ip.header_len(),
                            ti.l4_off - ti.l3_off
                        ));
                    }
                    if ip.calc_header_checksum() != ip.header_checksum {
                        problems.push("etherparse: IPv4 header checksum differs".into());
                    }
                }
                Some(NetHeaders::Ipv6(_, _)) => {}
                None => problems.push("etherparse: no IP header".into()),
            }
            match &h.transport {
                Some(TransportHeader::Tcp(th)) => {
                    if th.header_len() != ti.hlen {
                        problems.push(format!(
                            "etherparse: TCP header length {} vs {}",
                            th.header_len(),
                            ti.hlen
                        ));
                    }
                    if th.options.as_slice() != &b[ti.l4_off + 20..ti.l4_off + ti.hlen] {
                        problems.push("etherparse: TCP option bytes differ".into());
                    }
                    let want = ti.ip_end - ti.l4_off - ti.hlen;
                    if h.payload.slice().len() != want {
                        problems.push(format!(
                            "etherparse: TCP payload {} bytes vs {want}",
                            h.payload.slice().len()
                        ));
                    }
                }
                _ => problems.push("etherparse: no TCP header".into()),
            }
        }
    }
    if problems.is_empty() {
        Ok(d)
    } else {
        Err(problems)
    }
}

/// The expected result of adding MP_PRIO (len 3 + NOP) to a frame, computed
/// on the raw bytes with RFC 1624 incremental checksum updates: at the head
/// of the option area (XDP) or at its end, cutting the link trailer (TC).
/// None when the frame has no complete TCP header.
pub fn grow_raw(input: &[u8], at_head: bool, backup: bool) -> Option<Vec<u8>> {
    let d = decode(input);
    let ti = d.tcp?;
    let word = [30u8, 3, 0x50 | u8::from(backup), 1];
    let room = if at_head {
        ti.l4_off + 20
    } else {
        ti.l4_off + ti.hlen
    };
    let mut out = input[..room].to_vec();
    out.extend_from_slice(&word);
    if at_head {
        out.extend_from_slice(&input[room..]);
    } else {
        // the link trailer goes: the frame ends with the IP packet
        out.extend_from_slice(&input[room..ti.ip_end.min(input.len())]);
    }
    let (l3, t) = (ti.l3_off, ti.l4_off);
    // data offset
    let old_w = be16(&out, t + 12);
    let new_w = old_w + 0x1000;
    out[t + 12..t + 14].copy_from_slice(&new_w.to_be_bytes());
    // IP length
    let (old_len, new_len);
    if ti.v6 {
        old_len = be16(&out, l3 + 4);
        new_len = old_len + 4;
        out[l3 + 4..l3 + 6].copy_from_slice(&new_len.to_be_bytes());
    } else {
        old_len = be16(&out, l3 + 2);
        new_len = old_len + 4;
        out[l3 + 2..l3 + 4].copy_from_slice(&new_len.to_be_bytes());
        let ihl = (out[l3] & 0x0f) as usize * 4;
        out[l3 + 10] = 0;
        out[l3 + 11] = 0;
        let c = checksum(&out[l3..l3 + ihl]);
        out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let ext = if ti.v6 { t - l3 - 40 } else { t - l3 };
    let old_tcp_len = old_len as usize - ext;
    let new_tcp_len = old_tcp_len + 4;
    // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
    let old_c = be16(&out, t + 16);
    let mut acc = u64::from(!old_c);
    acc += u64::from(!old_w) + u64::from(new_w);
    acc += u64::from(!(old_tcp_len as u16)) + new_tcp_len as u64;
    acc = ones_sum(&word, acc);
    let c = !fold(acc);
    out[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

/// A short one-line summary of a frame (for messages).
pub fn summary(b: &[u8]) -> String {
    let d = decode(b);
    let mut s = String::new();
    for k in ["ip4.src", "ip6.src"] {
        if let Some(v) = d.field(k) {
            let _ = write!(s, "{v} -> ");
        }
    }
    for k in [
        "ip4.dst",
        "ip6.dst",
        "tcp.flags",
        "tcp.doff",
        "tcp.payload",
        "l4",
        "l3",
    ] {
        if let Some(v) = d.field(k) {
            let _ = write!(s, "{k}={v} ");
        }
    }
    s
}
