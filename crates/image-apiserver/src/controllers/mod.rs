//! Controllers that run in the server process, as clients of the resources layer.

pub mod import;
