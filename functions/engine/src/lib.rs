//! ferry's engine: everything that talks to Redis, with no AWS dependency.
//!
//! Layers, bottom-up; each uses only those below it (`tests/layers.rs` checks it):
//! - [`error`], [`secret`], [`node_addr`], [`endpoint`], [`role`]: what goes wrong, credentials
//!   that never print, a node's address, and where a server is and how to log in;
//! - [`util`]: the clock and the rate limiter;
//! - [`net`]: the only code that touches sockets (RESP, connections, cluster routing, INFO);
//! - [`model`]: pure data and arithmetic: scope, the migration's settings, the shard plan;
//! - [`inventory`]: what each server is and can do;
//! - [`scan`]: running shards of SCAN cursor ranges with a pool of workers;
//! - [`keys`]: key-level reads and writes beyond DUMP/RESTORE (types, field TTLs, modules,
//!   functions);
//! - [`prepare`]: inventory of both servers, the preflight, and the shard plan;
//! - [`copy`], then [`verify`] (which may re-copy, in `--repair`): each with its pass;
//! - [`lease`]: one run at a time writes into a target;
//! - [`live`]: the tail, its channels and gaps, and the cutover;
//! - [`run`]: one run as both front ends drive it (tail start, copy, drain, verify), with
//!   progress events.

pub mod copy;
pub mod endpoint;
pub mod error;
pub mod inventory;
pub mod keys;
pub mod lease;
pub mod live;
pub mod model;
pub mod net;
pub mod node_addr;
pub mod prepare;
pub mod role;
pub mod run;
pub mod scan;
pub mod secret;
pub mod util;
pub mod verify;

pub use endpoint::{
    ChangingPassword, Endpoint, NodeAddr, PasswordSource, Role, Secret, TlsSettings,
};
pub use error::{Error, Result};
pub use model::migration::Migration;
