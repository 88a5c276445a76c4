//! Live mode (design §4) and the cutover: the channel that hears the source's changes
//! ([`channel`]), the dirty set ([`dirty`]), the tail that keeps the target equal ([`tail`]),
//! writes no channel reports ([`silent`]), and the fence → drain → check protocol
//! ([`fence`], [`cutover`]).

pub mod channel;
pub mod cutover;
pub mod dirty;
pub mod fence;
pub mod silent;
pub mod tail;
