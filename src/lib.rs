pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/skels.rs"));
}
