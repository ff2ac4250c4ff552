//! Packet builder: Ethernet (+ VLAN tags), IPv4 (+ options, fragment bits)
//! or IPv6 (+ extension headers), TCP with raw option bytes and a payload.
//! Headers are serialised by etherparse and carry correct checksums
//! (etherparse computes them, not our decoder and not the C code).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder, SingleVlanHeader, TcpHeader, VlanId, VlanPcp,
};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// IPv6 extension header kinds (next-header numbers).
pub const EXT_HOP: u8 = 0;
pub const EXT_ROUTING: u8 = 43;
pub const EXT_FRAGMENT: u8 = 44;
pub const EXT_DEST: u8 = 60;

#[derive(Clone, Debug, PartialEq)]
pub enum Ip {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// Raw IPv4 option bytes (multiple of 4, at most 40).
        opts: Vec<u8>,
        mf: bool,
        /// Fragment offset in 8-byte units.
        frag_off: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        /// Extension headers in order: (kind, body without the first two bytes).
        ext: Vec<(u8, Vec<u8>)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// Raw option bytes (multiple of 4, at most 40).
    pub opts: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A TCP packet description; `build()` serialises it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pkt {
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    pub ip: Ip,
    pub tcp: Tcp,
    /// Link-layer bytes after the IP packet (Ethernet padding).
    pub trailer: Vec<u8>,
}

/// A recognisable payload of `n` bytes.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

pub const V4_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const V4_B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
pub const V4_C: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const V4_D: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
pub const V6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
pub const V6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub const V6_C: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
pub const V6_D: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);

impl Pkt {
    fn with_ip(ip: Ip) -> Pkt {
        Pkt {
            vlans: Vec::new(),
            ip,
            tcp: Tcp {
                sport: 40000,
                dport: 5201,
                seq: 0x1000_0000,
                ack: 0x2000_0000,
                flags: ACK,
                win: 502,
                opts: Vec::new(),
                payload: Vec::new(),
            },
            trailer: Vec::new(),
        }
    }

    /// A pure ACK from `src` to `dst`, no options.
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Pkt {
        Pkt::with_ip(Ip::V4 {
            src,
            dst,
            opts: Vec::new(),
            mf: false,
            frag_off: 0,
        })
    }

    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Pkt {
        Pkt::with_ip(Ip::V6 {
            src,
            dst,
            ext: Vec::new(),
        })
    }

