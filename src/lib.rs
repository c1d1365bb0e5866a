//! The `s3shim` command as a library: the per-cache agent (`agent`), the settings every
//! command resolves (`config`), the client side of the agent's socket (`client`), and the
//! commands `run`, `prefetch` and `doctor`. `src/main.rs` parses the command line and
//! calls in here.
//!
//! Where an S3 or file-system failure becomes the errno a program sees:
//! [`agent::error::errno`].

pub mod agent;
pub mod client;
pub mod config;
mod doctor;
mod prefetch;
mod run;

pub use doctor::doctor;
pub use prefetch::prefetch;
pub use run::run;
