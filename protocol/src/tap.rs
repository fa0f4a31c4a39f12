//! Contract 2's control frames (being written).