    /// Same family helper for tables over both families.
    pub fn ip(src: IpAddr, dst: IpAddr) -> Pkt {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Pkt::v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => Pkt::v6(s, d),
            _ => panic!("Pkt::ip: {src} and {dst} are of different families"),
        }
    }

    pub fn flags(mut self, f: u8) -> Pkt {
        self.tcp.flags = f;
        self
    }
    pub fn opts(mut self, o: Vec<u8>) -> Pkt {
        self.tcp.opts = o;
        self
    }
    pub fn payload(mut self, n: usize) -> Pkt {
        self.tcp.payload = payload(n);
        self
    }
    pub fn ports(mut self, s: u16, d: u16) -> Pkt {
        self.tcp.sport = s;
        self.tcp.dport = d;
        self
    }
    pub fn seq(mut self, seq: u32) -> Pkt {
        self.tcp.seq = seq;
        self
    }
    pub fn window(mut self, win: u16) -> Pkt {
        self.tcp.win = win;
        self
    }
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Pkt {
        self.vlans.push((tpid, vid));
        self
    }
    pub fn trailer(mut self, n: usize) -> Pkt {
        self.trailer = vec![0u8; n];
        self
    }
    pub fn ip4_opts(mut self, o: Vec<u8>) -> Pkt {
        match &mut self.ip {
            Ip::V4 { opts, .. } => *opts = o,
            Ip::V6 { .. } => panic!("ip4_opts on an IPv6 packet"),
        }
        self
    }
    pub fn frag(mut self, more: bool, off: u16) -> Pkt {
        match &mut self.ip {
            Ip::V4 { mf, frag_off, .. } => {
                *mf = more;
                *frag_off = off;
            }
            Ip::V6 { .. } => panic!("frag on an IPv6 packet (use an extension header)"),
        }
        self
    }
    pub fn ext(mut self, kind: u8, body: Vec<u8>) -> Pkt {
        match &mut self.ip {
            Ip::V6 { ext, .. } => ext.push((kind, body)),
            Ip::V4 { .. } => panic!("ext on an IPv4 packet"),
        }
        self
    }
    /// Swaps source and destination (addresses and ports).
    pub fn reversed(mut self) -> Pkt {
        match &mut self.ip {
            Ip::V4 { src, dst, .. } => std::mem::swap(src, dst),
            Ip::V6 { src, dst, .. } => std::mem::swap(src, dst),
        }
        std::mem::swap(&mut self.tcp.sport, &mut self.tcp.dport);
        self
    }

    /// The packet after an MP_PRIO (len 3 + NOP) was added the way a hook
    /// adds it: XDP right after the fixed TCP header (before the old
    /// options), TC after the old options; TC also cuts the link trailer.
    pub fn with_prio(&self, at_head: bool, backup: bool) -> Pkt {
        let mut p = self.clone();
        let mut word = super::opts::mp_prio(backup);
        word.push(super::opts::NOP);
        if at_head {
            word.extend_from_slice(&p.tcp.opts);
            p.tcp.opts = word;
        } else {
            p.tcp.opts.extend_from_slice(&word);
            p.trailer.clear();
        }
        p
    }

    /// Serialises the packet with correct IPv4 header and TCP checksums.
    pub fn build(&self) -> Vec<u8> {
        let mut th = TcpHeader::new(self.tcp.sport, self.tcp.dport, self.tcp.seq, self.tcp.win);
        th.acknowledgment_number = self.tcp.ack;
        th.fin = self.tcp.flags & FIN != 0;
        th.syn = self.tcp.flags & SYN != 0;
        th.rst = self.tcp.flags & RST != 0;
        th.psh = self.tcp.flags & PSH != 0;
        th.ack = self.tcp.flags & ACK != 0;
        th.set_options_raw(&self.tcp.opts)
            .unwrap_or_else(|e| panic!("builder: TCP options {:02x?}: {e}", self.tcp.opts));
        let tcp_len = th.header_len() + self.tcp.payload.len();

        let mut l3 = Vec::new();
        let ether_type = match &self.ip {
            Ip::V4 {
                src,
                dst,
                opts,
                mf,
                frag_off,
            } => {
                th.checksum = th
                    .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &self.tcp.payload)
                    .expect("TCP checksum (v4)");
                let mut ih = Ipv4Header::new(0, 64, IpNumber::TCP, src.octets(), dst.octets())
                    .expect("IPv4 header");
                ih.identification = 0x4d2e;
                ih.options = opts
                    .as_slice()
                    .try_into()
                    .unwrap_or_else(|e| panic!("builder: IPv4 options {opts:02x?}: {e:?}"));
                ih.dont_fragment = !*mf && *frag_off == 0;
                ih.more_fragments = *mf;
                ih.fragment_offset = IpFragOffset::try_new(*frag_off).expect("fragment offset");
                ih.set_payload_len(tcp_len).expect("IPv4 payload length");
                ih.header_checksum = ih.calc_header_checksum();
                l3.extend_from_slice(&ih.to_bytes());
                EtherType::IPV4
            }
            Ip::V6 { src, dst, ext } => {
                th.checksum = th
                    .calc_checksum_ipv6_raw(src.octets(), dst.octets(), &self.tcp.payload)
                    .expect("TCP checksum (v6)");
                let mut exts = Vec::new();
                for (i, (_, body)) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map(|e| e.0).unwrap_or(6);
                    let h = Ipv6RawExtHeader::new_raw(IpNumber(next), body)
                        .unwrap_or_else(|e| panic!("builder: IPv6 extension body: {e:?}"));
                    exts.extend_from_slice(&h.to_bytes());
                }
                let ih = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::try_new(0x12345).expect("flow label"),
                    payload_length: (exts.len() + tcp_len) as u16,
                    next_header: IpNumber(ext.first().map(|e| e.0).unwrap_or(6)),
                    hop_limit: 64,
                    source: src.octets(),
                    destination: dst.octets(),
                };
                l3.extend_from_slice(&ih.to_bytes());
                l3.extend_from_slice(&exts);
                EtherType::IPV6
            }
        };
        l3.extend_from_slice(&th.to_bytes());
        l3.extend_from_slice(&self.tcp.payload);

        let mut out = link_header(&self.vlans, ether_type);
        out.extend_from_slice(&l3);
        out.extend_from_slice(&self.trailer);
        out
    }
}

