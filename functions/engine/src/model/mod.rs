//! Pure data and arithmetic, no I/O: which keys a migration covers ([`scope`]), the shard plan
//! of SCAN cursor ranges ([`plan`], design §2) and the keys two neighbouring shards share
//! ([`scan_boundary`]), and the migration's settings ([`migration`]).

pub mod migration;
pub mod plan;
pub mod scan_boundary;
pub mod scope;
