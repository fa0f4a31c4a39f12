//! Contract 2 test receiver (being written).
