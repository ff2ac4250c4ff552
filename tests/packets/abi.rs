//! abi.h and the Rust constants agree (no root needed).

use emptcp::policy::PACKET_TYPES;

/// abi.h and the Rust constants agree (no root needed).
#[test]
fn abi_constants_match_the_c_header() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/emptcp/abi.h"))
        .expect("read include/emptcp/abi.h");
    // a constant: an enum member `NAME = value,` (Rust has it from BTF)
    let define = |name: &str| -> u64 {
        let l = h
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name) && l.contains('='))
            .unwrap_or_else(|| panic!("abi.h has no enum member {name}"));
        let v = l.split_whitespace().nth(2).expect("value");
        let v = v.trim_end_matches(',');
        if let Some(x) = v.strip_prefix("0x") {
            u64::from_str_radix(x, 16).expect("hex")
        } else {
            v.parse().expect("number")
        }
    };
    // enum members in order: NAME = value,
    let enum_members = |prefix: &str| -> Vec<(String, u64)> {
        h.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix) && l.contains('='))
            .map(|l| {
                let (n, v) = l.split_once('=').expect("=");
                let v = v.trim().trim_end_matches(',');
                let v = v
                    .split_whitespace()
                    .next()
                    .expect("value")
                    .trim_end_matches(',');
                (n.trim().to_owned(), v.parse().expect("enum value"))
            })
            .collect()
    };
    assert_eq!(
        define("EMPTCP_MAX_SLOTS"),
        u64::from(emptcp::chain::MAX_SLOTS),
        "EMPTCP_MAX_SLOTS vs chain::MAX_SLOTS"
    );
    assert_eq!(
        define("EMPTCP_MAX_ATTACH"),
        u64::from(emptcp::chain::MAX_ATTACH),
        "EMPTCP_MAX_ATTACH vs chain::MAX_ATTACH"
    );
    assert_eq!(define("EMPTCP_SF_OR"), u64::from(emptcp::chain::SF_OR));
    assert_eq!(define("EMPTCP_SF_NOT"), u64::from(emptcp::chain::SF_NOT));
    assert_eq!(
        define("EMPTCP_SF_FIRST"),
        u64::from(emptcp::chain::SF_FIRST)
    );
    assert_eq!(
        define("EMPTCP_SF_ACTOR"),
        u64::from(emptcp::chain::SF_ACTOR)
    );
    let counters = enum_members("EMPTCP_CNT_");
    let max = counters
        .iter()
        .find(|(n, _)| n == "EMPTCP_CNT__MAX")
        .expect("EMPTCP_CNT__MAX")
        .1;
    assert_eq!(max, u64::from(emptcp::chain::CNT_MAX), "EMPTCP_CNT__MAX");
    for (n, v) in counters.iter().filter(|(n, _)| n != "EMPTCP_CNT__MAX") {
        let rust = emptcp::chain::COUNTER_NAMES[*v as usize];
        assert_eq!(
            n.trim_start_matches("EMPTCP_CNT_").to_lowercase(),
            rust,
            "counter {v}: abi.h {n} vs COUNTER_NAMES[{v}] {rust}"
        );
    }
    let types = enum_members("EMPTCP_PT_");
    for (n, v) in types.iter().filter(|(n, _)| n != "EMPTCP_PT__MAX") {
        let rust = PACKET_TYPES[*v as usize];
        assert_eq!(
            n.trim_start_matches("EMPTCP_PT_").to_lowercase(),
            rust,
            "packet type {v}: abi.h {n} vs PACKET_TYPES[{v}] {rust}"
        );
    }
    let ptmax = types
        .iter()
        .find(|(n, _)| n == "EMPTCP_PT__MAX")
        .expect("PT__MAX")
        .1;
    assert_eq!(ptmax as usize, PACKET_TYPES.len(), "EMPTCP_PT__MAX");
}