/// Ethernet header plus VLAN tags for an inner EtherType.
pub fn link_header(vlans: &[(u16, u16)], inner: EtherType) -> Vec<u8> {
    let first = vlans.first().map(|v| EtherType(v.0)).unwrap_or(inner);
    let mut out = Ethernet2Header {
        source: SRC_MAC,
        destination: DST_MAC,
        ether_type: first,
    }
    .to_bytes()
    .to_vec();
    for (i, (_, vid)) in vlans.iter().enumerate() {
        let next = vlans.get(i + 1).map(|v| EtherType(v.0)).unwrap_or(inner);
        let v = SingleVlanHeader {
            pcp: VlanPcp::try_new(3).expect("pcp"),
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(*vid).expect("vlan id"),
            ether_type: next,
        };
        out.extend_from_slice(&v.to_bytes());
    }
    out
}

/// PadN hop-by-hop / destination options body of 6 + 8k bytes.
pub fn padn_body(len: usize) -> Vec<u8> {
    assert!(len >= 6 && (len + 2) % 8 == 0, "ext body length {len}");
    let mut b = vec![1u8, (len - 2) as u8];
    b.resize(len, 0);
    b
}

/// A routing header body with segments left = 0 (type 253, experimental).
pub fn routing_body() -> Vec<u8> {
    vec![253, 0, 0, 0, 0, 0]
}

/// IPv6 fragment header body (offset in 8-byte units, M flag).
pub fn fragment_body(off: u16, more: bool) -> Vec<u8> {
    let v = (off << 3) | u16::from(more);
    // the "length" byte of the generic layout is the reserved byte here
    let mut b = v.to_be_bytes().to_vec();
    b.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    b
}

// ---- non-TCP packets ----

pub fn udp_v4() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(V4_A.octets(), V4_B.octets(), 64)
        .udp(5353, 5353);
    let mut out = Vec::new();
    b.write(&mut out, &payload(32)).expect("udp v4");
    out
}

pub fn udp_v6() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(V6_A.octets(), V6_B.octets(), 64)
        .udp(443, 50000);
    let mut out = Vec::new();
    b.write(&mut out, &payload(40)).expect("udp v6");
    out
}

pub fn icmp_v4() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(V4_A.octets(), V4_B.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut out = Vec::new();
    b.write(&mut out, &payload(16)).expect("icmp v4");
    out
}

pub fn icmp_v6() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(V6_A.octets(), V6_B.octets(), 64)
        .icmpv6_echo_request(7, 1);
    let mut out = Vec::new();
    b.write(&mut out, &payload(16)).expect("icmp v6");
    out
}

/// ARP request (etherparse 0.16 has no ARP type: Ethernet header from
/// etherparse, the 28-byte ARP body by hand).
pub fn arp() -> Vec<u8> {
    let mut out = Ethernet2Header {
        source: SRC_MAC,
        destination: [0xff; 6],
        ether_type: EtherType::ARP,
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&V4_A.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&V4_B.octets());
    out
}
