//! mio driver (see issue: astral-mio).
