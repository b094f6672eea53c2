//! Bandwidth limits on endpoints (token bucket, both directions).
