//! What emptcp asks of the kernel: which features it has, network
//! namespaces, loading BPF objects, attaching them to devices, and running
//! programs on packets without attaching them.

pub mod attach;
pub mod features;
pub mod loader;
pub mod netns;
pub mod testrun;
