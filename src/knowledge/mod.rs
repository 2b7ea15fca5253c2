//! The knowledge base: documents a tenant uploads, turned into text an agent can search.

pub mod extract;
