//! Test packets the benches share.

/// A 1,086-byte IPv4 data segment as a busy MPTCP subflow carries them:
/// options NOP NOP TS, DSS (data ACK 4 + DSN 4 + SSN 4 + length), NOP NOP.
pub fn dss_segment() -> Vec<u8> {
    let opts: Vec<u8> = [
        vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        vec![
            30, 18, 0x20, 0x05, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x03, 0xe8,
        ],
        vec![1, 1],
    ]
    .concat();
    let payload = 1000;
    let thl = 20 + opts.len();
    let mut p = vec![0u8; 14 + 20 + thl + payload];
    p[12] = 0x08;
    let tot = (20 + thl + payload) as u16;
    p[14] = 0x45;
    p[16..18].copy_from_slice(&tot.to_be_bytes());
    p[22] = 64;
    p[23] = 6;
    p[26..30].copy_from_slice(&[10, 1, 0, 1]);
    p[30..34].copy_from_slice(&[10, 1, 0, 2]);
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&5201u16.to_be_bytes());
    p[46] = ((thl / 4) as u8) << 4;
    p[47] = 0x18;
    p[54..54 + opts.len()].copy_from_slice(&opts);
    p
}
