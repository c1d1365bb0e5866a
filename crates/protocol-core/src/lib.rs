//! The part of [`s3shim-protocol`] that `libs3shim.so` uses: cache layout, hydration
//! markers, wire frames, the status reply's keys and the relative-path rule. `no_std` and allocation-free, so the
//! library links no standard library runtime (panic machinery, thread-locals, allocator)
//! that every process would pay to load. `s3shim-protocol` re-exports these modules;
//! their sources live there.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "../../protocol/src/layout.rs"]
pub mod layout;
#[path = "../../protocol/src/marker.rs"]
pub mod marker;
#[path = "../../protocol/src/status_keys.rs"]
pub mod status;
#[path = "../../protocol/src/wire.rs"]
pub mod wire;

/// The relative-path rule shared by the shim and the agent (the rest of the naming rules,
/// which allocate, are in `s3shim_protocol::names`).
pub mod names {
    /// Longest single name the cache filesystem accepts (Linux `NAME_MAX`).
    pub const NAME_MAX: usize = 255;

    /// Whether `rel` is a path the agent accepts from the shim: `""` (the root) or
    /// `/`-separated names without empty, `.` or `..` components or NUL, each at most
    /// `NAME_MAX` bytes.
    pub fn is_valid_rel_path(rel: &[u8]) -> bool {
        if rel.is_empty() {
            return true;
        }
        if rel.len() > crate::wire::PATH_MAX {
            return false;
        }
        rel.split(|&b| b == b'/').all(|c| {
            !c.is_empty() && c != b"." && c != b".." && c.len() <= NAME_MAX && !c.contains(&0)
        })
    }
}
