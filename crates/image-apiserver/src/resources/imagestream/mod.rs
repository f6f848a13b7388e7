//! `imagestreams`: the stored resource's strategy (with `/status`), and the endpoint that
//! serves it with the computed `layers` and `secrets` subresources.

pub mod layers;
pub mod rest;
pub mod strategy;
pub mod tag_access;

pub use strategy::{info, ImageStreamStrategy};
