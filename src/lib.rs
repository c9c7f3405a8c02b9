//! offboard: removes people from the organizations of SaaS providers, in bulk and on events.
pub mod job;
pub mod sandbox;
