//! Tokio driver (see issue: astral-tokio).
