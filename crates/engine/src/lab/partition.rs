//! Partitions: which nodes of a lab may talk, enforced in its bridge namespace.
