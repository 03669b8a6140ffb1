
//! The conformance suite every latchkey `Store` implementation must pass.
