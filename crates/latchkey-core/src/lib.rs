//! latchkey's rules, with no HTTP and no SQL in them.
//!
//! The HTTP layer turns requests into calls on [`service::Service`]; the
//! service keeps every rule of sessions, rotation, reuse and keys, and talks
//! to storage only through the [`store::Store`] trait.

pub mod amr;
pub mod audit;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod keys;
pub mod mail;
pub mod mfa;
pub mod password;
pub mod policy;
pub mod refresh;
pub mod service;
pub mod store;
pub mod tokens;
pub mod validate;
pub mod webauthn;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ServiceError;
pub use ids::{PasskeyId, SessionId, UserId};
pub use policy::Policy;
pub use service::{Service, CLIENT_CACHE_TTL};
