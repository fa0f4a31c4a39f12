//! Tiny allocation-free MessagePack writer (being written).
